"""Hessian layouts: their names, and the packed size and index formulas.

LAPACK's two packed layouts of a symmetric K x K matrix H (0-based indices):

* ``"packed_upper"`` (UPLO='U'): H[i, j] with i <= j stored at ``j*(j+1)/2 + i``,
  i.e. the upper triangle column by column (= the lower triangle row by row);
* ``"packed_lower"`` (UPLO='L'): H[i, j] with i >= j stored at ``i + j*(2K-j-1)/2``,
  i.e. the lower triangle column by column (= the upper triangle row by row).

The C kernels write in exactly these orders (``include/softmax_kernels/packed.h``).
``"full"`` is the (K, K) matrix itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PACKED_LAYOUTS = ("packed_upper", "packed_lower")
LAYOUTS = PACKED_LAYOUTS + ("full",)


def packed_size(n_classes: int) -> int:
    """Number of stored elements of a packed symmetric K x K matrix: K(K+1)/2."""
    return n_classes * (n_classes + 1) // 2


def packed_n_classes(size: int) -> int | None:
    """K for a packed length K(K+1)/2; None when ``size`` is not such a length."""
    n_classes = int(round((np.sqrt(8.0 * size + 1.0) - 1.0) / 2.0))
    return n_classes if packed_size(n_classes) == size else None


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


@lru_cache(maxsize=64)
def packed_upper_positions(n_classes: int, layout: str) -> np.ndarray:
    """For each stored value of ``layout`` (in storage order; (K, K) for "full"), its position
    in packed upper storage: ``values_in_layout = packed_upper_values[..., positions]``."""
    if layout == "full":
        i, j = np.indices((n_classes, n_classes))
    else:
        i, j = packed_rows_cols(n_classes, layout)
    low, high = np.minimum(i, j), np.maximum(i, j)
    positions = high * (high + 1) // 2 + low  # packed_upper_index(low, high)
    positions.flags.writeable = False
    return positions
