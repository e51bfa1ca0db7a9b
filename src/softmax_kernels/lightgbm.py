"""A multiclass softmax objective and an exact log-loss metric for LightGBM, from the kernels.

``pip install "softmax_kernels[lightgbm]"`` (LightGBM >= 4.0). ::

    import lightgbm
    import softmax_kernels.lightgbm as skl

    params = {"num_class": K, "objective": skl.multiclass_objective(), "metric": "None"}
    booster = lightgbm.train(params, train_set, 100, valid_sets=[valid_set],
                             feval=skl.multiclass_metric())
    margins = booster.predict(X, raw_score=True)  # softmax_kernels.softmax: probabilities

    clf = lightgbm.LGBMClassifier(objective=skl.multiclass_objective(api="sklearn"))
    clf.fit(X, y, eval_X=(X_valid,), eval_y=(y_valid,),  # eval_set=[(X_valid, y_valid)] before 4.7
            eval_metric=skl.multiclass_metric(api="sklearn"))

What LightGBM hands over: a custom objective gets the raw margins ``preds`` of shape (N, K)
(float64, a column-major view) and the training ``Dataset``, whose ``get_label()`` holds the
class indices as floats and ``get_weight()`` the sample weights (None when there are none,
or when all are 1); the sklearn wrapper calls ``objective(y_true, y_pred, weight)`` instead.
It takes the gradient and the Hessian diagonal back as (N, K) arrays (and stores them as
float32). Custom metrics get the raw margins whenever the objective is custom. A custom
objective starts from margins 0 (the built-in ``multiclass`` starts from the log class
frequencies unless ``boost_from_average=False``), and ``LGBMClassifier.predict_proba`` then
returns raw margins. ``LGBMClassifier`` keeps one margin for two classes, so there the
objective needs K >= 3; ``lightgbm.train`` with ``num_class=2`` gives two columns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

try:
    import lightgbm as _lightgbm  # noqa: F401  (the extra's dependency, checked at import)
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError('softmax_kernels.lightgbm needs LightGBM: pip install "softmax_kernels[lightgbm]"') from _error

from . import _boosting

__all__ = ["multiclass_objective", "multiclass_metric"]

# LightGBM's third element of a metric's result: whether higher is better (for a loss, no).
_HIGHER_IS_BETTER = False


def multiclass_objective(n_classes: int | None = None, *, class_weight: ArrayLike | None = None,
                         label_smoothing: float = 0.0, hessian: str = "exact", num_threads: int | None = None,
                         api: str = "native") -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    options = _boosting.check_objective_options(n_classes, class_weight, label_smoothing, hessian, num_threads)
    if _boosting.check_api(api) == "sklearn":
        def sklearn_objective(y_true, y_pred, weight):
            return _boosting.gradient_and_hessian(y_pred, y_true, weight, options, "y_pred")

        return sklearn_objective

    def objective(preds, train_data):
        return _boosting.gradient_and_hessian(preds, train_data.get_label(), train_data.get_weight(), options,
                                              "preds")

    return objective


def multiclass_metric(n_classes: int | None = None, *, num_threads: int | None = None,
                      api: str = "native") -> Callable[..., tuple]:
    n_classes = _boosting.check_n_classes(n_classes)
    num_threads = _boosting.check_num_threads(num_threads)
    if _boosting.check_api(api) == "sklearn":
        def sklearn_metric(y_true, y_pred, weight):
            loss = _boosting.mean_log_loss(y_pred, y_true, weight, n_classes, num_threads, "y_pred")
            return _boosting.METRIC_NAME, loss, _HIGHER_IS_BETTER

        return sklearn_metric

    def metric(preds, eval_data):
        loss = _boosting.mean_log_loss(preds, eval_data.get_label(), eval_data.get_weight(), n_classes, num_threads,
                                       "preds")
        return _boosting.METRIC_NAME, loss, _HIGHER_IS_BETTER

    return metric


multiclass_objective.__doc__ = _boosting.objective_docstring(
    "LightGBM",
    native="``objective(preds, train_data)`` for ``lightgbm.train(params={\"objective\": ...})``; labels and "
           "weights from the Dataset",
    sklearn="``objective(y_true, y_pred, weight)`` for ``LGBMClassifier(objective=...)``",
)
multiclass_metric.__doc__ = _boosting.metric_docstring(
    "LightGBM", "LightGBM's ``multi_logloss``",
    native="``metric(preds, eval_data) -> (name, value, False)`` for ``lightgbm.train(feval=...)``",
    sklearn="``metric(y_true, y_pred, weight) -> (name, value, False)`` for "
            "``LGBMClassifier.fit(eval_metric=...)``",
)
