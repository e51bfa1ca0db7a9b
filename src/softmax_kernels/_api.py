"""The public functions, written once and bound to a backend.

``build_public_api(run, module)`` returns the nine public functions; each one
validates its arguments into a :class:`~softmax_kernels._validate.Plan`
(allocating the outputs), hands the plan to ``run`` (the compiled driver or the
NumPy reference), and returns the output arrays. Both backends therefore share
signatures, docstrings and validation exactly.
"""

from __future__ import annotations

from ._validate import make_plan

PUBLIC_NAMES = (
    "softmax",
    "log_softmax",
    "loss",
    "gradient",
    "loss_gradient",
    "hessian",
    "loss_gradient_hessian",
    "hessian_vector_product",
    "hessian_diagonal",
)

_Z_DOC = """z : array_like, shape (..., K)
        Logits; the last axis holds the K >= 1 classes, the leading axes are batch axes.
        float32 and float64 compute natively; other real dtypes compute in float64."""

_Y_DOC = """y : array_like{optional}
        Integer labels of the batch shape (values in [0, K) or ``ignore_index``),
        or soft targets of z's full shape (rows need not sum to 1).{none_meaning}"""

_OPTIONS_DOC = """sample_weight : array_like of the batch shape, optional
        Per-row weight w.
    class_weight : array_like of shape (K,), optional
        Per-class weight cw, as torch's ``weight``.
    label_smoothing : float in [0, 1], default 0.0
        eps: the target becomes (1 - eps) onehot(y) + eps / K (soft targets: y in place of onehot).
    ignore_index : int, optional
        Rows whose label equals it contribute exactly zero, whatever their logits hold.
    reduction : {{"none", "sum", "mean"}}, default "none"
        "mean" divides by sum of w cw_y over non-ignored rows (labels) or sum of w (soft targets,
        or y=None); derivatives are those of the reduced loss.{layout}
    num_threads : int, optional
        OpenMP threads; None uses the OpenMP default at call time (``OMP_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``)."""

_LAYOUT_DOC = """
    layout : {"packed_upper", "packed_lower", "full"}, default "packed_upper"
        LAPACK UPLO='U' / UPLO='L' packed storage of length K(K+1)/2 per row, or (K, K)."""

_TARGET_NOTES = """
    Notes
    -----
    Per row, with a = w cw * ((1 - eps) onehot(y) + eps/K) and c = sum(a), s = softmax(z):
    loss = c logsumexp(z) - a.z, gradient = c s - a, Hessian = c (diag(s) - s s^T).
    Every element is accurate to 4 units of roundoff relative to its condition (README)."""


def _doc(summary: str, params: str, returns: str, y: str | None = None, layout: bool = False) -> str:
    parts = [summary, "", "    Parameters", "    ----------", "    " + _Z_DOC]
    if y is not None:
        parts.append("    " + _Y_DOC.format(**_y_variant(y)))
    parts.append("    " + params)
    if y is not None:
        parts.append("    " + _OPTIONS_DOC.format(layout=_LAYOUT_DOC if layout else ""))
    parts += ["", "    Returns", "    -------", "    " + returns]
    if y is not None:
        parts.append(_TARGET_NOTES)
    return "\n".join(parts)


def _y_variant(kind: str) -> dict:
    if kind == "required":
        return {"optional": "", "none_meaning": ""}
    return {
        "optional": ", optional",
        "none_meaning": "\n        None means c = 1 per row (times sample_weight): the Hessian of log-sum-exp.",
    }


def build_public_api(run, module: str) -> dict:
    """The public functions of one backend; ``run(plan)`` writes the plan's outputs."""

    def call(operation, z, y=None, v=None, *, outs, **options):
        plan = make_plan(operation, z, y, v, outs=outs, **options)
        run(plan)
        return plan.results if len(plan.results) > 1 else plan.results[0]

    def softmax(z, *, out=None, num_threads=None):
        return call("softmax", z, outs=(out,), num_threads=num_threads)

    def log_softmax(z, *, out=None, num_threads=None):
        return call("log_softmax", z, outs=(out,), num_threads=num_threads)

    def loss(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
             reduction="none", out=None, num_threads=None):
        return call("loss", z, y, outs=(out,), sample_weight=sample_weight, class_weight=class_weight,
                    label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                    num_threads=num_threads)

    def gradient(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
                 reduction="none", out=None, num_threads=None):
        return call("gradient", z, y, outs=(out,), sample_weight=sample_weight, class_weight=class_weight,
                    label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                    num_threads=num_threads)

    def loss_gradient(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
                      reduction="none", loss_out=None, grad_out=None, num_threads=None):
        return call("loss_gradient", z, y, outs=(loss_out, grad_out), sample_weight=sample_weight,
                    class_weight=class_weight, label_smoothing=label_smoothing, ignore_index=ignore_index,
                    reduction=reduction, num_threads=num_threads)

    def hessian(z, y=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
                reduction="none", layout="packed_upper", out=None, num_threads=None):
        return call("hessian", z, y, outs=(out,), sample_weight=sample_weight, class_weight=class_weight,
                    label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                    layout=layout, num_threads=num_threads)

    def loss_gradient_hessian(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
                              ignore_index=None, reduction="none", layout="packed_upper", loss_out=None,
                              grad_out=None, hess_out=None, num_threads=None):
        return call("loss_gradient_hessian", z, y, outs=(loss_out, grad_out, hess_out),
                    sample_weight=sample_weight, class_weight=class_weight, label_smoothing=label_smoothing,
                    ignore_index=ignore_index, reduction=reduction, layout=layout, num_threads=num_threads)

    def hessian_vector_product(z, v, y=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
                               ignore_index=None, reduction="none", out=None, num_threads=None):
        return call("hessian_vector_product", z, y, v, outs=(out,), sample_weight=sample_weight,
                    class_weight=class_weight, label_smoothing=label_smoothing, ignore_index=ignore_index,
                    reduction=reduction, num_threads=num_threads)

    def hessian_diagonal(z, y=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
                         ignore_index=None, reduction="none", out=None, num_threads=None):
        return call("hessian_diagonal", z, y, outs=(out,), sample_weight=sample_weight,
                    class_weight=class_weight, label_smoothing=label_smoothing, ignore_index=ignore_index,
                    reduction=reduction, num_threads=num_threads)

    out_doc = "out : ndarray, optional\n        Exact shape and dtype, C-contiguous, writeable."
    threads_doc = "num_threads : int, optional\n        OpenMP threads; None uses the OpenMP default at call time."
    softmax.__doc__ = _doc(
        "Softmax along the last axis: s_k = exp(z_k - m) / sum_j exp(z_j - m), m = max z.",
        f"{out_doc} May be z itself.\n    {threads_doc}", "ndarray of z's shape")
    log_softmax.__doc__ = _doc(
        "Log-softmax along the last axis: (z_k - m) - log1p(sum_{j != argmax} exp(z_j - m)).",
        f"{out_doc} May be z itself.\n    {threads_doc}", "ndarray of z's shape")
    loss.__doc__ = _doc(
        "Softmax cross-entropy loss c logsumexp(z) - a.z per row, or reduced.",
        "out : ndarray, optional\n        Of the batch shape (reduction='none') or 0-d.",
        "ndarray of the batch shape, or 0-d for 'sum'/'mean'", y="required")
    gradient.__doc__ = _doc(
        "Gradient c s - a of the (reduced) loss with respect to z.",
        "out : ndarray, optional\n        Of z's shape; may be z itself.", "ndarray of z's shape", y="required")
    loss_gradient.__doc__ = _doc(
        "Loss and gradient in one pass over z.",
        "loss_out, grad_out : ndarray, optional\n        As ``out`` of `loss` and `gradient`.",
        "(loss, gradient)", y="required")
    hessian.__doc__ = _doc(
        "Hessian c (diag(s) - s s^T) per row, in packed or full layout.",
        "out : ndarray, optional\n        (..., K(K+1)/2) packed or (..., K, K) full.",
        "ndarray (..., K(K+1)/2) or (..., K, K)", y="optional", layout=True)
    loss_gradient_hessian.__doc__ = _doc(
        "Loss, gradient and Hessian in one pass over z.",
        "loss_out, grad_out, hess_out : ndarray, optional\n        As ``out`` of `loss`, `gradient`, `hessian`.",
        "(loss, gradient, hessian)", y="required", layout=True)
    hessian_vector_product.__doc__ = _doc(
        "Hessian-vector product c s * (v - (s.v) 1) per row, in O(K).",
        "v : array_like of z's shape\n        The vectors, one per row.\n    out : ndarray, optional\n"
        "        Of z's shape.", "ndarray of z's shape", y="optional")
    hessian_diagonal.__doc__ = _doc(
        "Diagonal c s * (1 - s) of the Hessian per row.",
        "out : ndarray, optional\n        Of z's shape.", "ndarray of z's shape", y="optional")

    functions = {}
    for name, function in locals().copy().items():
        if name in PUBLIC_NAMES:
            function.__module__ = module
            function.__qualname__ = name
            functions[name] = function
    return functions
