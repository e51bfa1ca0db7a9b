# Type stubs for softmax_kernels.reference, and through re-export for the package
# itself: both backends are built by _api.build_public_api, so they share these
# signatures exactly and this file is their one typed description.

from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "softmax",
    "log_softmax",
    "loss",
    "gradient",
    "loss_gradient",
    "hessian",
    "loss_gradient_hessian",
    "hessian_vector_product",
    "hessian_diagonal",
    "gradient_hessian_diagonal",
    "hessian_sum",
    "pack",
    "unpack",
]

# Outputs are float32 or float64 (z's dtype, or float64 for other real dtypes).
_FloatArray: TypeAlias = NDArray[np.floating[Any]]
_Reduction: TypeAlias = Literal["none", "sum", "mean"]
_Layout: TypeAlias = Literal["packed_upper", "packed_lower", "full"]
# pack/unpack convert between the full and a packed layout, so "full" is not a choice there.
_PackedLayout: TypeAlias = Literal["packed_upper", "packed_lower"]
# The options accept NumPy scalars as well as Python numbers (bool is refused at run time).
_Int: TypeAlias = int | np.integer[Any]
_Real: TypeAlias = float | np.floating[Any] | np.integer[Any]

def softmax(z: ArrayLike, *, out: _FloatArray | None = None, num_threads: _Int | None = None) -> _FloatArray: ...
def log_softmax(z: ArrayLike, *, out: _FloatArray | None = None, num_threads: _Int | None = None) -> _FloatArray: ...
def loss(
    z: ArrayLike,
    y: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> _FloatArray: ...
def gradient(
    z: ArrayLike,
    y: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> _FloatArray: ...
def loss_gradient(
    z: ArrayLike,
    y: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    loss_out: _FloatArray | None = None,
    grad_out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
def hessian(
    z: ArrayLike,
    y: ArrayLike | None = None,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    layout: _Layout = "packed_upper",
    out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> _FloatArray: ...
def loss_gradient_hessian(
    z: ArrayLike,
    y: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    layout: _Layout = "packed_upper",
    loss_out: _FloatArray | None = None,
    grad_out: _FloatArray | None = None,
    hess_out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> tuple[_FloatArray, _FloatArray, _FloatArray]: ...
def hessian_vector_product(
    z: ArrayLike,
    v: ArrayLike,
    y: ArrayLike | None = None,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> _FloatArray: ...
def hessian_diagonal(
    z: ArrayLike,
    y: ArrayLike | None = None,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> _FloatArray: ...
def gradient_hessian_diagonal(
    z: ArrayLike,
    y: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: _Reduction = "none",
    grad_out: _FloatArray | None = None,
    diag_out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
def hessian_sum(
    z: ArrayLike,
    y: ArrayLike | None = None,
    *,
    groups: ArrayLike | None = None,
    n_groups: _Int | None = None,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: _Real = 0.0,
    ignore_index: _Int | None = None,
    reduction: Literal["sum", "mean"] = "sum",
    layout: _Layout = "packed_upper",
    out: _FloatArray | None = None,
    num_threads: _Int | None = None,
) -> _FloatArray: ...

# pack/unpack keep the input's dtype, which may be any numeric one (integers included).
def pack(h: ArrayLike, layout: _PackedLayout = "packed_upper") -> NDArray[Any]: ...
def unpack(hp: ArrayLike, layout: _PackedLayout = "packed_upper") -> NDArray[Any]: ...
