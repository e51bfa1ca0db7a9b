"""softmax_kernels.lightgbm: the objective and the metric in lightgbm.train and LGBMClassifier
(skipped without LightGBM)."""

import numpy as np
import pytest

lightgbm = pytest.importorskip("lightgbm")

import softmax_kernels.lightgbm as skl  # noqa: E402
from boosting import (CLASS_WEIGHT, FACTORS, N_CLASSES, OPTIONS, classification_data, numpy_log_loss,  # noqa: E402
                      numpy_objective)
from helpers import assert_core_does_not_import, assert_missing_library_names_its_extra, example_module  # noqa: E402

# Deterministic, one thread. A custom objective starts from margins 0; so does the built-in one
# with boost_from_average=False (tests that compare with it set that).
PARAMS = {"num_class": N_CLASSES, "num_threads": 1, "num_leaves": 8, "learning_rate": 0.3, "min_data_in_leaf": 5,
          "deterministic": True, "force_row_wise": True, "seed": 0, "verbose": -1, "metric": "None"}
ROUNDS = 10
# LightGBM hands over float64 margins and stores g and h as float32: objectives that agree to a
# few float64 ulps round to the same float32 values except at rounding boundaries, where a leaf
# sum moves by a float32 ulp (measured: margins bitwise equal without weights, within 1e-8 with).
MARGIN_ATOL = 1e-6


def dataset(X, y, weight=None):
    """A constructed Dataset, whose get_label() and get_weight() answer as in training."""
    return lightgbm.Dataset(X, label=y, weight=weight, params={"verbose": -1}).construct()


def train(params, X, y, weight=None, **kwargs):
    return lightgbm.train(dict(PARAMS, **params), lightgbm.Dataset(X, label=y, weight=weight), ROUNDS, **kwargs)


@pytest.fixture(scope="module")
def data():
    return classification_data()


@pytest.mark.parametrize("hessian", FACTORS)
@pytest.mark.parametrize("case", OPTIONS)
def test_objective_returns_the_numpy_gradient_and_scaled_hessian_diagonal(data, rng, case, hessian):
    """Options and sample weights (from the Dataset) reach g and h; LightGBM's column-major float64
    margins give float64 results."""
    X, y, weight = data
    options, weighted = OPTIONS[case]
    preds = np.asfortranarray(rng.standard_normal((len(y), N_CLASSES)) * 3)
    train_data = dataset(X, y, weight if weighted else None)
    grad, hess = skl.multiclass_objective(hessian=hessian, **options)(preds, train_data)
    expected_grad, expected_hess = numpy_objective(preds, y, train_data.get_weight(), factor=FACTORS[hessian],
                                                   **options)
    assert grad.dtype == hess.dtype == np.float64 and grad.shape == hess.shape == preds.shape
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(hess, expected_hess, rtol=1e-14, atol=1e-15)


def test_sklearn_objective_takes_labels_and_weights_as_arguments(data, rng):
    X, y, weight = data
    y_pred = rng.standard_normal((len(y), N_CLASSES))
    objective = skl.multiclass_objective(class_weight=CLASS_WEIGHT, label_smoothing=0.1, api="sklearn")
    for given_weight in (weight, None):
        grad, hess = objective(y.astype(np.float32), y_pred, given_weight)
        expected = numpy_objective(y_pred, y, given_weight, CLASS_WEIGHT, 0.1)
        np.testing.assert_allclose(grad, expected[0], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(hess, expected[1], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("hessian", FACTORS)
@pytest.mark.parametrize("case", OPTIONS)
def test_training_reproduces_a_numpy_objective(data, case, hessian):
    X, y, weight = data
    options, weighted = OPTIONS[case]
    weight = weight if weighted else None

    def numpy_version(preds, train_data):
        return numpy_objective(preds, train_data.get_label(), train_data.get_weight(), factor=FACTORS[hessian],
                               **options)

    ours = train({"objective": skl.multiclass_objective(hessian=hessian, **options)}, X, y, weight)
    reference = train({"objective": numpy_version}, X, y, weight)
    np.testing.assert_allclose(ours.predict(X, raw_score=True), reference.predict(X, raw_score=True), rtol=0,
                               atol=MARGIN_ATOL)


def test_lightgbm_factor_tracks_multiclass(data):
    """With h = K/(K - 1) s (1 - s) the log loss after ten rounds is the built-in multiclass's to a
    relative 1e-9 (measured: bitwise equal margins); the exact diagonal's steps are larger and its
    loss differs by far more."""
    X, y, _ = data
    def final_loss(params):
        return numpy_log_loss(train(params, X, y).predict(X, raw_score=True), y)

    built_in_loss = final_loss({"objective": "multiclass", "boost_from_average": False})
    losses = {hessian: final_loss({"objective": skl.multiclass_objective(hessian=hessian)})
              for hessian in ("lightgbm", "exact")}
    assert abs(losses["lightgbm"] - built_in_loss) <= 1e-9 * built_in_loss
    assert abs(losses["exact"] - built_in_loss) >= 1e-2 * built_in_loss


def test_classifier_matches_the_native_api_and_reports_the_metric(data):
    """LGBMClassifier with the sklearn forms (sample_weight through fit) builds the same trees as
    lightgbm.train with the native forms, and records the exact weighted log loss each round."""
    X, y, weight = data
    classifier = lightgbm.LGBMClassifier(
        n_estimators=ROUNDS, num_leaves=8, learning_rate=0.3, min_child_samples=5, n_jobs=1, random_state=0,
        deterministic=True, force_row_wise=True, verbose=-1,
        objective=skl.multiclass_objective(hessian="lightgbm", api="sklearn"),
    )
    classifier.fit(X, y, sample_weight=weight, eval_X=(X,), eval_y=(y,), eval_sample_weight=[weight],
                   eval_metric=skl.multiclass_metric(api="sklearn"))
    history = {}
    train_set = lightgbm.Dataset(X, label=y, weight=weight)
    booster = train({"objective": skl.multiclass_objective(hessian="lightgbm")}, X, y, weight,
                    valid_sets=[train_set], valid_names=["train"], feval=skl.multiclass_metric(),
                    callbacks=[lightgbm.record_evaluation(history)])
    classifier_margins = classifier.predict(X, raw_score=True)
    np.testing.assert_allclose(classifier_margins, booster.predict(X, raw_score=True), rtol=0, atol=MARGIN_ATOL)
    final_loss = numpy_log_loss(classifier_margins, y, weight.astype(np.float32))  # LightGBM keeps float32 weights
    assert classifier.evals_result_["valid_0"]["exact_mlogloss"][-1] == pytest.approx(final_loss, rel=1e-9)
    assert history["train"]["exact_mlogloss"][-1] == pytest.approx(final_loss, rel=1e-9)


def test_metric_equals_sklearn_log_loss(data, rng):
    from scipy.special import softmax
    from sklearn.metrics import log_loss

    X, y, weight = data
    weight = weight.astype(np.float32)  # as the Dataset stores it
    preds = rng.standard_normal((len(y), N_CLASSES))
    expected = log_loss(y, softmax(preds, axis=1), sample_weight=weight)
    reported = ("exact_mlogloss", pytest.approx(expected, rel=1e-12), False)  # name, value, higher is better
    assert skl.multiclass_metric()(preds, dataset(X, y, weight)) == reported
    assert skl.multiclass_metric(api="sklearn")(y, preds, weight) == reported


def test_metric_stays_positive_where_probabilities_round_to_one():
    """Margins (40, 0, 0, 0): p_y rounds to 1 in float64, the loss is log(1 + 3 e^-40)."""
    preds = np.zeros((4, N_CLASSES))
    preds[np.arange(4), np.arange(4)] = 40.0
    _, value, _ = skl.multiclass_metric()(preds, dataset(np.arange(4.0)[:, None], np.arange(4)))
    assert value > 0
    assert value == pytest.approx(np.log1p(3 * np.exp(-40.0)), rel=1e-14)


BAD_INPUTS = {
    "margins of another width than n_classes": (
        dict(n_classes=3), (20, 4), np.arange(20) % 3, ValueError, r"preds: expected raw margins of shape \(20, 3\)"),
    "flattened margins": ({}, (80,), np.arange(20) % 4, ValueError, r"preds: .*shape \(20, K\) with K >= 2"),
    "one margin per row": ({}, (20,), np.zeros(20), ValueError, r"preds: .*K >= 2"),
    "fewer margin rows than labels": ({}, (19, 4), np.arange(20) % 4, ValueError, r"preds: .*\(20, K\)"),
    "a label out of range": ({}, (20, 4), np.r_[np.arange(19) % 4, 4], ValueError,
                             r"y: expected labels in \[0, 4\), got y\[19\] = 4"),
    "a fractional label": ({}, (20, 4), np.r_[0.5, np.arange(19) % 4], ValueError,
                           r"y: expected integer class labels, got y\[0\] = 0.5"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_margins_and_labels_raise_naming_the_argument(case):
    options, shape, labels, error, message = BAD_INPUTS[case]
    preds = np.zeros(shape)
    data = dataset(np.arange(float(len(labels)))[:, None], labels)
    with pytest.raises(error, match=message):
        skl.multiclass_objective(**options)(preds, data)
    with pytest.raises(error, match=message):
        skl.multiclass_metric(**options)(preds, data)


def test_sklearn_forms_check_the_weights():
    y_pred, y_true = np.zeros((20, N_CLASSES)), np.arange(20) % N_CLASSES
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(20,\), got \(19,\)"):
        skl.multiclass_objective(api="sklearn")(y_true, y_pred, np.ones(19))
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(20,\), got \(19,\)"):
        skl.multiclass_metric(api="sklearn")(y_true, y_pred, np.ones(19))


@pytest.mark.parametrize("arguments, error, message", [
    (dict(hessian="newton"), ValueError, r"hessian: expected one of 'exact', 'xgboost', 'lightgbm', got 'newton'"),
    (dict(label_smoothing=-0.1), ValueError, r"label_smoothing: expected a float in \[0, 1\], got -0.1"),
    (dict(n_classes=2.0), TypeError, r"n_classes: expected an int, got float 2.0"),
    (dict(n_classes=4, class_weight=np.ones((4, 1))), ValueError, r"class_weight: expected shape \(4,\), got \(4, 1\)"),
    (dict(api="pandas"), ValueError, r"api: expected one of 'native', 'sklearn', got 'pandas'"),
])
def test_bad_options_raise_when_the_objective_is_made(arguments, error, message):
    with pytest.raises(error, match=message):
        skl.multiclass_objective(**arguments)


def test_class_weight_of_the_wrong_length_raises_at_the_first_round(data):
    X, y, _ = data
    with pytest.raises(ValueError, match=r"class_weight: expected shape \(4,\), got \(3,\)"):
        train({"objective": skl.multiclass_objective(class_weight=[1.0, 2.0, 3.0])}, X, y)


def test_bad_labels_stop_training_with_our_error(data):
    X, y, _ = data
    labels = y.astype(np.float64)
    labels[7] = 2.5
    with pytest.raises(ValueError, match=r"y: expected integer class labels, got y\[7\] = 2.5"):
        train({"objective": skl.multiclass_objective()}, X, labels)


def test_the_core_does_not_import_lightgbm():
    assert_core_does_not_import("lightgbm")


def test_missing_lightgbm_raises_an_import_error_naming_the_extra(monkeypatch):
    assert_missing_library_names_its_extra(monkeypatch, "lightgbm")


def test_example_prints_both_log_losses(capsys):
    with example_module("lightgbm_objective") as example:
        results = example.main(["--rows", "400", "--classes", "3", "--rounds", "5", "--threads", "1"])
    out = capsys.readouterr().out
    assert "multiclass" in out and "softmax_kernels" in out
    assert results["softmax_kernels, hessian='lightgbm'"] == pytest.approx(results["multiclass"], rel=1e-9)
