"""The docstrings of the public functions, composed from one description per parameter
and per output kind, so that every backend and the Dask functions document exactly the
arguments they take."""

from __future__ import annotations

from ._operations import NO_TARGETS, OUTPUT_KINDS, TARGETS_REQUIRED, Operation

_PARAMETERS = {
    "z": """z : array_like, shape (..., K)
    Logits; the last axis holds the K >= 1 classes, the leading axes are batch axes.
    float32 and float64 compute natively; other real dtypes compute in float64.""",
    "v": """v : array_like of z's shape
    The vectors, one per row.""",
    "y": """y : array_like{optional}
    Integer labels of the batch shape (values in [0, K) or ``ignore_index``),
    or soft targets of z's full shape (rows need not sum to 1).{none_meaning}""",
    "sample_weight": """sample_weight : array_like of the batch shape, optional
    Per-row weight w.""",
    "class_weight": """class_weight : array_like of shape (K,), optional
    Per-class weight cw, as torch's ``weight``.""",
    "label_smoothing": """label_smoothing : float in [0, 1], default 0.0
    eps: the target becomes (1 - eps) onehot(y) + eps / K (soft targets: y in place of onehot).""",
    "ignore_index": """ignore_index : int, optional
    Rows whose label equals it contribute exactly zero, whatever their logits hold.""",
    "reduction": """reduction : {{{choices}}}, default "{default}"
    "mean" divides by sum of w cw_y over non-ignored rows (labels) or sum of w (soft targets,
    or y=None); derivatives are those of the reduced loss.""",
    "groups": """groups : array_like of integers of the batch shape, optional
    The group of each row, in [0, n_groups): one summed Hessian per group.""",
    "n_groups": """n_groups : int, optional
    The number of groups (with groups only); default: the largest group + 1.""",
    "layout": """layout : {"packed_upper", "packed_lower", "full"}, default "packed_upper"
    LAPACK UPLO='U' / UPLO='L' packed storage of length K(K+1)/2 per row, or (K, K).""",
    "num_threads": """num_threads : int, optional
    OpenMP threads; None uses the OpenMP default at call time (``OMP_NUM_THREADS``,
    ``threadpoolctl.threadpool_limits``).""",
}

# What each output kind is, as a return value and as an ``out`` array.
_OUTPUTS = {
    "softmax": "ndarray of z's shape",
    "log_softmax": "ndarray of z's shape",
    "loss": "ndarray of the batch shape, or 0-d for reduction 'sum' or 'mean'",
    "gradient": "ndarray of z's shape",
    "hessian": "ndarray (..., K(K+1)/2) packed or (..., K, K) full",
    "hessian_vector_product": "ndarray of z's shape",
    "hessian_diagonal": "ndarray of z's shape",
    "hessian_sum": "ndarray (K(K+1)/2,) packed or (K, K) full; with groups (n_groups, ...)",
}

_OUT_RULES = "Exact shape and dtype,\n    C-contiguous, writeable, overlapping no input"

_TARGET_NOTES = """Notes
-----
Per row, with a = w cw * ((1 - eps) onehot(y) + eps/K) and c = sum(a), s = softmax(z):
loss = c logsumexp(z) - a.z, gradient = c s - a, Hessian = c (diag(s) - s s^T).
Every element is accurate to 4 units of roundoff relative to its condition (README)."""


def _parameter(name: str, operation: Operation) -> str:
    if name == "y":
        required = operation.targets == TARGETS_REQUIRED
        return _PARAMETERS["y"].format(
            optional="" if required else ", optional",
            none_meaning="" if required else
            "\n    None means c = 1 per row (times sample_weight): the Hessian of log-sum-exp.",
        )
    if name == "reduction":
        choices = ", ".join(f'"{reduction}"' for reduction in operation.reductions)
        return _PARAMETERS["reduction"].format(choices=choices, default=operation.reduction_default)
    if name == "num_threads" and operation.name == "hessian_sum":
        return _PARAMETERS[name] + """ For more than 16 classes without groups the
    sums come from BLAS products, whose threads it also limits where threadpoolctl is
    installed."""
    return _PARAMETERS[name]


def _out_parameter(name: str, kind: str) -> str:
    in_place = " May be z itself." if OUTPUT_KINDS[kind].may_be_z else ""
    return f"{name} : {_OUTPUTS[kind]}, optional\n    Where to write the {kind}. {_OUT_RULES}.{in_place}"


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.splitlines())


def docstring(operation: Operation, *, with_out: bool = True, note: str = "") -> str:
    """The docstring of ``operation``'s public function; ``note`` ends it (e.g. the Dask note)."""
    outs = dict(zip(operation.out_arguments, operation.outputs))
    parameters = [_parameter(name, operation) for name, _ in operation.positional_parameters()]
    for name, _ in operation.keyword_parameters(with_out):
        parameters.append(_out_parameter(name, outs[name]) if name in outs else _parameter(name, operation))
    if len(operation.outputs) == 1:
        returns = _OUTPUTS[operation.outputs[0]]
    else:
        returns = "tuple (" + ", ".join(operation.outputs) + ")\n" + "\n".join(
            f"    {kind}: {_OUTPUTS[kind]}" for kind in operation.outputs)
    sections = [
        operation.summary,
        "Parameters\n----------\n" + "\n".join(parameters),
        "Returns\n-------\n" + returns,
    ]
    if operation.targets != NO_TARGETS:
        sections.append(_TARGET_NOTES)
    if note:
        sections.append(note.strip("\n"))
    first, *rest = sections
    return first + "\n\n" + _indent("\n\n".join(rest)) + "\n"
