"""The registry of operations: one record per public function.

The public API (both backends), its validation, the Dask functions, the benchmarks,
the command line, the stubs' consistency test and the tests' parametrisation all read
their lists from here. Adding an operation means adding one record below, its output
kind (if new) and its kernel.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ._layout import packed_size
from ._reduction import REDUCTIONS

# Whether an operation takes targets y: never (softmax), always (the loss and its gradient),
# or optionally (curvature: y=None gives the derivatives of log-sum-exp).
NO_TARGETS, TARGETS_REQUIRED, TARGETS_OPTIONAL = "no targets", "targets required", "targets optional"

# The options that go with targets, and their defaults (reduction's is per operation).
TARGET_OPTIONS = {"sample_weight": None, "class_weight": None, "label_smoothing": 0.0, "ignore_index": None}
LAYOUT_DEFAULT = "packed_upper"


@dataclass(frozen=True)
class OutputKind:
    """One kind of output array: its shape rule and whether its ``out`` may be z itself."""

    name: str
    # "row": z's shape; "loss": the batch shape, or 0-d when reduced; "hessian": a matrix per row;
    # "summed_hessian": one matrix, or one per group
    shape: str
    may_be_z: bool = False


OUTPUT_KINDS = {
    kind.name: kind
    for kind in (
        OutputKind("softmax", "row", may_be_z=True),
        OutputKind("log_softmax", "row", may_be_z=True),
        OutputKind("loss", "loss"),
        OutputKind("gradient", "row", may_be_z=True),
        OutputKind("hessian", "hessian"),
        OutputKind("hessian_vector_product", "row"),
        OutputKind("hessian_diagonal", "row"),
        OutputKind("hessian_sum", "summed_hessian"),
    )
}


def hessian_width(n_classes: int, layout: str) -> int:
    """Values per row of a Hessian in ``layout``: K(K+1)/2 packed, K*K full."""
    return n_classes * n_classes if layout == "full" else packed_size(n_classes)


def output_shape(kind: str, batch_shape: tuple, n_classes: int, reduction: str, layout: str,
                 n_groups: int | None = None) -> tuple:
    """The shape of an output of ``kind`` for logits of shape batch_shape + (K,); n_groups is
    the number of groups of a summed Hessian, None without groups."""
    rule = OUTPUT_KINDS[kind].shape
    matrix = (n_classes, n_classes) if layout == "full" else (packed_size(n_classes),)
    if rule == "loss":
        return batch_shape if reduction == "none" else ()
    if rule == "hessian":
        return batch_shape + matrix
    if rule == "summed_hessian":
        return matrix if n_groups is None else (n_groups,) + matrix
    return batch_shape + (n_classes,)


@dataclass(frozen=True)
class Operation:
    """A public function: what it returns, which arguments it takes, and its summary line."""

    name: str
    summary: str
    outputs: tuple  # output kinds, in the order they are returned
    out_arguments: tuple  # the keyword that takes a preallocated array for each output
    targets: str = NO_TARGETS
    takes_v: bool = False
    takes_layout: bool = False
    takes_groups: bool = False
    reductions: tuple = REDUCTIONS  # the reductions it accepts, the first the default

    @property
    def takes_target_options(self) -> bool:
        return self.targets != NO_TARGETS

    @property
    def per_row(self) -> bool:
        """Whether every output holds one value per row (or the rows' reduced loss); False for an
        operation that sums matrices across rows (hessian_sum)."""
        return all(OUTPUT_KINDS[kind].shape != "summed_hessian" for kind in self.outputs)

    @property
    def reduction_default(self) -> str:
        return self.reductions[0]

    def positional_parameters(self) -> tuple:
        """(name, default) of the positional parameters; REQUIRED where there is no default."""
        names = [("z", REQUIRED)]
        if self.takes_v:
            names.append(("v", REQUIRED))
        if self.targets != NO_TARGETS:
            names.append(("y", REQUIRED if self.targets == TARGETS_REQUIRED else None))
        return tuple(names)

    def keyword_parameters(self, with_out: bool = True) -> tuple:
        """(name, default) of the keyword-only parameters, in signature order."""
        names = []
        if self.takes_groups:
            names += [("groups", None), ("n_groups", None)]
        if self.takes_target_options:
            names += list(TARGET_OPTIONS.items()) + [("reduction", self.reduction_default)]
        if self.takes_layout:
            names.append(("layout", LAYOUT_DEFAULT))
        if with_out:
            names += [(name, None) for name in self.out_arguments]
        names.append(("num_threads", None))
        return tuple(names)


# The default of a parameter that has none.
REQUIRED = inspect.Parameter.empty

_HESSIAN_OPTIONS = dict(targets=TARGETS_OPTIONAL)

OPERATIONS = {
    operation.name: operation
    for operation in (
        Operation(
            "softmax",
            "Softmax along the last axis: s_k = exp(z_k - m) / sum_j exp(z_j - m), m = max z.",
            ("softmax",), ("out",),
        ),
        Operation(
            "log_softmax",
            "Log-softmax along the last axis: (z_k - m) - log1p(sum_{j != argmax} exp(z_j - m)).",
            ("log_softmax",), ("out",),
        ),
        Operation(
            "loss",
            "Softmax cross-entropy loss c logsumexp(z) - a.z per row, or reduced.",
            ("loss",), ("out",), targets=TARGETS_REQUIRED,
        ),
        Operation(
            "gradient",
            "Gradient c s - a of the (reduced) loss with respect to z.",
            ("gradient",), ("out",), targets=TARGETS_REQUIRED,
        ),
        Operation(
            "loss_gradient",
            "Loss and gradient in one pass over z.",
            ("loss", "gradient"), ("loss_out", "grad_out"), targets=TARGETS_REQUIRED,
        ),
        Operation(
            "hessian",
            "Hessian c (diag(s) - s s^T) per row, in packed or full layout.",
            ("hessian",), ("out",), takes_layout=True, **_HESSIAN_OPTIONS,
        ),
        Operation(
            "loss_gradient_hessian",
            "Loss, gradient and Hessian in one pass over z.",
            ("loss", "gradient", "hessian"), ("loss_out", "grad_out", "hess_out"),
            targets=TARGETS_REQUIRED, takes_layout=True,
        ),
        Operation(
            "hessian_vector_product",
            "Hessian-vector product c s * (v - (s.v) 1) per row, in O(K).",
            ("hessian_vector_product",), ("out",), takes_v=True, **_HESSIAN_OPTIONS,
        ),
        Operation(
            "hessian_diagonal",
            "Diagonal c s * (1 - s) of the Hessian per row.",
            ("hessian_diagonal",), ("out",), **_HESSIAN_OPTIONS,
        ),
        Operation(
            "gradient_hessian_diagonal",
            "Gradient and Hessian diagonal in one pass over z (a boosting objective's two arrays).",
            ("gradient", "hessian_diagonal"), ("grad_out", "diag_out"), targets=TARGETS_REQUIRED,
        ),
        Operation(
            "hessian_sum",
            "The Hessian summed over the batch, sum_i c_i (diag(s_i) - s_i s_i^T), or one sum per group.",
            ("hessian_sum",), ("out",), takes_layout=True, takes_groups=True, reductions=("sum", "mean"),
            **_HESSIAN_OPTIONS,
        ),
    )
}

PUBLIC_NAMES = tuple(OPERATIONS)
