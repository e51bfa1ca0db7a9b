"""The one place where user input becomes checked arrays and a small plan.

Every public function (compiled or reference) calls :func:`make_plan` first.
Nothing is computed or written before it returns, so a bad argument raises
``TypeError``/``ValueError`` naming the argument, what was expected and what
was received, and leaves every ``out`` array untouched.

The plan carries C-contiguous 2-D views ``(N, K)`` of all inputs in the
computation dtype and 2-D views of the output arrays; backends only ever see
those.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass, field

import numpy as np

REDUCTIONS = ("none", "sum", "mean")
LAYOUTS = ("packed_upper", "packed_lower", "full")
TARGET_NONE, TARGET_LABELS, TARGET_SOFT = "none", "labels", "soft"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
IGNORED_LABEL_SENTINEL = -1

# What each public operation computes and which ``out`` argument feeds each output.
# (output kinds, required target?, uses v?, uses layout?, names of the out arguments)
OPERATIONS = {
    "softmax": (("softmax",), None, False, False, ("out",)),
    "log_softmax": (("log_softmax",), None, False, False, ("out",)),
    "loss": (("loss",), True, False, False, ("out",)),
    "gradient": (("gradient",), True, False, False, ("out",)),
    "loss_gradient": (("loss", "gradient"), True, False, False, ("loss_out", "grad_out")),
    "hessian": (("hessian",), False, False, True, ("out",)),
    "loss_gradient_hessian": (
        ("loss", "gradient", "hessian"),
        True,
        False,
        True,
        ("loss_out", "grad_out", "hess_out"),
    ),
    "hessian_vector_product": (("hessian_vector_product",), False, True, False, ("out",)),
    "hessian_diagonal": (("hessian_diagonal",), False, False, False, ("out",)),
}

# Outputs that may be computed in place, i.e. whose ``out`` may be ``z`` itself.
IN_PLACE_OUTPUTS = frozenset({"softmax", "log_softmax", "gradient"})


def packed_size(n_classes: int) -> int:
    """Number of stored elements of a packed symmetric K x K matrix."""
    return n_classes * (n_classes + 1) // 2


@dataclass
class Plan:
    """Checked inputs (2-D, C-contiguous, computation dtype) and output views."""

    operation: str
    dtype: np.dtype
    batch_shape: tuple
    n_rows: int
    n_classes: int
    z: np.ndarray
    target_kind: str = TARGET_NONE
    labels: np.ndarray | None = None  # (N,) int64
    soft_targets: np.ndarray | None = None  # (N, K)
    v: np.ndarray | None = None  # (N, K)
    sample_weight: np.ndarray | None = None  # (N,)
    class_weight: np.ndarray | None = None  # (K,)
    label_smoothing: float = 0.0
    ignore_index: int | None = None
    reduction: str = "none"
    layout: str = "packed_upper"
    num_threads: int | None = None
    # 2-D (or 0-d for a reduced loss) views of the outputs, keyed by output kind.
    outputs: dict = field(default_factory=dict)
    # The arrays handed back to the user, in the order of OPERATIONS[operation][0].
    results: tuple = ()


def computation_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """float32/float64 compute natively; other real dtypes compute in float64."""
    if dtype == np.float32 or dtype == np.float64:
        return np.dtype(dtype)
    if dtype.kind in "biuf":
        return np.dtype(np.float64)
    raise TypeError(f"{name}: expected an array of real numbers, got dtype {dtype}")


def _as_real(x, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """Convert a secondary real input (v, soft targets, weights) to ``dtype`` and check its shape."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_int_option(value, name: str, minimum: int | None = None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = operator.index(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def _check_choice(value, name: str, choices: tuple) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_label_smoothing(value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"label_smoothing: expected a float in [0, 1], got {type(value).__name__} {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"label_smoothing: expected a float in [0, 1], got {value!r}")
    return value


def _as_logits(z) -> tuple[np.ndarray, np.dtype]:
    arr = np.asarray(z)
    dtype = computation_dtype(arr.dtype, "z")
    if arr.ndim == 0:
        raise ValueError("z: expected an array of shape (..., K) with the classes on the last axis, got a 0-d array")
    if arr.shape[-1] < 1:
        raise ValueError(f"z: expected at least one class on the last axis, got shape {arr.shape}")
    return arr, dtype


def _as_labels(y: np.ndarray, batch_shape: tuple, n_classes: int, ignore_index: int | None) -> np.ndarray:
    """Check integer labels: each in [0, K) or equal to ignore_index; return them as int64."""
    if y.dtype.kind not in "iu":
        raise TypeError(
            f"y: labels of the batch shape {batch_shape} must have an integer dtype, got dtype {y.dtype} "
            f"(soft targets need z's full shape)"
        )
    # Two reductions and no temporaries in the common case; the element-wise test (which
    # allows ignore_index and finds the first offender) only when the extremes are outside.
    in_range = y.size == 0 or (int(y.min()) >= 0 and int(y.max()) < n_classes)
    if not in_range:
        bad = (y < 0) | (y >= n_classes)
        if ignore_index is not None:
            bad &= y != ignore_index
        if bad.any():
            flat = int(np.flatnonzero(bad.ravel())[0])
            position = np.unravel_index(flat, batch_shape) if batch_shape else ()
            allowed = f"[0, {n_classes})"
            if ignore_index is not None:
                allowed += f" or equal to ignore_index={ignore_index}"
            where = f"y[{', '.join(map(str, position))}]" if position else "y"
            raise ValueError(f"y: expected labels in {allowed}, got {where} = {y[position]}")
    labels = np.ascontiguousarray(y, dtype=np.int64).reshape(-1)
    if ignore_index is not None and not INT64_MIN <= ignore_index <= INT64_MAX:
        # Only unsigned labels can equal an ignore_index beyond int64; give them a
        # sentinel that survives the conversion (validation has rejected every other -1).
        labels = np.where(y.reshape(-1) == ignore_index, IGNORED_LABEL_SENTINEL, labels)
    return labels


def _check_out(out, name: str, shape: tuple, dtype: np.dtype, inputs: list, may_be: object = None) -> np.ndarray:
    """An ``out`` array must match exactly and must not overlap any input (except ``may_be``)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, got one with strides {out.strides}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: expected a writeable array, got a read-only one")
    for input_name, arr in inputs:
        if out is may_be and arr is may_be:
            continue
        if isinstance(arr, np.ndarray) and np.shares_memory(out, arr):
            raise ValueError(
                f"{name}: must not overlap the input {input_name}, got an array sharing memory with it"
            )
    return out


def _output_shape(kind: str, batch_shape: tuple, n_classes: int, reduction: str, layout: str) -> tuple:
    if kind == "loss":
        return batch_shape if reduction == "none" else ()
    if kind == "hessian":
        if layout == "full":
            return batch_shape + (n_classes, n_classes)
        return batch_shape + (packed_size(n_classes),)
    return batch_shape + (n_classes,)


def make_plan(
    operation: str,
    z,
    y=None,
    v=None,
    *,
    sample_weight=None,
    class_weight=None,
    label_smoothing=0.0,
    ignore_index=None,
    reduction="none",
    layout="packed_upper",
    num_threads=None,
    outs: tuple = (),
) -> Plan:
    """Validate one public call and allocate its outputs; see the README for the conventions."""
    output_kinds, target_required, uses_v, uses_layout, out_names = OPERATIONS[operation]
    z_user = z
    z, dtype = _as_logits(z)
    batch_shape, n_classes = z.shape[:-1], z.shape[-1]
    n_rows = int(np.prod(batch_shape, dtype=np.int64))
    plan = Plan(operation, dtype, batch_shape, n_rows, n_classes, z=None)

    if num_threads is not None:
        num_threads = _check_int_option(num_threads, "num_threads", minimum=1)
    plan.num_threads = num_threads
    if uses_layout:
        plan.layout = _check_choice(layout, "layout", LAYOUTS)
    inputs = [("z", z_user)]

    if target_required is not None:
        plan.reduction = _check_choice(reduction, "reduction", REDUCTIONS)
        plan.label_smoothing = _check_label_smoothing(label_smoothing)
        if ignore_index is not None:
            plan.ignore_index = _check_int_option(ignore_index, "ignore_index")
        if y is None:
            if target_required:
                raise ValueError(
                    f"y: {operation} needs labels of shape {batch_shape} or soft targets of shape {z.shape}, got None"
                )
            for option, given in (
                ("class_weight", class_weight is not None),
                ("label_smoothing", plan.label_smoothing != 0.0),
                ("ignore_index", plan.ignore_index is not None),
            ):
                if given:
                    raise ValueError(f"{option}: only meaningful with targets y, got y=None")
        else:
            inputs.append(("y", y))
            _set_targets(plan, y, z.shape)
        if sample_weight is not None:
            inputs.append(("sample_weight", sample_weight))
            plan.sample_weight = _as_real(sample_weight, "sample_weight", dtype, batch_shape).reshape(-1)
        if class_weight is not None:
            inputs.append(("class_weight", class_weight))
            plan.class_weight = _as_real(class_weight, "class_weight", dtype, (n_classes,))
    if uses_v:
        if v is None:
            raise ValueError(f"v: expected an array of shape {z.shape}, got None")
        inputs.append(("v", v))
        plan.v = _as_real(v, "v", dtype, z.shape).reshape(n_rows, n_classes)

    results = []
    for kind, out_name, out in zip(output_kinds, out_names, outs):
        shape = _output_shape(kind, batch_shape, n_classes, plan.reduction, plan.layout)
        if out is None:
            out = np.empty(shape, dtype=dtype)
        else:
            may_be = z_user if kind in IN_PLACE_OUTPUTS else None
            out = _check_out(out, out_name, shape, dtype, inputs + [(r, a) for r, a in zip(out_names, results)], may_be)
        results.append(out)
        plan.outputs[kind] = _flat_view(out, kind, plan)
    plan.results = tuple(results)
    plan.z = np.ascontiguousarray(z, dtype=dtype).reshape(n_rows, n_classes)
    return plan


def _flat_view(out: np.ndarray, kind: str, plan: Plan) -> np.ndarray:
    """The view a backend writes through: (N,) or 0-d for the loss, (N, width) otherwise."""
    if kind == "loss":
        return out if plan.reduction != "none" else out.reshape(plan.n_rows)
    width = plan.n_classes
    if kind == "hessian":
        width = width * width if plan.layout == "full" else packed_size(width)
    return out.reshape(plan.n_rows, width)


def _set_targets(plan: Plan, y, z_shape: tuple) -> None:
    """Labels when y has the batch shape, soft targets when it has z's shape."""
    batch_shape, n_classes = z_shape[:-1], z_shape[-1]
    if isinstance(y, (bool, np.bool_)):
        raise TypeError(f"y: expected integer labels or real soft targets, got {type(y).__name__} {y!r}")
    y_arr = np.asarray(y)
    if y_arr.dtype.kind not in "biuf":
        raise TypeError(f"y: expected integer labels or real soft targets, got dtype {y_arr.dtype}")
    if y_arr.shape == tuple(z_shape):
        if plan.ignore_index is not None:
            raise ValueError("ignore_index: only meaningful with integer labels, got soft targets y")
        plan.target_kind = TARGET_SOFT
        plan.soft_targets = np.ascontiguousarray(y_arr, dtype=plan.dtype).reshape(plan.n_rows, n_classes)
    elif y_arr.shape == tuple(batch_shape):
        plan.target_kind = TARGET_LABELS
        plan.labels = _as_labels(y_arr, batch_shape, n_classes, plan.ignore_index)
        if plan.ignore_index is not None and not INT64_MIN <= plan.ignore_index <= INT64_MAX:
            plan.ignore_index = IGNORED_LABEL_SENTINEL
    else:
        raise ValueError(
            f"y: expected labels of shape {batch_shape} or soft targets of shape {tuple(z_shape)}, got shape {y_arr.shape}"
        )
