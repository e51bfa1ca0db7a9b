"""What the XGBoost and LightGBM adapters share: their options, the checks of the margins
and labels a boosting library hands over, and the objective's and metric's arithmetic.

A boosting library calls a custom multiclass objective once per round with the raw margins
z (N, K) and the training labels (float, one per row); it wants, per row and class, the
gradient g = c s - a of the loss and a positive curvature h to divide by. Both come from the
kernels in one pass (``gradient_hessian_diagonal``, the options meaning what they mean there);
only the scale of h is the library's convention (:data:`HESSIAN_FACTORS`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

import softmax_kernels as _sk

from ._docstrings import _PARAMETERS
from ._validate import _check_int_option, _check_label_smoothing, _check_real, check_choice, check_labels
from ._validate import computation_dtype

# h = factor * c s (1 - s). "exact": the Hessian's diagonal. "xgboost": XGBoost's multi:softprob
# doubles it. "lightgbm": LightGBM's multiclass scales it by K / (K - 1). The adapters' docstrings
# say why each library does so.
HESSIAN_FACTORS = ("exact", "xgboost", "lightgbm")
APIS = ("native", "sklearn")
# The name the metric reports (distinct from the libraries' own "mlogloss"/"multi_logloss").
METRIC_NAME = "exact_mlogloss"


@dataclass(frozen=True)
class ObjectiveOptions:
    """The checked options of one objective; n_classes None means K is read from the margins."""

    n_classes: int | None
    class_weight: np.ndarray | None
    label_smoothing: float
    hessian: str
    num_threads: int | None

    def kernel_arguments(self) -> dict:
        """The keyword arguments of the kernels' calls, less sample_weight."""
        return {"class_weight": self.class_weight, "label_smoothing": self.label_smoothing,
                "num_threads": self.num_threads}


def check_n_classes(n_classes) -> int | None:
    return None if n_classes is None else _check_int_option(n_classes, "n_classes", minimum=2)


def check_api(api) -> str:
    return check_choice(api, "api", APIS)


def check_num_threads(num_threads) -> int | None:
    return None if num_threads is None else _check_int_option(num_threads, "num_threads", minimum=1)


def check_objective_options(n_classes, class_weight, label_smoothing, hessian, num_threads) -> ObjectiveOptions:
    """Check an objective's options once, when it is made, with the kernels' own messages."""
    n_classes = check_n_classes(n_classes)
    if class_weight is not None:
        class_weight = np.array(class_weight)  # a copy: later edits of the caller's array do not leak in
        if n_classes is None and class_weight.ndim != 1:
            raise ValueError(f"class_weight: expected a 1-d array of K weights, got shape {class_weight.shape}")
        _check_real(class_weight, "class_weight", (n_classes if n_classes is not None else class_weight.size,))
    return ObjectiveOptions(n_classes, class_weight, _check_label_smoothing(label_smoothing),
                            check_choice(hessian, "hessian", HESSIAN_FACTORS), check_num_threads(num_threads))


def hessian_factor(hessian: str, n_classes: int) -> float:
    """The scale of h = factor * c s (1 - s) for a choice of :data:`HESSIAN_FACTORS`."""
    if hessian == "xgboost":
        return 2.0
    if hessian == "lightgbm":
        return n_classes / (n_classes - 1.0)
    return 1.0


# ---- what the library hands over -----------------------------------------------------------


def label_values(labels) -> np.ndarray:
    """One label per row, integers or integral floats (the libraries store labels as float32)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"y: expected one label per row (a 1-d array), got shape {labels.shape}")
    if labels.dtype.kind not in "iuf":
        raise TypeError(f"y: expected integer class labels, got dtype {labels.dtype}")
    if labels.dtype.kind == "f":
        integral = np.isfinite(labels) & (labels == np.trunc(labels))
        if not integral.all():
            position = int(np.flatnonzero(~integral)[0])
            raise ValueError(f"y: expected integer class labels, got y[{position}] = {labels[position]}")
    return labels


def check_margins(margins, n_rows: int, n_classes: int | None, name: str) -> np.ndarray:
    """The raw margins as an (N, K) array, one row per label, K >= 2 (K = n_classes when given)."""
    margins = np.asarray(margins)
    computation_dtype(margins.dtype, name)  # a TypeError for margins that are not real numbers
    n_columns = margins.shape[1] if margins.ndim == 2 else 0
    expected_columns = n_columns if n_classes is None else n_classes
    if margins.ndim != 2 or margins.shape[0] != n_rows or n_columns < 2 or n_columns != expected_columns:
        wanted = f"({n_rows}, {n_classes}) for n_classes={n_classes}" if n_classes is not None \
            else f"({n_rows}, K) with K >= 2 classes"
        raise ValueError(f"{name}: expected raw margins of shape {wanted}, one row per label, got shape "
                         f"{margins.shape}")
    return margins


def checked_inputs(margins, labels, n_classes: int | None, margins_name: str) -> tuple:
    """(margins (N, K), int64 class indices in [0, K)) from what the library hands over."""
    labels = label_values(labels)
    margins = check_margins(margins, labels.shape[0], n_classes, margins_name)
    return margins, check_labels(labels, margins.shape[1], None)


def optional_weights(sample_weight) -> np.ndarray | None:
    """The libraries' "no weights" (None, or XGBoost's empty array) as None."""
    if sample_weight is None:
        return None
    sample_weight = np.asarray(sample_weight)
    return None if sample_weight.shape == (0,) else sample_weight


# ---- the arithmetic ------------------------------------------------------------------------


def gradient_and_hessian(margins, labels, sample_weight, options: ObjectiveOptions, margins_name: str) -> tuple:
    """g = c s - a and h = factor * c s (1 - s) per row and class: (N, K) arrays in the margins'
    dtype (float32 and float64 natively, other real dtypes in float64)."""
    margins, classes = checked_inputs(margins, labels, options.n_classes, margins_name)
    gradient, hessian = _sk.gradient_hessian_diagonal(
        margins, classes, **options.kernel_arguments(), sample_weight=optional_weights(sample_weight))
    factor = hessian_factor(options.hessian, margins.shape[1])
    if factor != 1.0:
        hessian *= factor
    return gradient, hessian


def mean_log_loss(margins, labels, sample_weight, n_classes: int | None, num_threads, margins_name: str) -> float:
    """The weighted mean loss of the raw margins, sum_i w_i L_i / sum_i w_i.

    float32 margins are widened to float64 first (exactly): one number per round costs little
    more in float64 and then carries float64's accuracy.
    """
    margins, classes = checked_inputs(margins, labels, n_classes, margins_name)
    loss = _sk.loss(margins.astype(np.float64, copy=False), classes, sample_weight=optional_weights(sample_weight),
                    reduction="mean", num_threads=num_threads)
    return float(loss)


# ---- docstrings ----------------------------------------------------------------------------

_HESSIAN_PARAMETER = """hessian : {"exact", "xgboost", "lightgbm"}, default "exact"
    The factor of h = factor * c s (1 - s).
    "exact" (1): the diagonal of the loss's Hessian c (diag(s) - s s^T).
    "xgboost" (2): XGBoost's ``multi:softprob`` computes h = max(2 p (1 - p) w, 1e-16).
    Twice the diagonal bounds the Hessian from above (v^T H v = c Var_s(v) <=
    2 c sum_k s_k (1 - s_k) v_k^2), so a leaf's diagonal Newton step minimises an upper bound
    of the loss and cannot overshoot; XGBoost's maintainers cite Chen et al., "Gradient
    boosted CRFs" (AISTATS 2015), for it.
    "lightgbm" (K / (K - 1)): LightGBM's ``multiclass`` rescales the redundant form of K
    margins (determined only up to a common constant) to the non-redundant one of K - 1, as
    in Friedman's K-class TreeBoost (Annals of Statistics, 2001, Algorithm 6), whose leaf
    values are -(K - 1)/K sum g / sum s (1 - s).
    With a library's factor the trees track that library's built-in objective from the same
    starting margins; the exact diagonal takes the largest steps.
    Nothing is clamped: XGBoost raises its own h to at least 1e-16, LightGBM does not; here h
    is the computed value, positive unless it underflows (probabilities within about 1e-38 of
    0 or 1 for float32 margins, 1e-308 for float64), and the libraries' regularisation
    (XGBoost's ``reg_lambda``, default 1; LightGBM's ``min_sum_hessian_in_leaf``, default 1e-3)
    keeps the leaf values finite."""

_N_CLASSES_PARAMETER = """n_classes : int >= 2, optional
    K; None takes it from the margins' columns. When given, margins of another width raise."""


def _api_parameter(native: str, sklearn: str) -> str:
    lines = [textwrap.fill(f'"{name}": {text}.', width=92, initial_indent="    ", subsequent_indent="    ")
             for name, text in (("native", native), ("sklearn", sklearn))]
    return "\n".join(['api : {"native", "sklearn"}, default "native"'] + lines)


def objective_docstring(library: str, native: str, sklearn: str) -> str:
    """The docstring of a library's ``multiclass_objective``; native and sklearn say what each
    ``api`` returns."""
    parameters = [_N_CLASSES_PARAMETER, _PARAMETERS["class_weight"], _PARAMETERS["label_smoothing"],
                  _HESSIAN_PARAMETER, _PARAMETERS["num_threads"], _api_parameter(native, sklearn)]
    return f"""The softmax cross-entropy objective for {library}'s custom objectives.

Per row and class the objective returns the gradient g = c s - a of the row's loss with
respect to the raw margins z and the curvature h = factor * c s (1 - s), where s = softmax(z),
a = w cw * ((1 - eps) onehot(y) + eps / K), c = sum(a) and w is the sample weight from the
library: ``softmax_kernels.gradient_hessian_diagonal`` with these options, accurate to a
few ulps also on confident rows.

Parameters
----------
""" + "\n".join(parameters) + """

Returns
-------
callable
    The objective. It returns ``(grad, hess)``, two (N, K) arrays of the margins' dtype.
    Margins that are not (N, K) for the N labels (K = n_classes when given), labels that are
    not integers in [0, K) and weights of the wrong shape raise ``ValueError``/``TypeError``
    naming the argument; the options are checked here, when the objective is made.
"""


def metric_docstring(library: str, built_in: str, native: str, sklearn: str) -> str:
    """The docstring of a library's ``multiclass_metric``."""
    parameters = [_N_CLASSES_PARAMETER, _PARAMETERS["num_threads"], _api_parameter(native, sklearn)]
    return f"""The exact multiclass log loss of the raw margins, as a {library} custom metric.

The sample-weighted mean sum_i w_i L_i / sum_i w_i of L_i = logsumexp(z_i) - z_(i, y_i)
(``softmax_kernels.loss(z, y, sample_weight=w, reduction="mean")`` on the margins widened to
float64). It equals scikit-learn's ``log_loss`` of the probabilities and stays positive
where the probabilities round to 1, where {built_in}
(-log of the rounded probability of the label) is 0. It is reported as
``"{METRIC_NAME}"``; lower is better. The library hands raw margins to custom metrics only
when the objective is custom: pair it with ``multiclass_objective``.

Parameters
----------
""" + "\n".join(parameters) + "\n"
