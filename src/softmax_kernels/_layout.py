"""Packed symmetric storage: the index formulas, and ``pack``/``unpack``.

LAPACK's two packed layouts of a symmetric K x K matrix H (0-based indices):

* ``"packed_upper"`` (UPLO='U'): H[i, j] with i <= j stored at ``j*(j+1)/2 + i``,
  i.e. the upper triangle column by column (= the lower triangle row by row);
* ``"packed_lower"`` (UPLO='L'): H[i, j] with i >= j stored at ``i + j*(2K-j-1)/2``,
  i.e. the lower triangle column by column (= the upper triangle row by row).

The C kernels write in exactly these orders (``include/softmax_kernels/packed.h``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PACKED_LAYOUTS = ("packed_upper", "packed_lower")


def packed_upper_index(i: int, j: int) -> int:
    """Position of H[i, j], i <= j, in UPLO='U' packed storage."""
    return j * (j + 1) // 2 + i


def packed_lower_index(i: int, j: int, n_classes: int) -> int:
    """Position of H[i, j], i >= j, in UPLO='L' packed storage."""
    return i + j * (2 * n_classes - j - 1) // 2


@lru_cache(maxsize=64)
def packed_rows_cols(n_classes: int, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of every packed position, in storage order (read-only arrays)."""
    rows, cols = [], []
    for j in range(n_classes):
        stored = range(j + 1) if layout == "packed_upper" else range(j, n_classes)
        rows.extend(stored)
        cols.extend([j] * len(stored))
    rows_arr, cols_arr = np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)
    rows_arr.flags.writeable = cols_arr.flags.writeable = False
    return rows_arr, cols_arr


def _check_layout(layout) -> str:
    if not isinstance(layout, str) or layout not in PACKED_LAYOUTS:
        raise ValueError(f"layout: expected one of {', '.join(map(repr, PACKED_LAYOUTS))}, got {layout!r}")
    return layout


def _check_numeric(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")


def pack(h, layout: str = "packed_upper") -> np.ndarray:
    """Pack symmetric matrices (..., K, K) into LAPACK packed storage (..., K(K+1)/2).

    Only the triangle that ``layout`` stores is read (the upper one for
    ``"packed_upper"``, the lower one for ``"packed_lower"``); symmetry is not checked.
    The dtype is kept.
    """
    layout = _check_layout(layout)
    arr = np.asarray(h)
    _check_numeric(arr, "h")
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"h: expected an array of shape (..., K, K), got shape {arr.shape}")
    rows, cols = packed_rows_cols(arr.shape[-1], layout)
    return np.ascontiguousarray(arr[..., rows, cols])


def unpack(hp, layout: str = "packed_upper") -> np.ndarray:
    """Expand LAPACK packed storage (..., K(K+1)/2) into symmetric matrices (..., K, K)."""
    layout = _check_layout(layout)
    arr = np.asarray(hp)
    _check_numeric(arr, "hp")
    if arr.ndim < 1:
        raise ValueError("hp: expected an array of shape (..., K(K+1)/2), got a 0-d array")
    size = arr.shape[-1]
    n_classes = int(round((np.sqrt(8.0 * size + 1.0) - 1.0) / 2.0))
    if n_classes * (n_classes + 1) // 2 != size:
        raise ValueError(f"hp: the last axis must have a triangular length K(K+1)/2, got {size}")
    rows, cols = packed_rows_cols(n_classes, layout)
    full = np.empty(arr.shape[:-1] + (n_classes, n_classes), dtype=arr.dtype)
    full[..., rows, cols] = arr
    full[..., cols, rows] = arr
    return full
