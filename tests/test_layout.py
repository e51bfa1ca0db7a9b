"""Packed layouts are LAPACK's: checked against scipy's BLAS spmv and against the index formulas."""

import numpy as np
import pytest

import softmax_kernels as sk
from softmax_kernels._layout import PACKED_LAYOUTS, packed_lower_index, packed_rows_cols, packed_size, packed_upper_index


@pytest.mark.parametrize("n_classes", [1, 2, 5, 17])
def test_packed_positions_follow_the_lapack_formulas(n_classes):
    rows, cols = packed_rows_cols(n_classes, "packed_upper")
    assert [packed_upper_index(i, j) for i, j in zip(rows, cols)] == list(range(len(rows)))
    assert np.all(rows <= cols)
    rows, cols = packed_rows_cols(n_classes, "packed_lower")
    assert [packed_lower_index(i, j, n_classes) for i, j in zip(rows, cols)] == list(range(len(rows)))
    assert np.all(rows >= cols)


@pytest.mark.parametrize("layout", PACKED_LAYOUTS)
@pytest.mark.parametrize("shape", [(4, 4), (3, 6, 6), (2, 2, 1, 1)])
def test_unpack_inverts_pack_on_symmetric_matrices(layout, shape, rng):
    a = rng.standard_normal(shape)
    sym = a + np.swapaxes(a, -1, -2)
    packed = sk.pack(sym, layout=layout)
    assert packed.shape == shape[:-2] + (packed_size(shape[-1]),)
    np.testing.assert_array_equal(sk.unpack(packed, layout=layout), sym)
    assert sk.pack(sym.astype(np.float32), layout).dtype == np.float32


@pytest.mark.parametrize("layout", PACKED_LAYOUTS)
def test_pack_reads_only_the_stored_triangle(layout, rng):
    a = rng.standard_normal((5, 5))
    upper = layout == "packed_upper"
    stored = np.triu(a) if upper else np.tril(a)
    np.testing.assert_array_equal(sk.pack(a, layout), sk.pack(stored, layout))


@pytest.mark.parametrize("layout", PACKED_LAYOUTS)
def test_packed_hessian_feeds_blas_spmv(backend, layout, rng):
    blas = pytest.importorskip("scipy.linalg.blas")
    z = rng.standard_normal((6, 9)) * 3
    y = rng.integers(0, 9, 6)
    v = rng.standard_normal((6, 9))
    for dtype, spmv in ((np.float64, blas.dspmv), (np.float32, blas.sspmv)):
        zz, vv = z.astype(dtype), v.astype(dtype)
        hess = backend.hessian(zz, y, layout=layout)
        hvp = backend.hessian_vector_product(zz, vv, y)
        tol = 50 * np.finfo(dtype).eps
        for row in range(len(z)):
            via_blas = spmv(9, 1.0, hess[row], vv[row], lower=int(layout == "packed_lower"))
            np.testing.assert_allclose(via_blas, hvp[row], rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", PACKED_LAYOUTS)
def test_all_layouts_store_the_same_numbers(backend, layout, rng):
    z = rng.standard_normal((4, 2, 7)) * 5
    full = backend.hessian(z, layout="full")
    packed = backend.hessian(z, layout=layout)
    np.testing.assert_array_equal(sk.unpack(packed, layout), full)
    np.testing.assert_array_equal(full, np.swapaxes(full, -1, -2))


def test_unpack_rejects_a_non_triangular_length():
    with pytest.raises(ValueError, match="triangular"):
        sk.unpack(np.zeros(5))
