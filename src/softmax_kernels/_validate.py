"""The one place where user input becomes checked arrays and a small plan.

Every public function (compiled or reference) calls :func:`make_plan` first.
Nothing is computed or written before it returns, so a bad argument raises
``TypeError``/``ValueError`` naming the argument, what was expected and what
was received, and leaves every ``out`` array untouched.

The checks that need only shapes and dtypes (:func:`check_options`,
:func:`describe_inputs`) also accept Dask arrays: ``softmax_kernels.dask`` runs them
when its graph is built, with the same messages.

The plan carries C-contiguous 2-D views ``(N, K)`` of all inputs in the
computation dtype and 2-D views of the output arrays; backends only ever see
those.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass, field

import numpy as np

from ._layout import LAYOUTS, PACKED_LAYOUTS, packed_n_classes
from ._operations import OPERATIONS, OUTPUT_KINDS, TARGETS_REQUIRED, Operation, hessian_width, output_shape

TARGET_NONE, TARGET_LABELS, TARGET_SOFT = "none", "labels", "soft"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
IGNORED_LABEL_SENTINEL = -1


@dataclass
class Plan:
    """Checked inputs (2-D, C-contiguous, computation dtype) and output views."""

    operation: str
    dtype: np.dtype
    batch_shape: tuple
    n_rows: int
    n_classes: int
    z: np.ndarray | None = None  # (N, K)
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
    groups: np.ndarray | None = None  # (N,) int64, for a summed Hessian by group
    n_groups: int | None = None  # None: no groups
    # 2-D (or 0-d for a reduced loss) views of the outputs, keyed by output kind.
    outputs: dict = field(default_factory=dict)
    # The arrays handed back to the user, in the order of the operation's outputs.
    results: tuple = ()

    @property
    def hessian_width(self) -> int:
        """Values per row of the Hessian output; 0 when there is none."""
        return hessian_width(self.n_classes, self.layout) if "hessian" in self.outputs else 0

    @property
    def group_count(self) -> int:
        """Groups of a summed Hessian: 1 without groups."""
        return 1 if self.n_groups is None else self.n_groups

    def output_shape(self, kind: str) -> tuple:
        return output_shape(kind, self.batch_shape, self.n_classes, self.reduction, self.layout, self.n_groups)


@dataclass(frozen=True)
class InputDescription:
    """What the shapes and dtypes of a call's inputs say, before any value is read."""

    dtype: np.dtype  # the computation dtype
    batch_shape: tuple
    n_classes: int
    target_kind: str


def computation_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """float32/float64 compute natively; other real dtypes compute in float64."""
    if dtype == np.float32 or dtype == np.float64:
        return np.dtype(dtype)
    if dtype.kind in "biuf":
        return np.dtype(np.float64)
    raise TypeError(f"{name}: expected an array of real numbers, got dtype {dtype}")


# ---- options -------------------------------------------------------------------------------


def _check_int_option(value, name: str, minimum: int | None = None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = operator.index(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_choice(value, name: str, choices: tuple) -> str:
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


def check_options(operation: Operation, arguments: dict) -> dict:
    """The checked scalar options of a call (those the operation takes), by name."""
    options = {"num_threads": arguments.get("num_threads")}
    if options["num_threads"] is not None:
        options["num_threads"] = _check_int_option(options["num_threads"], "num_threads", minimum=1)
    if operation.takes_layout:
        options["layout"] = check_choice(arguments["layout"], "layout", LAYOUTS)
    if operation.takes_groups:
        n_groups = arguments["n_groups"]
        if n_groups is not None:
            if arguments["groups"] is None:
                raise ValueError(f"n_groups: only meaningful with groups, got n_groups={n_groups!r} and groups=None")
            n_groups = _check_int_option(n_groups, "n_groups", minimum=0)
        options["n_groups"] = n_groups
    if operation.takes_target_options:
        options["reduction"] = check_choice(arguments["reduction"], "reduction", operation.reductions)
        options["label_smoothing"] = _check_label_smoothing(arguments["label_smoothing"])
        ignore_index = arguments["ignore_index"]
        options["ignore_index"] = None if ignore_index is None else _check_int_option(ignore_index, "ignore_index")
        if arguments.get("y") is None:
            if operation.targets == TARGETS_REQUIRED:
                raise ValueError(
                    f"y: {operation.name} needs labels of shape {arguments['z'].shape[:-1]} or soft targets of "
                    f"shape {arguments['z'].shape}, got None"
                )
            for option, given in (
                ("class_weight", arguments["class_weight"] is not None),
                ("label_smoothing", options["label_smoothing"] != 0.0),
                ("ignore_index", options["ignore_index"] is not None),
            ):
                if given:
                    raise ValueError(f"{option}: only meaningful with targets y, got y=None")
    return options


# ---- shapes and dtypes (NumPy or Dask arrays) ----------------------------------------------


def check_logits(z) -> np.dtype:
    """The computation dtype of logits z of shape (..., K), K >= 1."""
    dtype = computation_dtype(z.dtype, "z")
    if z.ndim == 0:
        raise ValueError("z: expected an array of shape (..., K) with the classes on the last axis, got a 0-d array")
    if z.shape[-1] < 1:
        raise ValueError(f"z: expected at least one class on the last axis, got shape {tuple(z.shape)}")
    return dtype


def _check_real(x, name: str, shape: tuple) -> None:
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {x.dtype}")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")


def _target_kind(y, z_shape: tuple, ignore_index) -> str:
    """Labels when y has the batch shape, soft targets when it has z's shape."""
    batch_shape = z_shape[:-1]
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y: expected integer labels or real soft targets, got dtype {y.dtype}")
    if tuple(y.shape) == z_shape:
        if ignore_index is not None:
            raise ValueError("ignore_index: only meaningful with integer labels, got soft targets y")
        return TARGET_SOFT
    if tuple(y.shape) == batch_shape:
        if y.dtype.kind not in "iu":
            raise TypeError(
                f"y: labels of the batch shape {batch_shape} must have an integer dtype, got dtype {y.dtype} "
                f"(soft targets need z's full shape)"
            )
        return TARGET_LABELS
    raise ValueError(
        f"y: expected labels of shape {batch_shape} or soft targets of shape {z_shape}, got shape {tuple(y.shape)}"
    )


def describe_inputs(operation: Operation, arrays: dict, options: dict) -> InputDescription:
    """Check the shapes and dtypes of the array inputs (anything with .shape and .dtype) after
    :func:`check_logits` and :func:`check_options`."""
    z = arrays["z"]
    dtype = check_logits(z)
    z_shape = tuple(z.shape)
    batch_shape, n_classes = z_shape[:-1], z_shape[-1]
    target_kind = TARGET_NONE
    if operation.takes_target_options:
        if arrays.get("y") is not None:
            target_kind = _target_kind(arrays["y"], z_shape, options["ignore_index"])
        if arrays.get("sample_weight") is not None:
            _check_real(arrays["sample_weight"], "sample_weight", batch_shape)
        if arrays.get("class_weight") is not None:
            _check_real(arrays["class_weight"], "class_weight", (n_classes,))
    if operation.takes_groups and arrays.get("groups") is not None:
        groups = arrays["groups"]
        if groups.dtype.kind not in "iu":
            raise TypeError(f"groups: expected integers of the batch shape {batch_shape}, got dtype {groups.dtype}")
        if tuple(groups.shape) != batch_shape:
            raise ValueError(f"groups: expected shape {batch_shape}, got {tuple(groups.shape)}")
    if operation.takes_v:
        if arrays.get("v") is None:
            raise ValueError(f"v: expected an array of shape {z_shape}, got None")
        _check_real(arrays["v"], "v", z_shape)
    return InputDescription(dtype, batch_shape, n_classes, target_kind)


# ---- values and outputs (NumPy) ------------------------------------------------------------


def check_targets_type(y) -> None:
    """A bool is neither a label nor a soft target (NumPy would make it an array of one)."""
    if isinstance(y, (bool, np.bool_)):
        raise TypeError(f"y: expected integer labels or real soft targets, got {type(y).__name__} {y!r}")


def _as_targets(y) -> np.ndarray | None:
    check_targets_type(y)
    return None if y is None else np.asarray(y)


def _largest_if_nonnegative(values: np.ndarray) -> int:
    """The largest of some (integral) values, or -1 if one is negative. Integers take one
    reduction: seen as unsigned, a negative integer is larger than every non-negative one."""
    if values.dtype.kind == "i":
        largest = int(values.view(values.dtype.str.replace("i", "u")).max())
        return largest if largest <= np.iinfo(values.dtype).max else -1
    return int(values.max()) if values.dtype.kind == "u" or values.min() >= 0 else -1


def check_groups(groups: np.ndarray, n_groups: int | None) -> tuple[np.ndarray, int]:
    """Check group indices: each in [0, n_groups); n_groups defaults to the largest + 1."""
    largest = _largest_if_nonnegative(groups) if groups.size else -1
    if n_groups is None:
        n_groups = (largest if largest >= 0 else int(groups.max(initial=-1))) + 1
    if groups.size and not 0 <= largest < n_groups:
        bad = (groups < 0) | (groups >= n_groups)
        position = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), groups.shape)
        where = f"groups[{', '.join(map(str, position))}]" if groups.ndim else "groups"
        raise ValueError(f"groups: expected values in [0, {n_groups}), got {where} = {groups[position]}")
    return np.ascontiguousarray(groups, dtype=np.int64).reshape(-1), n_groups


def check_labels(y: np.ndarray, n_classes: int, ignore_index: int | None) -> np.ndarray:
    """Check integer labels: each in [0, K) or equal to ignore_index; return them as int64 (N,)."""
    # One reduction and no temporaries in the common case; the element-wise test (which
    # allows ignore_index and finds the first offender) only when some label is outside.
    in_range = y.size == 0 or 0 <= _largest_if_nonnegative(y) < n_classes
    if not in_range:
        bad = (y < 0) | (y >= n_classes)
        if ignore_index is not None:
            bad &= y != ignore_index
        if bad.any():
            flat = int(np.flatnonzero(bad.ravel())[0])
            position = np.unravel_index(flat, y.shape) if y.ndim else ()
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


def _flat_view(out: np.ndarray, kind: str, plan: Plan) -> np.ndarray:
    """The view a backend writes through: (N,) or 0-d for the loss, (groups, width) for a
    summed Hessian, (N, width) otherwise."""
    if kind == "hessian_sum":
        return out.reshape(plan.group_count, hessian_width(plan.n_classes, plan.layout))
    if kind == "loss":
        return out if plan.reduction != "none" else out.reshape(plan.n_rows)
    width = hessian_width(plan.n_classes, plan.layout) if kind == "hessian" else plan.n_classes
    return out.reshape(plan.n_rows, width)


def _set_outputs(plan: Plan, operation: Operation, arguments: dict, inputs: list) -> None:
    """Allocate or check each output and record its flat view."""
    results = []
    for kind, out_name in zip(operation.outputs, operation.out_arguments):
        shape = plan.output_shape(kind)
        out = arguments.get(out_name)
        if out is None:
            out = np.empty(shape, dtype=plan.dtype)
        else:
            may_be = arguments["z"] if OUTPUT_KINDS[kind].may_be_z else None
            earlier = [(name, array) for name, array in zip(operation.out_arguments, results)]
            out = _check_out(out, out_name, shape, plan.dtype, inputs + earlier, may_be)
        results.append(out)
        plan.outputs[kind] = _flat_view(out, kind, plan)
    plan.results = tuple(results)


def make_plan(operation_name: str, arguments: dict) -> Plan:
    """Validate one public call (its arguments by parameter name) and allocate its outputs."""
    operation = OPERATIONS[operation_name]
    z = np.asarray(arguments["z"])
    check_logits(z)
    options = check_options(operation, dict(arguments, z=z))
    arrays = {"z": z, "y": _as_targets(arguments.get("y"))}
    for name in ("v", "sample_weight", "class_weight", "groups"):
        arrays[name] = None if arguments.get(name) is None else np.asarray(arguments[name])
    described = describe_inputs(operation, arrays, options)
    dtype, n_classes = described.dtype, described.n_classes
    n_rows = int(np.prod(described.batch_shape, dtype=np.int64))
    plan = Plan(operation_name, dtype, described.batch_shape, n_rows, n_classes,
                target_kind=described.target_kind, num_threads=options["num_threads"])
    plan.layout = options.get("layout", plan.layout)
    plan.reduction = options.get("reduction", plan.reduction)
    plan.label_smoothing = options.get("label_smoothing", 0.0)
    plan.ignore_index = options.get("ignore_index")
    y = arrays["y"]
    if plan.target_kind == TARGET_SOFT:
        plan.soft_targets = np.ascontiguousarray(y, dtype=dtype).reshape(n_rows, n_classes)
    elif plan.target_kind == TARGET_LABELS:
        plan.labels = check_labels(y, n_classes, plan.ignore_index)
        if plan.ignore_index is not None and not INT64_MIN <= plan.ignore_index <= INT64_MAX:
            plan.ignore_index = IGNORED_LABEL_SENTINEL
    if arrays["sample_weight"] is not None:
        plan.sample_weight = np.ascontiguousarray(arrays["sample_weight"], dtype=dtype).reshape(-1)
    if arrays["class_weight"] is not None:
        plan.class_weight = np.ascontiguousarray(arrays["class_weight"], dtype=dtype)
    if arrays["v"] is not None:
        plan.v = np.ascontiguousarray(arrays["v"], dtype=dtype).reshape(n_rows, n_classes)
    if arrays["groups"] is not None:
        plan.groups, plan.n_groups = check_groups(arrays["groups"], options["n_groups"])
    inputs = [(name, arguments[name]) for name in ("z", "y", "sample_weight", "class_weight", "v", "groups")
              if arguments.get(name) is not None]
    _set_outputs(plan, operation, arguments, inputs)
    plan.z = np.ascontiguousarray(z, dtype=dtype).reshape(n_rows, n_classes)
    return plan


# ---- pack and unpack -----------------------------------------------------------------------


def _check_numeric(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")


def check_symmetric_stack(h, layout) -> tuple[np.ndarray, str]:
    """The input of ``pack``: matrices (..., K, K) of any numeric dtype, and a packed layout."""
    layout = check_choice(layout, "layout", PACKED_LAYOUTS)
    arr = np.asarray(h)
    _check_numeric(arr, "h")
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"h: expected an array of shape (..., K, K), got shape {arr.shape}")
    return arr, layout


def check_packed_stack(hp, layout) -> tuple[np.ndarray, int, str]:
    """The input of ``unpack``: packed rows (..., K(K+1)/2), their K, and a packed layout."""
    layout = check_choice(layout, "layout", PACKED_LAYOUTS)
    arr = np.asarray(hp)
    _check_numeric(arr, "hp")
    if arr.ndim < 1:
        raise ValueError("hp: expected an array of shape (..., K(K+1)/2), got a 0-d array")
    n_classes = packed_n_classes(arr.shape[-1])
    if n_classes is None:
        raise ValueError(f"hp: the last axis must have a triangular length K(K+1)/2, got {arr.shape[-1]}")
    return arr, n_classes, layout
