"""softmax_kernels.xgboost: the objective and the metric in xgboost.train and XGBClassifier
(skipped without XGBoost)."""

import numpy as np
import pytest

xgboost = pytest.importorskip("xgboost")

import softmax_kernels.xgboost as skx  # noqa: E402
from boosting import (CLASS_WEIGHT, FACTORS, N_CLASSES, OPTIONS, classification_data, numpy_log_loss,  # noqa: E402
                      numpy_objective)
from helpers import assert_core_does_not_import, assert_missing_library_names_its_extra, example_module  # noqa: E402

# Deterministic, one thread; base_score fixed so that every model starts from margins 0
# (the built-in objective would otherwise estimate intercepts from the labels).
PARAMS = {"num_class": N_CLASSES, "nthread": 1, "max_depth": 3, "eta": 0.3, "tree_method": "hist",
          "base_score": 0.0, "disable_default_eval_metric": 1, "seed": 0}
ROUNDS = 10
# Margins of two models trained on objectives that agree to float32 rounding: XGBoost keeps g and h
# in float32, so they differ in the last bit here and there, and ten rounds of leaf sums carry
# that to a few float32 ulps of margins of size about 3 (measured: at most 5e-7).
MARGIN_ATOL = 4e-6


def dmatrix(X, y, weight=None):
    return xgboost.DMatrix(X, label=y, weight=weight, nthread=1)


def margins(booster, data):
    return booster.predict(data, output_margin=True)


@pytest.fixture(scope="module")
def data():
    return classification_data()


@pytest.mark.parametrize("hessian", FACTORS)
@pytest.mark.parametrize("case", OPTIONS)
def test_objective_returns_the_numpy_gradient_and_scaled_hessian_diagonal(data, rng, case, hessian):
    """Options and sample weights (from the DMatrix) reach g and h; float32 margins give float32 results."""
    X, y, weight = data
    options, weighted = OPTIONS[case]
    predt = rng.standard_normal((len(y), N_CLASSES)).astype(np.float32) * 3
    weight = weight if weighted else None
    grad, hess = skx.multiclass_objective(hessian=hessian, **options)(predt, dmatrix(X, y, weight))
    expected_grad, expected_hess = numpy_objective(predt, y, weight, factor=FACTORS[hessian], **options)
    assert grad.dtype == hess.dtype == np.float32 and grad.shape == hess.shape == predt.shape
    # 4e-7 is about 7 float32 units of roundoff: the float32 kernels' few ulps, the DMatrix's float32
    # weights, and (label smoothing) the documented bound of a nearly cancelling c s_k - a_k.
    scale = np.abs(expected_grad).max()
    np.testing.assert_allclose(grad, expected_grad, rtol=4e-7, atol=4e-7 * scale)
    np.testing.assert_allclose(hess, expected_hess, rtol=4e-7, atol=4e-7 * scale)


def test_sklearn_objective_takes_labels_and_weights_as_arguments(data, rng):
    X, y, weight = data
    predt = rng.standard_normal((len(y), N_CLASSES))
    objective = skx.multiclass_objective(class_weight=CLASS_WEIGHT, label_smoothing=0.1, api="sklearn")
    grad, hess = objective(y.astype(np.float32), predt, sample_weight=weight)
    expected = numpy_objective(predt, y, weight, CLASS_WEIGHT, 0.1)
    np.testing.assert_allclose(grad, expected[0], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(hess, expected[1], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("hessian", FACTORS)
@pytest.mark.parametrize("case", OPTIONS)
def test_training_reproduces_a_numpy_objective(data, case, hessian):
    X, y, weight = data
    options, weighted = OPTIONS[case]
    train = dmatrix(X, y, weight if weighted else None)

    def numpy_version(predt, dtrain):
        return numpy_objective(predt, dtrain.get_label(), dtrain.get_weight(), factor=FACTORS[hessian], **options)

    ours = xgboost.train(PARAMS, train, ROUNDS, obj=skx.multiclass_objective(hessian=hessian, **options))
    reference = xgboost.train(PARAMS, train, ROUNDS, obj=numpy_version)
    np.testing.assert_allclose(margins(ours, train), margins(reference, train), rtol=0, atol=MARGIN_ATOL)


def test_xgboost_factor_tracks_multi_softprob(data):
    """With h = 2 s (1 - s) the log loss after ten rounds is multi:softprob's to a relative 1e-6
    (measured: 4e-9; the margins agree to float32 rounding); the exact diagonal's steps are larger
    and its loss differs by far more."""
    X, y, _ = data
    train = dmatrix(X, y)
    def final_loss(params, objective=None):
        return numpy_log_loss(margins(xgboost.train(params, train, ROUNDS, obj=objective), train), y)

    built_in = final_loss({**PARAMS, "objective": "multi:softprob"})
    losses = {hessian: final_loss(PARAMS, skx.multiclass_objective(hessian=hessian))
              for hessian in ("xgboost", "exact")}
    assert abs(losses["xgboost"] - built_in) <= 1e-6 * built_in
    assert abs(losses["exact"] - built_in) >= 1e-2 * built_in


def test_classifier_matches_the_native_api_and_reports_the_metric(data):
    """XGBClassifier with the sklearn forms (sample_weight through fit) builds the same trees as
    xgboost.train with the native forms, and records the exact weighted log loss each round."""
    X, y, weight = data
    classifier = xgboost.XGBClassifier(
        n_estimators=ROUNDS, max_depth=3, learning_rate=0.3, tree_method="hist", base_score=0.0, n_jobs=1,
        random_state=0, objective=skx.multiclass_objective(hessian="xgboost", api="sklearn"),
        eval_metric=skx.multiclass_metric(api="sklearn"),
    )
    classifier.fit(X, y, sample_weight=weight, eval_set=[(X, y)], sample_weight_eval_set=[weight], verbose=False)
    train = dmatrix(X, y, weight)
    history = {}
    booster = xgboost.train(PARAMS, train, ROUNDS, obj=skx.multiclass_objective(hessian="xgboost"),
                            custom_metric=skx.multiclass_metric(), evals=[(train, "train")], evals_result=history,
                            verbose_eval=False)
    classifier_margins = classifier.predict(X, output_margin=True)
    np.testing.assert_allclose(classifier_margins, margins(booster, train), rtol=0, atol=MARGIN_ATOL)
    # XGBoost keeps sample weights in float32 and records metric values to 6 decimals.
    final_loss = numpy_log_loss(classifier_margins, y, weight.astype(np.float32))
    assert classifier.evals_result()["validation_0"]["exact_mlogloss"][-1] == pytest.approx(final_loss, abs=5e-7)
    assert history["train"]["exact_mlogloss"][-1] == pytest.approx(final_loss, abs=5e-7)


def test_metric_equals_sklearn_log_loss(data, rng):
    from sklearn.metrics import log_loss
    from scipy.special import softmax

    X, y, weight = data
    weight = weight.astype(np.float32)  # as the DMatrix stores it
    predt = rng.standard_normal((len(y), N_CLASSES)).astype(np.float32)
    expected = log_loss(y, softmax(predt.astype(np.float64), axis=1), sample_weight=weight)
    name, value = skx.multiclass_metric()(predt, dmatrix(X, y, weight))
    assert name == "exact_mlogloss" and value == pytest.approx(expected, rel=1e-12)
    assert skx.multiclass_metric(api="sklearn")(y, predt, sample_weight=weight) == pytest.approx(expected, rel=1e-12)


def test_metric_stays_positive_where_probabilities_round_to_one():
    """Margins (40, 0, 0, 0): p_y = 1 in float32 and float64, the loss is log(1 + 3 e^-40)."""
    predt = np.zeros((4, N_CLASSES), dtype=np.float32)
    predt[np.arange(4), np.arange(4)] = 40.0
    _, value = skx.multiclass_metric()(predt, dmatrix(np.zeros((4, 1)), np.arange(4)))
    assert value > 0
    assert value == pytest.approx(np.log1p(3 * np.exp(-40.0)), rel=1e-14)


BAD_INPUTS = {
    "margins of another width than n_classes": (
        dict(n_classes=3), (20, 4), np.arange(20) % 3, ValueError, r"predt: expected raw margins of shape \(20, 3\)"),
    "flattened margins": ({}, (80,), np.arange(20) % 4, ValueError, r"predt: .*shape \(20, K\) with K >= 2"),
    "one margin per row": ({}, (20, 1), np.zeros(20), ValueError, r"predt: .*K >= 2"),
    "fewer margin rows than labels": ({}, (19, 4), np.arange(20) % 4, ValueError, r"predt: .*\(20, K\)"),
    "a label out of range": ({}, (20, 4), np.r_[np.arange(19) % 4, 4], ValueError,
                             r"y: expected labels in \[0, 4\), got y\[19\] = 4"),
    "a fractional label": ({}, (20, 4), np.r_[0.5, np.arange(19) % 4], ValueError,
                           r"y: expected integer class labels, got y\[0\] = 0.5"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_margins_and_labels_raise_naming_the_argument(case):
    options, shape, labels, error, message = BAD_INPUTS[case]
    predt = np.zeros(shape, dtype=np.float32)
    dtrain = dmatrix(np.zeros((len(labels), 1)), labels)
    with pytest.raises(error, match=message):
        skx.multiclass_objective(**options)(predt, dtrain)
    with pytest.raises(error, match=message):
        skx.multiclass_metric(**options)(predt, dtrain)


def test_sklearn_forms_check_the_weights():
    y_pred, y_true = np.zeros((20, N_CLASSES)), np.arange(20) % N_CLASSES
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(20,\), got \(19,\)"):
        skx.multiclass_objective(api="sklearn")(y_true, y_pred, sample_weight=np.ones(19))
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(20,\), got \(19,\)"):
        skx.multiclass_metric(api="sklearn")(y_true, y_pred, sample_weight=np.ones(19))


@pytest.mark.parametrize("arguments, error, message", [
    (dict(hessian="newton"), ValueError, r"hessian: expected one of 'exact', 'xgboost', 'lightgbm', got 'newton'"),
    (dict(label_smoothing=1.5), ValueError, r"label_smoothing: expected a float in \[0, 1\], got 1.5"),
    (dict(n_classes=1), ValueError, r"n_classes: expected an int >= 2, got 1"),
    (dict(n_classes=3, class_weight=[1.0, 2.0]), ValueError, r"class_weight: expected shape \(3,\), got \(2,\)"),
    (dict(class_weight=[[1.0, 2.0], [3.0, 4.0]]), ValueError,
     r"class_weight: expected a 1-d array of K weights, got shape \(2, 2\)"),
    (dict(num_threads=0), ValueError, r"num_threads: expected an int >= 1, got 0"),
    (dict(api="pandas"), ValueError, r"api: expected one of 'native', 'sklearn', got 'pandas'"),
])
def test_bad_options_raise_when_the_objective_is_made(arguments, error, message):
    with pytest.raises(error, match=message):
        skx.multiclass_objective(**arguments)


def test_bad_labels_stop_training_with_our_error(data):
    X, y, _ = data
    labels = y.astype(np.float64)
    labels[7] = 2.5
    with pytest.raises(ValueError, match=r"y: expected integer class labels, got y\[7\] = 2.5"):
        xgboost.train(PARAMS, dmatrix(X, labels), 1, obj=skx.multiclass_objective())


def test_the_core_does_not_import_xgboost():
    assert_core_does_not_import("xgboost")


def test_missing_xgboost_raises_an_import_error_naming_the_extra(monkeypatch):
    assert_missing_library_names_its_extra(monkeypatch, "xgboost")


def test_example_prints_both_log_losses(capsys):
    with example_module("xgboost_objective") as example:
        results = example.main(["--rows", "400", "--classes", "3", "--rounds", "5", "--threads", "1"])
    out = capsys.readouterr().out
    assert "multi:softprob" in out and "softmax_kernels" in out
    assert results["softmax_kernels, hessian='xgboost'"] == pytest.approx(results["multi:softprob"], rel=1e-5)
