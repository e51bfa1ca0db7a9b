"""Not a test module: what the XGBoost and LightGBM tests share. A small classification
problem, and the objective's formulas written out in plain NumPy (float64) as the oracle."""

import numpy as np

N_ROWS, N_FEATURES, N_CLASSES = 300, 5, 4
CLASS_WEIGHT = np.array([1.0, 2.0, 0.5, 1.5])
# Each hessian= choice and the factor of c s (1 - s) it stands for (written out: the oracle's).
FACTORS = {"exact": 1.0, "xgboost": 2.0, "lightgbm": N_CLASSES / (N_CLASSES - 1.0)}
# Option sets of the objective, and whether the test passes sample weights with them.
OPTIONS = {
    "no options": ({}, False),
    "weights, class weights, label smoothing": ({"class_weight": CLASS_WEIGHT, "label_smoothing": 0.1}, True),
}


def classification_data(seed=0, n_rows=N_ROWS, n_classes=N_CLASSES):
    """Features X (N, 5) and integer labels y that depend on them (so that trees find splits),
    and positive sample weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, N_FEATURES))
    scores = 1.5 * X @ rng.standard_normal((N_FEATURES, n_classes))
    y = np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)  # a draw from softmax(scores)
    weight = rng.uniform(0.5, 2.0, n_rows)
    return X, y, weight


def numpy_softmax(margins):
    z = np.asarray(margins, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def targets(labels, n_classes, sample_weight=None, class_weight=None, label_smoothing=0.0):
    """a = w cw * ((1 - eps) onehot(y) + eps / K), per row."""
    a = (1.0 - label_smoothing) * np.eye(n_classes)[np.asarray(labels).astype(int)] + label_smoothing / n_classes
    if class_weight is not None:
        a = a * np.asarray(class_weight, dtype=np.float64)
    if sample_weight is not None and np.size(sample_weight):
        a = a * np.asarray(sample_weight, dtype=np.float64)[:, None]
    return a


def numpy_objective(margins, labels, sample_weight=None, class_weight=None, label_smoothing=0.0, factor=1.0):
    """(g, h) = (c s - a, factor c s (1 - s)) in float64."""
    s = numpy_softmax(margins)
    a = targets(labels, s.shape[1], sample_weight, class_weight, label_smoothing)
    c = a.sum(axis=1, keepdims=True)
    return c * s - a, factor * c * s * (1.0 - s)


def numpy_log_loss(margins, labels, sample_weight=None):
    """The weighted mean of logsumexp(z) - z_y, in float64."""
    z = np.asarray(margins, dtype=np.float64)
    m = z.max(axis=1)
    losses = m + np.log(np.exp(z - m[:, None]).sum(axis=1)) - z[np.arange(len(z)), np.asarray(labels).astype(int)]
    return np.average(losses, weights=sample_weight)
