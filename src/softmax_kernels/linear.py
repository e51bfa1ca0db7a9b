"""The linear softmax model z_i = W x_i + b: loss, gradient, parameter Hessian and Hessian-vector
products of the objective

    f(coef) = sum_i w_i L_i / sum_i w_i + (l2 / 2) ||W||_F^2,    intercept b not penalised,

in scikit-learn's conventions (``LinearModelLoss`` with ``HalfMultinomialLoss``): ``coef`` of
shape (K, d + fit_intercept), the intercepts in its last column, and parameters ordered as
``coef.ravel(order="F")`` (the K classes of one feature contiguous, the intercepts last).
L_i is the per-row loss of the top-level functions, with ``class_weight`` and
``label_smoothing`` as there (to match scikit-learn's ``class_weight``, pass
``sample_weight = w * class_weight[y]`` instead).

How it computes: rows are taken in blocks of ``BLOCK_ROWS``. For each block, the logits come
from one BLAS product, the per-row loss, gradient and packed Hessian (or Hessian-vector
product) from the kernels (accurate per-row Hessians, never diag(s) - s s^T), and the block's
contribution from BLAS products:

* gradient: G^T X~ (K x (d+1)), with X~ = [X, 1];
* Hessian: the parameter Hessian is sum_i H_i (x) x~_i x~_i^T. Its element for classes (k, l)
  and features (a, b) is sum_i h_i,kl x~_ia x~_ib, so with the per-row products of feature
  pairs a <= b as columns (Y, (d+1)(d+2)/2 of them) all the blocks of the class pairs k <= l
  come from one product H^T Y: both symmetries are used, about K(K+1)/2 (d+1)(d+2)/2 N
  multiply-adds in all, and no (N, K, K) or per-pair temporaries;
* Hessian-vector product: H vec(V) = sum_i x~_i^T (H_i (V x~_i)), matrix-free: the block's
  logits and V x~_i from one product, the kernels' Hv, and one product back.

Accuracy: each element of the assembled Hessian is a sum of products h_i,kl x~_ia x~_ib of an
accurate h (the contract's 4 u) and features, summed by BLAS within a block and added block by
block: |error| <= (BLOCK_ROWS + N / BLOCK_ROWS + 4) u sum_i |w_i h_i,kl x~_ia x~_ib|, the
classical bound of a BLAS product (u of X's dtype: float32 X computes in float32, float64 in
float64). Unlike h = p (1 - p) from rounded probabilities, h keeps its digits on confident
rows.

Extra memory: the output, the (K(K+1)/2, (d+1)(d+2)/2) products of the Hessian, and one block
of rows. Sparse X (scipy.sparse) is made dense one block of rows at a time. ``num_threads``
limits the kernels' OpenMP threads and, where threadpoolctl is installed, BLAS's threads.
"""

from __future__ import annotations

import numbers

import numpy as np

import softmax_kernels as _sk

from . import _threads
from ._layout import LAYOUTS, packed_rows_cols, packed_size, packed_upper_positions
from ._operations import OPERATIONS
from ._validate import check_choice, check_labels, check_options, computation_dtype

__all__ = ["loss_gradient", "hessian", "loss_gradient_hessian", "hessian_vector_product"]

# Rows per block: large enough for the BLAS products to run near their peak rate, small enough
# that a block's features, pair products and per-row Hessians stay in the caches.
BLOCK_ROWS = 512
# Values of X read twice per block (the forward and back products of the gradient and of Hv):
# about 1 MiB of doubles, so that the second read comes from L2.
L2_VALUES = 1 << 17
# Feature-pair products formed at a time (a block of rows by PAIR_CHUNK_VALUES / rows columns of
# Y): about 1 MiB, so that they are written and read back in L2 rather than memory.
PAIR_CHUNK_VALUES = 1 << 17


class _Problem:
    """The checked inputs of one call: X (dense or CSR), coef, targets, weights and options."""

    def __init__(self, coef, X, y, *, fit_intercept, sample_weight, class_weight, label_smoothing, l2,
                 num_threads, y_required):
        self.sparse = _is_sparse(X)
        if not self.sparse:
            X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D array (n_samples, n_features), got shape {X.shape}")
        self.dtype = computation_dtype(np.dtype(X.dtype), "X")
        self.X = X.tocsr() if self.sparse else X
        self.n_rows, self.n_features = X.shape
        if not isinstance(fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept: expected a bool, got {type(fit_intercept).__name__} {fit_intercept!r}")
        self.fit_intercept = bool(fit_intercept)
        self.coef = self._check_coef(coef)
        self.n_classes = self.coef.shape[0]
        self.l2 = _check_l2(l2)
        if self.sparse:
            _check_finite(self.X.data, "X")  # dense X: block by block, as the blocks are read
        self.y = self._check_targets(y, y_required)
        self.options = {"class_weight": class_weight, "label_smoothing": label_smoothing, "num_threads": num_threads}
        # The options' own checks, with the messages of the top-level functions.
        check_options(OPERATIONS["hessian"], dict(self.options, z=np.empty((0, self.n_classes)), y=y,
                                                  reduction="sum", ignore_index=None, layout="full"))
        if class_weight is not None:
            class_weight = np.asarray(class_weight)
            if class_weight.shape != (self.n_classes,) or class_weight.dtype.kind not in "biuf":
                raise ValueError(f"class_weight: expected real numbers of shape ({self.n_classes},), got "
                                 f"{class_weight.dtype} {class_weight.shape}")
        self.weights = self._row_weights(sample_weight)
        self.num_threads = num_threads

    def _check_coef(self, coef) -> np.ndarray:
        coef = np.asarray(coef)
        if coef.dtype.kind not in "biuf":
            raise TypeError(f"coef: expected real numbers, got dtype {coef.dtype}")
        n_dof = self.n_features + self.fit_intercept
        if coef.ndim != 2 or coef.shape[1] != n_dof or coef.shape[0] < 1:
            raise ValueError(
                f"coef: expected shape (n_classes, {n_dof}) for {self.n_features} features"
                f"{' and an intercept' if self.fit_intercept else ''}, got {coef.shape}"
            )
        coef = np.ascontiguousarray(coef, dtype=self.dtype)
        _check_finite(coef, "coef")
        return coef

    def _check_targets(self, y, required: bool):
        if y is None:
            if required:
                raise ValueError(f"y: expected labels of shape ({self.n_rows},) or soft targets of shape "
                                 f"({self.n_rows}, {self.n_classes}), got None")
            return None
        if isinstance(y, (bool, np.bool_)):
            raise TypeError(f"y: expected integer labels or real soft targets, got {type(y).__name__} {y!r}")
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y: expected integer labels or real soft targets, got dtype {y.dtype}")
        if y.shape == (self.n_rows, self.n_classes):
            return y
        if y.shape == (self.n_rows,):
            if y.dtype.kind not in "iu":
                raise TypeError(f"y: labels must have an integer dtype, got dtype {y.dtype} "
                                f"(soft targets need shape ({self.n_rows}, {self.n_classes}))")
            return check_labels(y, self.n_classes, None)
        raise ValueError(f"y: expected labels of shape ({self.n_rows},) or soft targets of shape "
                         f"({self.n_rows}, {self.n_classes}), got shape {y.shape}")

    def _row_weights(self, sample_weight) -> np.ndarray:
        """w_i / sum_i w_i: each row's share of the objective."""
        if sample_weight is None:
            return np.full(self.n_rows, 1.0 / max(self.n_rows, 1), dtype=self.dtype)
        sample_weight = np.asarray(sample_weight)
        if sample_weight.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight: expected real numbers, got dtype {sample_weight.dtype}")
        if sample_weight.shape != (self.n_rows,):
            raise ValueError(f"sample_weight: expected shape ({self.n_rows},), got {sample_weight.shape}")
        total = float(np.sum(sample_weight, dtype=np.float64))
        return (sample_weight.astype(np.float64) / total).astype(self.dtype)

    def blocks(self, rows_per_block: int = BLOCK_ROWS):
        """(slice of rows, X~ of the block: X with a column of ones when fitting an intercept)."""
        n_dof = self.n_features + self.fit_intercept
        for begin in range(0, self.n_rows, rows_per_block):
            rows = slice(begin, min(self.n_rows, begin + rows_per_block))
            block = np.empty((rows.stop - rows.start, n_dof), dtype=self.dtype)
            block[:, : self.n_features] = self.X[rows].toarray() if self.sparse else self.X[rows]
            if not self.sparse:
                _check_finite(block[:, : self.n_features], "X")
            if self.fit_intercept:
                block[:, -1] = 1.0
            yield rows, block

    def feature_blocks(self):
        """(slice of rows, X of the block, uncopied where X is dense in its dtype), in blocks that
        stay in L2 while they are read twice (forward and back products)."""
        rows_per_block = max(BLOCK_ROWS, L2_VALUES // max(self.n_features, 1))
        same = not self.sparse and self.X.dtype == self.dtype
        for begin in range(0, self.n_rows, rows_per_block):
            rows = slice(begin, min(self.n_rows, begin + rows_per_block))
            block = self.X[rows] if same else (self.X[rows].toarray() if self.sparse else self.X[rows])
            if not self.sparse:
                _check_finite(block, "X")
            yield rows, np.asarray(block, dtype=self.dtype)

    def target_arguments(self, rows: slice) -> dict:
        arguments = dict(self.options, sample_weight=self.weights[rows])
        if self.y is not None:
            arguments["y"] = self.y[rows]
        return arguments


def _check_finite(values: np.ndarray, name: str) -> None:
    if values.size and not np.isfinite(values).all():
        raise ValueError(f"{name}: expected finite values, got NaN or infinity")


def _is_sparse(X) -> bool:
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


def _check_l2(l2) -> float:
    if isinstance(l2, (bool, np.bool_)) or not isinstance(l2, numbers.Real):
        raise TypeError(f"l2: expected a float >= 0, got {type(l2).__name__} {l2!r}")
    if not float(l2) >= 0.0:  # also rejects NaN
        raise ValueError(f"l2: expected a float >= 0, got {l2!r}")
    return float(l2)


# ---- the objective and its gradient ----------------------------------------------------------


def _penalty(problem: _Problem) -> tuple[float, np.ndarray]:
    """(l2 / 2) ||W||^2 and its gradient (zero on the intercepts)."""
    weights = problem.coef[:, : problem.n_features]
    gradient = np.zeros_like(problem.coef, dtype=np.float64)
    gradient[:, : problem.n_features] = problem.l2 * weights
    return 0.5 * problem.l2 * float(np.sum(np.square(weights, dtype=np.float64))), gradient


def _accumulate(problem: _Problem, want_hessian: bool):
    """Loss, gradient and (want_hessian) the products H^T Y of the feature pairs, over all blocks."""
    n_classes, n_dof = problem.n_classes, problem.n_features + problem.fit_intercept
    loss, gradient = 0.0, np.zeros((n_classes, n_dof))
    if not want_hessian:
        with _threads.blas_threads(problem.num_threads):
            for rows, block in problem.feature_blocks():
                logits = block @ problem.coef[:, : problem.n_features].T
                if problem.fit_intercept:
                    logits += problem.coef[:, -1]
                block_loss, row_gradient = _sk.loss_gradient(logits, reduction="sum", **problem.target_arguments(rows))
                loss += float(block_loss)
                gradient[:, : problem.n_features] += row_gradient.T @ block
                if problem.fit_intercept:
                    gradient[:, -1] += row_gradient.sum(axis=0)
        return loss, gradient, None
    pairs = np.zeros((packed_size(n_classes), packed_size(n_dof)))
    with _threads.blas_threads(problem.num_threads):
        for rows, block in problem.blocks():
            block_loss, row_gradient, row_hessian = _sk.loss_gradient_hessian(
                block @ problem.coef.T, reduction="sum", **problem.target_arguments(rows))
            _add_pair_products(pairs, row_hessian, block)
            loss += float(block_loss)
            gradient += row_gradient.T @ block
    return loss, gradient, pairs


def _add_pair_products(pairs: np.ndarray, row_hessian: np.ndarray, block: np.ndarray) -> None:
    """pairs[q, t] += sum_i row_hessian[i, q] x~_ia x~_ib, t the packed upper position of (a, b)."""
    n_rows, n_pairs = block.shape[0], packed_size(block.shape[1])
    width = min(n_pairs, max(64, PAIR_CHUNK_VALUES // max(n_rows, 1)))
    buffer = np.empty(n_rows * width, dtype=block.dtype)
    product = np.empty((row_hessian.shape[1], width), dtype=block.dtype)
    for t0 in range(0, n_pairs, width):
        t1 = min(n_pairs, t0 + width)
        columns = buffer[: n_rows * (t1 - t0)].reshape(n_rows, t1 - t0)
        _feature_pairs(block, t0, t1, columns)
        np.matmul(row_hessian.T, columns, out=product[:, : t1 - t0])
        pairs[:, t0:t1] += product[:, : t1 - t0]


def _feature_pairs(block: np.ndarray, t0: int, t1: int, out: np.ndarray) -> None:
    """out[:, t - t0] = x~_a * x~_b for the packed upper positions t in [t0, t1) of pairs a <= b
    (out: C-contiguous, t1 - t0 columns)."""
    if _sk.BACKEND == "compiled":
        _sk._kernels.feature_pairs(block, t0, t1, out)
        return
    b = int((np.sqrt(8 * t0 + 1) - 1) // 2)  # the column b of position t0: b(b+1)/2 <= t0
    while b * (b + 1) // 2 > t0:
        b -= 1
    t = t0
    while t < t1:
        first_a = t - b * (b + 1) // 2
        last_a = min(b + 1, first_a + (t1 - t))
        np.multiply(block[:, first_a:last_a], block[:, b: b + 1], out=out[:, t - t0: t - t0 + last_a - first_a])
        t += last_a - first_a
        b += 1


def _parameter_hessian(problem: _Problem, pairs: np.ndarray, layout: str) -> np.ndarray:
    """The (P, P) parameter Hessian in scikit-learn's order, or its packed storage, from the pair
    products, with l2 on the diagonal of the penalised weights."""
    n_classes, n_dof = problem.n_classes, problem.n_features + problem.fit_intercept
    size = n_classes * n_dof
    # pairs[q(k, l), t(a, b)] -> hessian[a K + k, b K + l], one symmetric (d+1, d+1) block per
    # class pair, written into place with a stride of K
    blocks = pairs[:, packed_upper_positions(n_dof, "full")]
    hessian = np.empty((n_dof, n_classes, n_dof, n_classes), dtype=problem.dtype)
    for l in range(n_classes):
        for k in range(l + 1):
            block = blocks[l * (l + 1) // 2 + k]
            hessian[:, k, :, l] = block
            hessian[:, l, :, k] = block
    hessian = hessian.reshape(size, size)
    if problem.l2:
        penalised = np.arange(problem.n_features * n_classes)
        hessian[penalised, penalised] += problem.l2
    if layout == "full":
        return hessian
    rows, cols = packed_rows_cols(size, layout)
    return hessian[rows, cols]


def _result(problem: _Problem, loss: float, gradient: np.ndarray):
    penalty, penalty_gradient = _penalty(problem)
    return np.asarray(loss + penalty, dtype=problem.dtype), (gradient + penalty_gradient).astype(problem.dtype)


# ---- the public functions --------------------------------------------------------------------


def loss_gradient(coef, X, y, *, fit_intercept=True, sample_weight=None, class_weight=None, label_smoothing=0.0,
                  l2=0.0, num_threads=None):
    """Objective f(coef) and its gradient (of coef's shape).

    Parameters
    ----------
    coef : array_like, shape (K, d + fit_intercept)
        Weights W, and the intercepts b in the last column when fit_intercept.
    X : array_like or scipy.sparse matrix, shape (N, d)
        Features; float32 computes in float32, other dtypes in float64.
    y : array_like
        Integer labels (N,) or soft targets (N, K).
    fit_intercept : bool, default True
    sample_weight : array_like (N,), optional
        w_i; the objective is their weighted mean of the per-row losses.
    class_weight, label_smoothing
        As in ``softmax_kernels.loss``.
    l2 : float >= 0, default 0.0
        L2 penalty on W (not on b).
    num_threads : int, optional
        Threads of the kernels and, where threadpoolctl is installed, of BLAS.

    Returns
    -------
    (loss 0-d ndarray, gradient ndarray of coef's shape)
    """
    problem = _Problem(coef, X, y, fit_intercept=fit_intercept, sample_weight=sample_weight,
                       class_weight=class_weight, label_smoothing=label_smoothing, l2=l2, num_threads=num_threads,
                       y_required=True)
    loss, gradient, _ = _accumulate(problem, want_hessian=False)
    return _result(problem, loss, gradient)


def loss_gradient_hessian(coef, X, y, *, fit_intercept=True, sample_weight=None, class_weight=None,
                          label_smoothing=0.0, l2=0.0, layout="full", num_threads=None):
    """Objective, gradient and parameter Hessian (P x P, P = K (d + fit_intercept), in the order of
    ``coef.ravel(order="F")``; ``layout="packed_upper"``/``"packed_lower"``: LAPACK packed
    storage of it, for ``scipy.linalg.lapack.dppsv``/``dpptrf``). Parameters as `loss_gradient`."""
    layout = check_choice(layout, "layout", LAYOUTS)
    problem = _Problem(coef, X, y, fit_intercept=fit_intercept, sample_weight=sample_weight,
                       class_weight=class_weight, label_smoothing=label_smoothing, l2=l2, num_threads=num_threads,
                       y_required=True)
    loss, gradient, pairs = _accumulate(problem, want_hessian=True)
    loss, gradient = _result(problem, loss, gradient)
    return loss, gradient, _parameter_hessian(problem, pairs, layout)


def hessian(coef, X, y=None, *, fit_intercept=True, sample_weight=None, class_weight=None, label_smoothing=0.0,
            l2=0.0, layout="full", num_threads=None):
    """The parameter Hessian alone (see `loss_gradient_hessian`); y=None gives the Hessian of the
    weighted mean log-sum-exp (c_i = w_i / sum w)."""
    layout = check_choice(layout, "layout", LAYOUTS)
    problem = _Problem(coef, X, y, fit_intercept=fit_intercept, sample_weight=sample_weight,
                       class_weight=class_weight, label_smoothing=label_smoothing, l2=l2, num_threads=num_threads,
                       y_required=False)
    n_classes, n_dof = problem.n_classes, problem.n_features + problem.fit_intercept
    pairs = np.zeros((packed_size(n_classes), packed_size(n_dof)))
    with _threads.blas_threads(problem.num_threads):
        for rows, block in problem.blocks():
            row_hessian = _sk.hessian(block @ problem.coef.T, reduction="sum", **problem.target_arguments(rows))
            _add_pair_products(pairs, row_hessian, block)
    return _parameter_hessian(problem, pairs, layout)


def hessian_vector_product(coef, X, V, y=None, *, fit_intercept=True, sample_weight=None, class_weight=None,
                           label_smoothing=0.0, l2=0.0, num_threads=None):
    """H vec(V) in coef's shape, matrix-free (for Newton-CG): V of coef's shape; other parameters
    as `hessian`."""
    problem = _Problem(coef, X, y, fit_intercept=fit_intercept, sample_weight=sample_weight,
                       class_weight=class_weight, label_smoothing=label_smoothing, l2=l2, num_threads=num_threads,
                       y_required=False)
    V = np.asarray(V)
    if V.dtype.kind not in "biuf":
        raise TypeError(f"V: expected real numbers, got dtype {V.dtype}")
    if V.shape != problem.coef.shape:
        raise ValueError(f"V: expected coef's shape {problem.coef.shape}, got {V.shape}")
    # The logits and the directions V x~_i of a block from one (batched) product of X's block.
    V = V.astype(problem.dtype)
    n_features = problem.n_features
    both = np.stack([problem.coef[:, :n_features], V[:, :n_features]]).transpose(0, 2, 1)
    offsets = np.stack([problem.coef[:, n_features:], V[:, n_features:]]).transpose(0, 2, 1)  # (2, 1 or 0, K)
    product = np.zeros(problem.coef.shape)
    with _threads.blas_threads(problem.num_threads):
        for rows, block in problem.feature_blocks():
            logits, directions = block @ both
            if problem.fit_intercept:
                logits += offsets[0]
                directions += offsets[1]
            hv = _sk.hessian_vector_product(logits, directions, reduction="sum", **problem.target_arguments(rows))
            product[:, :n_features] += hv.T @ block
            if problem.fit_intercept:
                product[:, -1] += hv.sum(axis=0)
    product[:, : problem.n_features] += problem.l2 * V[:, : problem.n_features]
    return product.astype(problem.dtype)
