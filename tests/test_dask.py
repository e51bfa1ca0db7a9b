"""softmax_kernels.dask on a process-based LocalCluster equals the in-memory API."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

import softmax_kernels as sk  # noqa: E402
import softmax_kernels.dask as skd  # noqa: E402
from helpers import (IGNORE_INDEX, LAYOUT_OPERATIONS, NO_TARGET_OPERATIONS, TARGET_OPERATIONS,  # noqa: E402
                     TARGET_OPTIONAL_OPERATIONS, assert_allclose_typed, call_operation, options_for)
from softmax_kernels._layout import LAYOUTS  # noqa: E402
from softmax_kernels._operations import PUBLIC_NAMES  # noqa: E402
from softmax_kernels._reduction import REDUCTIONS  # noqa: E402

N_CLASSES = 8
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-11, atol=1e-14)}
# Batch chunkings of a (60, 8) batch: one block, regular, uneven, and a chunked class axis.
CHUNKINGS_2D = [(60, 8), (7, 8), ((1, 20, 39), (8,)), (13, 3)]
# A (6, 10, 8) batch with two batch axes, the class axis chunked in the second one.
CHUNKINGS_3D = [(4, 3, 8), (2, 5, 3)]


@pytest.fixture(scope="module")
def client():
    try:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           memory_limit="3GiB", dashboard_address=None)
    except Exception as error:  # no sockets, no fork, ...: nothing of ours to test
        pytest.skip(f"cannot start a dask.distributed LocalCluster: {error!r}")
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def _inputs(shape, targets, dtype, seed=0):
    """z, y and options for one target kind, as NumPy arrays."""
    rng = np.random.default_rng(seed)
    batch = shape[:-1]
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    options = {}
    if targets == "labels":
        y = rng.integers(0, N_CLASSES, batch)
    elif targets == "labels_all_options":
        y = rng.integers(0, N_CLASSES, batch)
        y.reshape(-1)[::4] = IGNORE_INDEX
        options = dict(sample_weight=rng.random(batch), class_weight=rng.random(N_CLASSES) + 0.5,
                       label_smoothing=0.1, ignore_index=IGNORE_INDEX)
    elif targets == "all_ignored":
        y = np.full(batch, 7)
        options = dict(ignore_index=7)
    elif targets == "soft":
        y = rng.random(shape)
        options = dict(sample_weight=rng.random(batch))
    else:  # no targets: derivatives of log-sum-exp
        y = None
        options = dict(sample_weight=rng.random(batch))
    return z, y, options


def _chunked(arrays, z_shape, chunks):
    """Dask versions: arrays of z's shape get ``chunks``, batch-shaped ones its batch part."""
    chunks = tuple(chunks)
    out = []
    for arr in arrays:
        if arr is None:
            out.append(None)
        elif arr.shape == z_shape:
            out.append(da.from_array(arr, chunks=chunks))
        elif arr.shape == z_shape[:-1]:
            out.append(da.from_array(arr, chunks=chunks[:-1]))
        else:  # class_weight
            out.append(da.from_array(arr, chunks=chunks[-1]))
    return out


def _call(module, name, z, y, v, options):
    """The operation with the options it takes (softmax: none of the target options)."""
    return call_operation(module, name, z, y, v, **options_for(name, options))


def _assert_matches(expected, computed, dtype):
    assert len(expected) == len(computed)
    for want, got in zip(expected, computed, strict=True):
        # a computed 0-d Dask array is a NumPy scalar
        assert_allclose_typed(np.asarray(got), want, want.dtype, **TOLERANCE[dtype])


def _check_against_memory(client, name, targets, reduction, dtype, shape, chunkings, extra=None):
    z, y, options = _inputs(shape, targets, dtype)
    options = dict(options, reduction=reduction, **(extra or {}))
    v = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    expected = _call(sk, name, z, y, v, options)
    lazy = []
    for chunks in chunkings:
        keys = [k for k in ("sample_weight", "class_weight") if k in options]
        z_d, y_d, v_d, *weights = _chunked([z, y, v] + [options[k] for k in keys], shape, chunks)
        lazy.append(_call(skd, name, z_d, y_d, v_d, dict(options, **dict(zip(keys, weights)))))
    for result in lazy:
        assert all(isinstance(part, da.Array) for part in result)
    for computed in client.gather(client.compute(lazy)):
        _assert_matches(expected, tuple(computed), dtype)


@pytest.mark.parametrize("name", NO_TARGET_OPERATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_matches_memory(client, name, dtype):
    _check_against_memory(client, name, None, "none", dtype, (60, N_CLASSES), CHUNKINGS_2D)
    _check_against_memory(client, name, None, "none", dtype, (6, 10, N_CLASSES), CHUNKINGS_3D)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("targets", ["labels", "labels_all_options", "soft", "all_ignored"])
@pytest.mark.parametrize("name", TARGET_OPERATIONS)
def test_targets_match_memory(client, name, targets, reduction):
    _check_against_memory(client, name, targets, reduction, np.float64, (60, N_CLASSES), CHUNKINGS_2D)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", TARGET_OPTIONAL_OPERATIONS)
def test_no_targets_match_memory(client, name, reduction):
    _check_against_memory(client, name, None, reduction, np.float64, (60, N_CLASSES), CHUNKINGS_2D)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", LAYOUT_OPERATIONS)
def test_layouts_and_batch_axes_match_memory(client, name, layout):
    _check_against_memory(client, name, "labels_all_options", "mean", np.float32, (6, 10, N_CLASSES),
                          CHUNKINGS_3D, extra={"layout": layout})


def test_float32_and_a_single_row_match_memory(client):
    _check_against_memory(client, "loss_gradient", "labels_all_options", "mean", np.float32, (60, N_CLASSES),
                          CHUNKINGS_2D)
    z = np.linspace(-2.0, 3.0, N_CLASSES)
    expected = sk.loss_gradient(z, 3)
    _assert_matches(expected, client.gather(client.compute(list(skd.loss_gradient(z, 3)))), np.float64)


def test_zero_rows_mean_is_nan_with_zero_derivatives(client):
    z = da.zeros((0, N_CLASSES), chunks=(5, N_CLASSES))
    loss, grad = client.gather(client.compute(list(skd.loss_gradient(z, np.zeros(0, int), reduction="mean"))))
    assert np.isnan(loss) and grad.shape == (0, N_CLASSES)
    assert client.compute(skd.loss(z, np.zeros(0, int), reduction="sum")).result() == 0


BAD_CALLS = [
    ("loss", (np.zeros(3, int),), {}),
    ("loss", (np.zeros(10, int),), {"reduction": "avg"}),
    ("hessian", (), {"layout": "diagonal"}),
    ("gradient", (np.zeros(10, int),), {"sample_weight": np.ones(9)}),
    ("hessian", (), {"class_weight": np.ones(N_CLASSES)}),
    ("loss", (np.zeros(10, int),), {"label_smoothing": 2.0}),
    ("hessian_vector_product", (np.zeros((10, 3)),), {}),
    ("loss", (np.zeros(10),), {}),
    ("softmax", (), {"num_threads": 1.5}),
]


@pytest.mark.parametrize("name, args, options", BAD_CALLS)
def test_bad_input_raises_eagerly_with_the_in_memory_message(name, args, options):
    z = np.zeros((10, N_CLASSES))
    with pytest.raises((TypeError, ValueError)) as memory_error:
        getattr(sk, name)(z, *args, **options)
    with pytest.raises(memory_error.type) as lazy_error:  # while building the graph, before any compute
        getattr(skd, name)(da.from_array(z, chunks=3), *args, **options)
    assert str(lazy_error.value) == str(memory_error.value)


def test_bad_label_raises_at_compute_time(client):
    lazy = skd.loss(da.zeros((10, N_CLASSES), chunks=4), np.arange(10) + 5)
    with pytest.raises(ValueError, match="expected labels in"):
        client.compute(lazy).result()


def test_functions_pickle_by_reference():
    import pickle

    for name in PUBLIC_NAMES:
        assert pickle.loads(pickle.dumps(getattr(skd, name))) is getattr(skd, name)


def test_streaming_sum_of_20_million_rows_has_bounded_memory(client):
    n_rows, chunk_rows = 20_000_000, 1_000_000
    rng = da.random.default_rng(20261127)
    z = rng.standard_normal((n_rows, 10), chunks=(chunk_rows, 10), dtype=np.float32)
    y = rng.integers(0, 10, n_rows, chunks=chunk_rows)
    total = client.compute(skd.loss(z, y, reduction="sum", num_threads=1)).result()

    expected = 0.0
    for i in range(z.numblocks[0]):
        z_block, y_block = dask.compute(z.blocks[i], y.blocks[i], scheduler="synchronous")
        expected += float(sk.loss(z_block, y_block, reduction="sum"))
    np.testing.assert_allclose(float(total), expected, rtol=1e-6)

    def peak_rss_bytes():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    # The logits alone are 800 MB (1.6 GB as the float64 draws): a worker holding a
    # fair share of them would exceed this; streaming holds a few 40-80 MB chunks.
    for worker, peak in client.run(peak_rss_bytes).items():
        assert peak < 1 << 30, f"{worker} peaked at {peak / 2**20:.0f} MiB"
