"""A multiclass softmax objective and an exact log-loss metric for XGBoost, from the kernels.

``pip install "softmax_kernels[xgboost]"`` (XGBoost >= 2.0; ``xgboost-cpu`` is the same
package without the GPU code). ::

    import xgboost
    import softmax_kernels.xgboost as skx

    params = {"num_class": K, "base_score": 0.0, "disable_default_eval_metric": True}
    booster = xgboost.train(params, dtrain, 100, evals=[(dvalid, "valid")],
                            obj=skx.multiclass_objective(), custom_metric=skx.multiclass_metric())
    margins = booster.predict(dvalid, output_margin=True)  # softmax_kernels.softmax: probabilities

    clf = xgboost.XGBClassifier(objective=skx.multiclass_objective(api="sklearn"),
                                eval_metric=skx.multiclass_metric(api="sklearn"))

What XGBoost hands over: a custom objective gets the raw margins ``predt`` of shape (N, K)
(float32) and the training ``DMatrix``, whose ``get_label()`` holds the class indices as
floats and ``get_weight()`` the sample weights (empty when there are none); the sklearn
wrapper calls ``objective(y_true, y_pred, sample_weight=...)`` instead. It takes the gradient
and the Hessian diagonal back as (N, K) arrays. Custom metrics get the raw margins whenever
the objective is custom. ``XGBClassifier`` keeps one margin for two classes, so there the
objective needs K >= 3; ``xgboost.train`` with ``num_class=2`` gives two columns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

try:
    import xgboost as _xgboost  # noqa: F401  (the extra's dependency, checked at import)
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'softmax_kernels.xgboost needs XGBoost: pip install "softmax_kernels[xgboost]" (or "xgboost-cpu")'
    ) from _error

from . import _boosting

__all__ = ["multiclass_objective", "multiclass_metric"]


def multiclass_objective(n_classes: int | None = None, *, class_weight: ArrayLike | None = None,
                         label_smoothing: float = 0.0, hessian: str = "exact", num_threads: int | None = None,
                         api: str = "native") -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    options = _boosting.check_objective_options(n_classes, class_weight, label_smoothing, hessian, num_threads)
    if _boosting.check_api(api) == "sklearn":
        def sklearn_objective(y_true, y_pred, sample_weight=None):
            return _boosting.gradient_and_hessian(y_pred, y_true, sample_weight, options, "y_pred")

        return sklearn_objective

    def objective(predt, dtrain):
        return _boosting.gradient_and_hessian(predt, dtrain.get_label(), dtrain.get_weight(), options, "predt")

    return objective


def multiclass_metric(n_classes: int | None = None, *, num_threads: int | None = None,
                      api: str = "native") -> Callable[..., tuple | float]:
    n_classes = _boosting.check_n_classes(n_classes)
    num_threads = _boosting.check_num_threads(num_threads)
    if _boosting.check_api(api) == "sklearn":
        def sklearn_metric(y_true, y_score, sample_weight=None):
            return _boosting.mean_log_loss(y_score, y_true, sample_weight, n_classes, num_threads, "y_score")

        sklearn_metric.__name__ = _boosting.METRIC_NAME  # the sklearn wrapper reports a metric by its name
        return sklearn_metric

    def metric(predt, dmatrix):
        loss = _boosting.mean_log_loss(predt, dmatrix.get_label(), dmatrix.get_weight(), n_classes, num_threads,
                                       "predt")
        return _boosting.METRIC_NAME, loss

    return metric


multiclass_objective.__doc__ = _boosting.objective_docstring(
    "XGBoost",
    native="``objective(predt, dtrain)`` for ``xgboost.train(obj=...)``; labels and weights from the DMatrix",
    sklearn="``objective(y_true, y_pred, sample_weight=None)`` for ``XGBClassifier(objective=...)``",
)
multiclass_metric.__doc__ = _boosting.metric_docstring(
    "XGBoost", "XGBoost's ``mlogloss``",
    native="``metric(predt, dmatrix) -> (name, value)`` for ``xgboost.train(custom_metric=...)``",
    sklearn="``metric(y_true, y_score, sample_weight=None) -> value``, named by its ``__name__``, for "
            "``XGBClassifier(eval_metric=...)``",
)
