"""Mathematically exact results and condition terms for the accuracy contract (README).

Not a test module: the accuracy and property tests import it. For floating-point inputs taken
exactly (``mpf(float(x))``) it computes, in mpmath at 80 significant digits,

* every output of the package: softmax, log_softmax, loss (any reduction),
  gradient, the full Hessian, its diagonal and the Hessian-vector product, for
  integer labels, soft targets or no targets (``y=None``), with sample_weight,
  class_weight, label_smoothing, ignore_index and reduction exactly as the README
  defines them (a = w cw * ((1 - eps) onehot(y) + eps/K); "mean" divides by
  sum w cw_y over non-ignored rows for labels, by sum w (or N) otherwise;
  -inf logits are masked classes and a zero target weight on one contributes 0);
* for every output element f its condition term sum_x |df/dx| |x|, x running over
  every floating-point quantity f depends on: the logits, v, the soft targets,
  the sample and class weights, 1 - eps and eps/K (two separately rounded
  quantities, only when eps != 0), and the "mean" denominator D (which
  contributes |f|, since f = F / D). Inputs that are absent (w = 1, cw = 1, a
  one-hot label) are exact and contribute nothing; a zero input contributes 0.

The partial derivatives are analytic (see the formulas at each output below),
written, like the values, without cancellations that 80 digits could not absorb:
1 - s_p = T / S, log S = log1p(T), g_p = c_excl / S - a_p T / S, v_p - s.v =
sum_{k != p} e_k (v_p - v_k) / S, and sums "over all classes but j" are recomputed
directly when subtracting would cancel. Classes that share all their inputs are
grouped, so a row of K = 100 000 classes drawn from a few distinct values costs
only as much as its distinct values.

``assert_within_contract`` checks
|computed - exact| <= factor * u * (|exact| + condition + tiny) elementwise.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

import mpmath
import numpy as np

DIGITS = 80
ctx = mpmath.MPContext()
ctx.dps = DIGITS
mpf = ctx.mpf
ZERO, ONE, TWO = mpf(0), mpf(1), mpf(2)
INF, NAN = ctx.inf, ctx.nan
# Below this fraction of a sum, "total minus one term" has lost too many of the 80 digits.
_CANCELLED = mpf(2) ** -150

# Whether gradient conditions include the documented dense-target terms (see _Row._gradient);
# off only to compare the pure derivative conditions with numerical derivatives.
DENSE_GRADIENT_TERMS = True

OUTPUTS = ("softmax", "log_softmax", "loss", "gradient", "hessian", "hessian_diagonal", "hessian_vector_product")
TARGET_OUTPUTS = ("loss", "gradient", "hessian", "hessian_diagonal", "hessian_vector_product")


def _mul(*factors):
    """Product where a zero factor wins over an infinite one (0 * inf = 0, not NaN)."""
    for f in factors:
        if f == 0:
            return ZERO
    out = ONE
    for f in factors:
        out = out * f
    return out


def _sum(terms):
    return ctx.fsum(terms)


def _to_float_pair(x) -> tuple[float, float]:
    """(hi, lo): hi = round-to-nearest float of x, lo = float(x - hi) (both inf/NaN for non-finite x)."""
    if ctx.isnan(x):
        return float("nan"), float("nan")
    if ctx.isinf(x):
        return float(x), 0.0
    hi = float(x)
    if not np.isfinite(hi):
        return hi, 0.0
    return hi, float(x - mpf(hi))


@dataclass
class Exact:
    """Exact values and condition terms of one output, shaped like the package's output.

    ``value`` and ``condition`` are object arrays of mpmath numbers; ``hi``/``lo``
    (value = hi + lo to about 2**-106 relative) and ``cond`` are float64 views made
    once, so that comparing many computed arrays against one exact result is cheap.
    """

    value: np.ndarray
    condition: np.ndarray

    def __post_init__(self):
        self.value = np.asarray(self.value, dtype=object)
        self.condition = np.asarray(self.condition, dtype=object)
        pairs = [_to_float_pair(x) for x in self.value.ravel()]
        self.hi = np.array([p[0] for p in pairs], dtype=np.float64).reshape(self.value.shape)
        self.lo = np.array([p[1] for p in pairs], dtype=np.float64).reshape(self.value.shape)
        self.cond = np.array([float(c) for c in self.condition.ravel()], dtype=np.float64).reshape(self.value.shape)

    @property
    def shape(self):
        return self.value.shape

    def __getitem__(self, index) -> "Exact":
        return Exact(self.value[index], self.condition[index])


# --------------------------------------------------------------------------------------
# The contract check


def unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2.0  # 2**-53 for float64, 2**-24 for float32


# Below this magnitude float64 differences lose bits to gradual underflow: measured in mpmath instead.
_SMALL = 2.0 ** -900


def contract_ratio(computed, exact, condition=None, dtype=np.float64) -> np.ndarray:
    """|computed - exact| / (u (|exact| + condition + tiny)) elementwise (inf where a special value differs)."""
    values, hi, lo, cond = _exact_views(exact, condition)
    computed = np.asarray(computed, dtype=np.float64)
    if computed.shape != hi.shape:
        raise AssertionError(f"shape mismatch: computed {computed.shape}, exact {hi.shape}")
    u, tiny = unit_roundoff(dtype), float(np.finfo(dtype).tiny)
    with np.errstate(all="ignore"):
        # computed - hi is exact when they are within a factor 2 (Sterbenz), else its rounding is
        # relative to a difference far above the bound; lo carries the rest of the exact value.
        err = np.abs((computed - hi) - lo)
        # divide by the (normal) scale before u: u * tiny itself underflows in float64
        ratio = np.array((err / (np.abs(hi) + cond + tiny)) / u, dtype=np.float64)  # an array even when 0-d
    small = np.isfinite(hi) & np.isfinite(computed) & (np.maximum(np.abs(hi), np.abs(computed)) < _SMALL)
    if small.any():
        for index in map(tuple, np.argwhere(small)):
            x = values[index] if values is not None else mpf(hi[index]) + mpf(lo[index])
            err_exact = abs(mpf(float(computed[index])) - x)
            scale = u * (abs(x) + mpf(cond[index]) + tiny)
            ratio[index] = float(err_exact / scale)
    finite = np.isfinite(hi)
    same_special = (np.isnan(hi) & np.isnan(computed)) | (~np.isnan(hi) & ~finite & (computed == hi))
    ratio = np.where(finite, np.where(np.isfinite(computed), ratio, np.inf), np.where(same_special, 0.0, np.inf))
    return ratio


def _exact_views(exact, condition):
    """(mpmath values or None, hi, lo, condition as float64) of an Exact, an object array or a float array."""
    if isinstance(exact, Exact):
        cond = exact.cond if condition is None else condition
        values, exact_hi, exact_lo = exact.value, exact.hi, exact.lo
    else:
        if condition is None:
            raise TypeError("condition is required unless exact is an Exact")
        arr = np.asarray(exact)
        cond = condition
        if arr.dtype == object:
            wrapped = Exact(np.vectorize(mpf, otypes=[object])(arr) if arr.size else arr, np.zeros(arr.shape, object))
            values, exact_hi, exact_lo = wrapped.value, wrapped.hi, wrapped.lo
        else:
            values, exact_hi, exact_lo = None, arr.astype(np.float64), np.zeros(arr.shape)
    cond = np.asarray(cond)
    if cond.dtype == object:
        cond = np.array([float(c) for c in cond.ravel()], dtype=np.float64).reshape(cond.shape)
    cond = np.broadcast_to(cond.astype(np.float64), exact_hi.shape)
    return values, exact_hi, exact_lo, cond


def assert_within_contract(computed, exact, condition=None, dtype=np.float64, factor=4, what=""):
    """Assert |computed - exact| <= factor u (|exact| + condition + tiny) for every element.

    ``exact`` is an :class:`Exact` (then ``condition`` defaults to its condition), an
    object array of mpmath numbers, or a float array; u = 2**-53 or 2**-24 and tiny is
    the smallest normal number of ``dtype``. NaN must match NaN and infinities must
    match exactly. On failure the message names the worst element and its ratio
    |computed - exact| / (u (|exact| + condition + tiny)), which the contract bounds by ``factor``.
    """
    values, hi, lo, cond = _exact_views(exact, condition)
    computed = np.asarray(computed)
    ratio = contract_ratio(computed, exact, condition, dtype)
    bad = ratio > factor
    if not bad.any():
        return
    worst = np.unravel_index(int(np.argmax(np.where(np.isnan(ratio), np.inf, ratio))), ratio.shape)
    exact_text = mpmath.nstr(values[worst], 20) if values is not None else repr(hi[worst])
    raise AssertionError(
        f"{what + ': ' if what else ''}accuracy contract violated at {int(bad.sum())} of {bad.size} elements "
        f"({np.dtype(dtype).name}, factor {factor}); worst at index {tuple(int(i) for i in worst)}: "
        f"computed {float(computed[worst])!r}, exact {exact_text}, condition {cond[worst]:.6g}, "
        f"ratio {ratio[worst]:.4g} (allowed {factor})"
    )


# --------------------------------------------------------------------------------------
# Exact evaluation


def softmax(z) -> Exact:
    return evaluate(z, outputs=("softmax",))["softmax"]


def log_softmax(z) -> Exact:
    return evaluate(z, outputs=("log_softmax",))["log_softmax"]


def loss(z, y, **options) -> Exact:
    return evaluate(z, y, outputs=("loss",), **options)["loss"]


def gradient(z, y, **options) -> Exact:
    return evaluate(z, y, outputs=("gradient",), **options)["gradient"]


def hessian(z, y=None, **options) -> Exact:
    """The full (..., K, K) Hessian; compare packed results after ``softmax_kernels.unpack``."""
    return evaluate(z, y, outputs=("hessian",), **options)["hessian"]


def hessian_diagonal(z, y=None, **options) -> Exact:
    return evaluate(z, y, outputs=("hessian_diagonal",), **options)["hessian_diagonal"]


def hessian_vector_product(z, v, y=None, **options) -> Exact:
    return evaluate(z, y, v, outputs=("hessian_vector_product",), **options)["hessian_vector_product"]


@dataclass
class _Options:
    kind: str  # "none", "labels", "soft"
    n_classes: int
    has_w: bool
    has_cw: bool
    eps_on: bool
    beta: object  # 1 - eps
    gamma: object  # eps / K
    reduction: str


def evaluate(z, y=None, v=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
             ignore_index=None, reduction="none", outputs=OUTPUTS) -> dict:
    """Exact values and condition terms of the requested outputs, keyed by output name.

    Arguments as in the package (z of shape (..., K); y None, integer labels of the batch
    shape or soft targets of z's shape; v of z's shape). Every array is read as the exact
    value of its floating-point elements, so pass them in the dtype under test.
    "hessian" is returned as the full (..., K, K) matrix.
    """
    z = np.asarray(z)
    if z.ndim == 0:
        raise ValueError("z must have a class axis")
    batch_shape, n_classes = z.shape[:-1], z.shape[-1]
    z2 = z.astype(np.float64).reshape(-1, n_classes)
    n_rows = z2.shape[0]
    kind, labels, soft = _targets(y, batch_shape, z.shape, n_rows, n_classes)
    if kind == "none" and any(o in ("loss", "gradient") for o in outputs):
        raise ValueError("loss and gradient need targets")
    w = None if sample_weight is None else np.asarray(sample_weight).astype(np.float64).reshape(n_rows)
    cw = None if class_weight is None else np.asarray(class_weight).astype(np.float64).reshape(n_classes)
    v2 = None if v is None else np.asarray(v).astype(np.float64).reshape(n_rows, n_classes)
    if "hessian_vector_product" in outputs and v2 is None:
        raise ValueError("hessian_vector_product needs v")
    eps = float(label_smoothing)
    opts = _Options(
        kind=kind, n_classes=n_classes, has_w=w is not None, has_cw=cw is not None and kind != "none",
        eps_on=eps != 0.0, beta=ONE - mpf(eps), gamma=mpf(eps) / n_classes, reduction=reduction,
    )
    ignored = np.zeros(n_rows, dtype=bool)
    if kind == "labels" and ignore_index is not None:
        ignored = labels == ignore_index

    denominator = ONE
    if reduction == "mean":
        denominator = _mean_denominator(opts, labels, w, cw, ignored, n_rows)

    rows = []
    for i in range(n_rows):
        if ignored[i]:
            rows.append(None)
            continue
        rows.append(_Row(
            z2[i], opts,
            label=int(labels[i]) if kind == "labels" else None,
            t=soft[i] if kind == "soft" else None,
            w=float(w[i]) if w is not None else 1.0,
            cw=cw, v=v2[i] if v2 is not None else None,
        ))

    results = {}
    for name in outputs:
        if name == "loss":
            results[name] = _reduced_loss(rows, opts, cw, denominator, batch_shape)
        else:
            results[name] = _per_row_output(name, rows, opts, denominator, batch_shape, n_classes)
    return results


def _targets(y, batch_shape, full_shape, n_rows, n_classes):
    if y is None:
        return "none", None, None
    arr = np.asarray(y)
    if arr.dtype.kind in "iu" and arr.shape == batch_shape:
        return "labels", arr.astype(np.int64).reshape(n_rows), None
    if arr.shape == full_shape:
        return "soft", None, arr.astype(np.float64).reshape(n_rows, n_classes)
    raise ValueError(f"y of shape {arr.shape} is neither labels {batch_shape} nor soft targets {full_shape}")


def _mean_denominator(opts, labels, w, cw, ignored, n_rows):
    terms = []
    for i in range(n_rows):
        if ignored[i]:
            continue
        term = mpf(float(w[i])) if w is not None else ONE
        if opts.kind == "labels" and cw is not None:
            term = term * mpf(float(cw[labels[i]]))
        terms.append(term)
    return _sum(terms)


def _divide(x, denominator):
    if denominator == 0:
        return NAN
    return x / denominator


def _per_row_output(name, rows, opts, denominator, batch_shape, n_classes):
    shape = (n_classes, n_classes) if name == "hessian" else (n_classes,)
    values = np.empty((len(rows),) + shape, dtype=object)
    conds = np.empty_like(values)
    mean = opts.reduction == "mean" and name not in ("softmax", "log_softmax")
    for i, row in enumerate(rows):
        if row is None:  # ignored: exactly zero, not read
            values[i] = ZERO
            conds[i] = ZERO
            continue
        value, cond = row.output(name)
        if mean:
            if denominator == 0:
                value = np.full(shape, NAN, dtype=object)
                cond = np.full(shape, ZERO, dtype=object)
            else:
                value = np.array([x / denominator for x in value.ravel()], dtype=object).reshape(shape)
                # f = F / D: the condition scales by 1/|D|, and D itself contributes |dF/dD| |D| = |f|.
                cond = np.array([c / abs(denominator) + abs(x) for c, x in zip(cond.ravel(), value.ravel())],
                                dtype=object).reshape(shape)
        values[i] = value
        conds[i] = cond
    return Exact(values.reshape(batch_shape + shape), conds.reshape(batch_shape + shape))


def _reduced_loss(rows, opts, cw, denominator, batch_shape):
    """Per-row loss, or the sum/mean with the shared inputs (cw, 1-eps, eps/K) differentiated as a whole."""
    if opts.reduction == "none":
        values = np.empty(len(rows), dtype=object)
        conds = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            if row is None:
                values[i], conds[i] = ZERO, ZERO
                continue
            part = row.loss_parts()
            values[i] = part.value
            conds[i] = part.own_condition + _shared_condition([part], opts, cw)
        return Exact(values.reshape(batch_shape), conds.reshape(batch_shape))
    parts = [row.loss_parts() for row in rows if row is not None]
    total = _sum([p.value for p in parts]) if parts else ZERO
    if any(ctx.isnan(p.value) for p in parts):
        total = NAN
    cond = _sum([p.own_condition for p in parts]) + _shared_condition(parts, opts, cw) if parts else ZERO
    if opts.reduction == "mean":
        total = _divide(total, denominator)
        cond = ZERO if denominator == 0 else cond / abs(denominator) + abs(total)
    return Exact(np.array(total, dtype=object), np.array(cond, dtype=object))


def _shared_condition(parts, opts, cw):
    """Condition from the inputs shared by rows: |sum_i dL_i/dx| |x| for x in cw, 1-eps, eps/K."""
    cond = ZERO
    if opts.has_cw:
        per_class = [ZERO] * opts.n_classes
        for p in parts:
            for k, d in p.d_class_weight.items():
                per_class[k] = per_class[k] + d
        cond += _sum([_mul(abs(d), abs(mpf(float(cw[k])))) for k, d in enumerate(per_class)])
    if opts.eps_on:
        cond += _mul(abs(_sum([p.d_beta for p in parts])), abs(opts.beta))
        cond += _mul(abs(_sum([p.d_gamma for p in parts])), abs(opts.gamma))
    return cond


@dataclass
class _LossParts:
    value: object
    own_condition: object  # logits, sample weight and soft targets of this row
    d_class_weight: dict  # class k -> dL/dcw_k (signed)
    d_beta: object  # dL/d(1 - eps)
    d_gamma: object  # dL/d(eps/K)


class _Group:
    """Classes of one row that share every input (logit, target, class weight, v, arg-max/label flags)."""

    __slots__ = ("count", "classes", "z", "masked", "is_p", "is_y", "t", "cw", "v",
                 "e", "s", "oms", "x", "b", "a", "cwb", "tt", "wcwt", "wcw", "dv", "sv")


class _Row:
    """Exact math of one valid (or invalid, then all NaN) row; outputs on demand."""

    def __init__(self, z, opts: _Options, *, label, t, w, cw, v):
        self.opts = opts
        self.n_classes = len(z)
        self.w = mpf(w)
        self.invalid = bool(np.isnan(z).any() or np.isposinf(z).any() or np.isneginf(z).all())
        if self.invalid:
            return
        p = int(np.argmax(z))  # first arg-max
        self._make_groups(z, p, label, t, cw, v)
        self.m = mpf(float(z[p]))
        self._exponentials()
        if opts.kind != "none":
            self._target_sums()

    # ---- construction -------------------------------------------------------------

    def _make_groups(self, z, p, label, t, cw, v):
        n = self.n_classes
        zeros = [0.0] * n
        columns = (
            z.tolist(),
            [k == p for k in range(n)],
            [k == label for k in range(n)] if label is not None else [False] * n,
            t.tolist() if t is not None else zeros,
            cw.tolist() if (cw is not None and self.opts.has_cw) else [1.0] * n,
            v.tolist() if v is not None else zeros,
        )
        index = {}
        members = []
        self.inverse = np.empty(n, dtype=np.intp)
        for k, key in enumerate(zip(*columns)):
            g = index.get(key)
            if g is None:
                g = index[key] = len(members)
                members.append([])
            members[g].append(k)
            self.inverse[k] = g
        self.groups = []
        for key, classes in zip(index, members):
            g = _Group()
            g.count, g.classes = len(classes), classes
            zk, g.is_p, g.is_y, tk, cwk, vk = key
            g.masked = zk == -np.inf
            g.z, g.t, g.cw, g.v = mpf(zk), mpf(tk), mpf(cwk), mpf(vk)
            self.groups.append(g)
            if g.is_p:
                self.p_group = g
        self.others = [g for g in self.groups if not g.is_p]

    def _exponentials(self):
        m = self.m
        for g in self.groups:
            g.e = ZERO if g.masked else (ONE if g.is_p else ctx.exp(g.z - m))
        # T = sum_{k != p} e_k and S = 1 + T: log S = log1p(T), 1 - s_p = T / S.
        self.T = _sum([g.count * g.e for g in self.others])
        self.S = ONE + self.T
        self.log1pT = ctx.log1p(self.T)
        for g in self.groups:
            g.s = g.e / self.S
            # 1 - s_k without cancellation: T / S at the arg-max, (1 + (T - e_k)) / S elsewhere.
            g.oms = self.T / self.S if g.is_p else (ONE + (self.T - g.e)) / self.S
            g.x = ZERO if g.masked else g.s * abs(g.z)  # s_k |z_k|, the logits' share of the conditions

    def _target_sums(self):
        o, w = self.opts, self.w
        for g in self.groups:
            base = (ONE if g.is_y else ZERO) if o.kind == "labels" else g.t
            g.b = o.beta * base + o.gamma if o.eps_on else base  # (1-eps) t + eps/K
            g.a = w * g.cw * g.b
            g.cwb = g.cw * g.b  # da/dw
            g.tt = _mul(w, g.cw, o.beta if o.eps_on else ONE, g.t) if o.kind == "soft" else ZERO  # (da/dt) t
            g.wcwt = w * g.cw * base  # da/d(1-eps)
            g.wcw = w * g.cw  # da/d(eps/K)
        pg = self.p_group
        self.a_p = pg.a
        self.c_excl = _sum([g.count * g.a for g in self.others])
        self.c = self.c_excl + self.a_p
        self.sum_cwb = _sum([g.count * g.cwb for g in self.groups])
        self.sum_abs_a = _sum([g.count * abs(g.a) for g in self.groups])
        self.sum_abs_tt = _sum([g.count * abs(g.tt) for g in self.groups])
        self.sum_wcwt = _sum([g.count * g.wcwt for g in self.groups])
        self.sum_wcw = _sum([g.count * g.wcw for g in self.groups])

    # ---- shared pieces of the conditions ------------------------------------------

    def _excluding(self, total, term, attribute, group, drop=()):
        """sum over all classes but one of ``group`` (and one of each group in drop) of g.<attribute>.

        total - term unless that cancels below 2**-150 of the total, then summed directly.
        """
        rest = total - term
        if rest >= total * _CANCELLED:
            return rest
        excluded = [group] + list(drop)
        return _sum([(g.count - excluded.count(g)) * getattr(g, attribute) for g in self.groups])

    @functools.cached_property
    def Q(self):
        return _sum([g.count * g.x for g in self.groups])

    def q_excluding(self, g):
        """sum_{k != j} s_k |z_k| for a class j of group g."""
        return self._excluding(self.Q, g.x, "x", g)

    def softmax_z_condition(self, g):
        """sum_k |d s_j / d z_k| |z_k| = s_j ((1 - s_j) |z_j| + sum_{k != j} s_k |z_k|)."""
        if g.masked:
            return ZERO
        return g.s * (g.oms * abs(g.z) + self.q_excluding(g))

    @functools.cached_property
    def c_condition(self):
        """sum_x |dc/dx| |x| over the target inputs (c = sum a, or c = w without targets)."""
        if self.opts.kind == "none":
            return abs(self.w) if self.opts.has_w else ZERO
        return self.param_condition(ONE, ZERO, None)

    def param_condition(self, alpha, eta, g):
        """sum_x |df/dx| |x| over the target inputs when df/da_k = alpha + eta [k = j] (j in group g).

        a_k = w cw_k b_k with b_k = (1-eps) t_k + eps/K: the inputs are w, every cw_k, every
        soft t_k, 1-eps and eps/K (present ones only).
        """
        o, total = self.opts, ZERO
        own = (lambda attr: getattr(g, attr)) if g is not None else (lambda attr: ZERO)
        if o.has_w:
            total += abs(self.w) * abs(alpha * self.sum_cwb + eta * own("cwb"))
        if o.has_cw:
            abs_a = abs(own("a"))
            total += abs(alpha) * (self.sum_abs_a - abs_a) + abs(alpha + eta) * abs_a
        if o.kind == "soft":
            abs_tt = abs(own("tt"))
            total += abs(alpha) * (self.sum_abs_tt - abs_tt) + abs(alpha + eta) * abs_tt
        if o.eps_on:
            total += abs(o.beta) * abs(alpha * self.sum_wcwt + eta * own("wcwt"))
            total += abs(o.gamma) * abs(alpha * self.sum_wcw + eta * own("wcw"))
        return total

    # ---- outputs ------------------------------------------------------------------

    def output(self, name):
        """(values, conditions) of a per-row output as object arrays (K,) or (K, K)."""
        if self.invalid:
            shape = (self.n_classes, self.n_classes) if name == "hessian" else (self.n_classes,)
            return np.full(shape, NAN, dtype=object), np.full(shape, ZERO, dtype=object)
        if name == "hessian":
            return self._hessian()
        per_group = getattr(self, "_" + name)
        pairs = [per_group(g) for g in self.groups]
        values = np.array([p[0] for p in pairs] + [None], dtype=object)[:-1][self.inverse]
        conds = np.array([p[1] for p in pairs] + [None], dtype=object)[:-1][self.inverse]
        return values, conds

    def _softmax(self, g):
        return g.s, self.softmax_z_condition(g)

    def _log_softmax(self, g):
        if g.masked:
            return -INF, ZERO
        # z_j - lse: d/dz_k = [k = j] - s_k, so the condition is (1 - s_j)|z_j| + sum_{k != j} s_k |z_k|.
        return (g.z - self.m) - self.log1pT, g.oms * abs(g.z) + self.q_excluding(g)

    def _gradient_value(self, g):
        # g_j = c s_j - a_j; at the arg-max c_excl / S - a_p T / S (c s_p and a_p cancel on paper).
        if g.is_p:
            return self.c_excl / self.S - self.a_p * self.T / self.S
        return self.c * g.s - g.a

    def _gradient(self, g):
        value = self._gradient_value(g)
        # dg_j/dz_k = H_jk = c s_j ([k = j] - s_k); dg_j/da_k = s_j - [k = j].
        cond = abs(self.c) * self.softmax_z_condition(g) + self.param_condition(g.s, -ONE, g)
        if DENSE_GRADIENT_TERMS and (self.opts.kind == "soft" or self.opts.eps_on):
            # The documented bound for dense targets (README, accuracy contract): g_j is the
            # difference of two terms computed to a few u each, c s_j - a_j (at the arg-max
            # c_excl / S - a_p T / S), and no O(K) algorithm can avoid rounding s_j before the
            # subtraction, so their magnitudes join the condition.
            if g.is_p:
                cond += abs(self.c_excl / self.S) + abs(self.a_p * self.T / self.S)
            else:
                cond += abs(self.c * g.s) + abs(g.a)
        return value, cond

    def _diagonal_unit(self, g):
        """d_j = s_j (1 - s_j) and sum_k |d d_j/d z_k| |z_k| = s_j |1 - 2 s_j| ((1-s_j)|z_j| + sum_{k!=j} s_k|z_k|)."""
        if g.masked:
            return ZERO, ZERO
        return g.s * g.oms, g.s * abs(g.oms - g.s) * (g.oms * abs(g.z) + self.q_excluding(g))

    def _hessian_diagonal(self, g):
        unit, z_cond = self._diagonal_unit(g)
        return self.coefficient * unit, abs(self.coefficient) * z_cond + abs(unit) * self.c_condition

    @property
    def coefficient(self):
        return self.w if self.opts.kind == "none" else self.c

    @functools.cached_property
    def _hvp_sums(self):
        """sigma = s.v, v_p - sigma = sum_{k != p} e_k (v_p - v_k) / S, R = sum s_k |v_k|, and the sorted
        structure for sum_k s_k |z_k| |v_k - tau| (arg-max excluded, its term added directly)."""
        pg = self.p_group
        sigma = (pg.v + _sum([g.count * g.e * g.v for g in self.others])) / self.S
        dv_p = _sum([g.count * g.e * (pg.v - g.v) for g in self.others]) / self.S
        R = _sum([g.count * g.s * abs(g.v) for g in self.groups])
        for g in self.groups:
            g.dv = dv_p if g.is_p else g.v - sigma  # v_j - sigma
            g.sv = g.s * abs(g.v)
        items = sorted((g for g in self.others if not g.masked), key=lambda g: float(g.v))
        prefix_x, prefix_xv = [ZERO], [ZERO]
        for g in items:
            prefix_x.append(prefix_x[-1] + g.count * g.x)
            prefix_xv.append(prefix_xv[-1] + g.count * g.x * g.v)
        return sigma, R, items, [g.v for g in items], prefix_x, prefix_xv

    def _weighted_distance(self, tau):
        """sum over non-arg-max classes of s_k |z_k| |v_k - tau|."""
        _, _, items, keys, px, pxv = self._hvp_sums
        if len(items) <= 48:
            return _sum([g.count * g.x * abs(g.v - tau) for g in items])
        i = bisect.bisect_left(keys, tau)
        below = tau * px[i] - pxv[i]
        above = (pxv[-1] - pxv[i]) - tau * (px[-1] - px[i])
        return below + above

    def _hessian_vector_product(self, g):
        sigma, R, *_ = self._hvp_sums
        dv = g.dv  # v_j - sigma
        if g.masked:
            return ZERO, ZERO
        unit = g.s * dv
        # d(Hv)_j/dv_k = H_jk: c s_j ((1 - s_j)|v_j| + sum_{k != j} s_k |v_k|).
        r_excl = self._excluding(R, g.sv, "sv", g) if R != 0 else ZERO
        v_cond = g.s * (g.oms * abs(g.v) + r_excl)
        # d(Hv)_j/dz_k = c s_j ([k = j](v_j - sigma) - s_k (v_j + v_k - 2 sigma)):
        # sum_k |.| |z_k| = c s_j (|v_j - sigma| |1 - 2 s_j| |z_j| + sum_{k != j} s_k |z_k| |v_k - tau_j|),
        # tau_j = 2 sigma - v_j = v_j - 2 (v_j - sigma).
        tau = g.v - 2 * dv
        rest = self._weighted_distance(tau)
        pg = self.p_group
        if not g.is_p:  # the arg-max is not in the sorted structure: add its term, drop j's own
            rest = rest - g.x * abs(g.v - tau) + pg.x * abs(pg.v - tau)
            if rest < 0:
                rest = ZERO
        z_cond = g.s * (abs(dv) * abs(g.oms - g.s) * abs(g.z) + rest)
        c = self.coefficient
        return c * unit, abs(c) * (z_cond + v_cond) + abs(unit) * self.c_condition

    def _hessian(self):
        """H = c (diag(s) - s s^T); off the diagonal dH_ij/dz_k = -c s_i s_j ([k=i] + [k=j] - 2 s_k)."""
        n, c = self.n_classes, self.coefficient
        per_class = [self.groups[g] for g in self.inverse]
        values = np.empty((n, n), dtype=object)
        conds = np.empty((n, n), dtype=object)
        one_minus_two_s_z = [ZERO if g.masked else abs(g.oms - g.s) * abs(g.z) for g in per_class]
        for i, gi in enumerate(per_class):
            unit, z_cond = self._diagonal_unit(gi)
            values[i, i] = c * unit
            conds[i, i] = abs(c) * z_cond + abs(unit) * self.c_condition
            for j in range(i + 1, n):
                gj = per_class[j]
                unit = -(gi.s * gj.s)
                if gi.masked or gj.masked:
                    z_cond = ZERO
                else:
                    rest = self._excluding(self.Q, gi.x + gj.x, "x", gi, drop=(gj,))
                    z_cond = gi.s * gj.s * (2 * rest + one_minus_two_s_z[i] + one_minus_two_s_z[j])
                values[i, j] = values[j, i] = c * unit
                conds[i, j] = conds[j, i] = abs(c) * z_cond + abs(unit) * self.c_condition
        return values, conds

    def loss_parts(self) -> _LossParts:
        """L = sum_k a_k (lse - z_k) = sum_{a_k != 0} a_k (m - z_k) + c log1p(T); dL/dz = g, dL/da_k = lse - z_k."""
        if self.invalid:
            return _LossParts(NAN, ZERO, {}, ZERO, ZERO)
        o = self.opts
        infinite = [g for g in self.groups if g.masked and g.a != 0]
        if infinite:
            signs = {1 if g.a > 0 else -1 for g in infinite}
            value = NAN if len(signs) == 2 else signs.pop() * INF
        else:
            dot = _sum([g.count * g.a * (self.m - g.z) for g in self.groups if g.a != 0])
            value = dot + self.c * self.log1pT
        # d L / d a_k = lse - z_k >= 0 (+inf on a masked class, where only a zero input can meet it).
        d_a = {id(g): (INF if g.masked else (self.m - g.z) + self.log1pT) for g in self.groups}
        grads = {id(g): self._gradient_value(g) for g in self.groups}
        own = _sum([g.count * _mul(abs(grads[id(g)]), abs(g.z)) for g in self.groups if not g.masked])
        if o.has_w:
            own += _mul(abs(self.w), abs(_sum([g.count * _mul(d_a[id(g)], g.cwb) for g in self.groups])))
        if o.kind == "soft":
            own += _sum([g.count * _mul(d_a[id(g)], abs(g.tt)) for g in self.groups])
        d_class_weight = {}
        if o.has_cw:
            for g in self.groups:
                d = _mul(d_a[id(g)], self.w, g.b)
                for k in g.classes:
                    d_class_weight[k] = d
        d_beta = d_gamma = ZERO
        if o.eps_on:
            d_beta = _sum([g.count * _mul(d_a[id(g)], g.wcwt) for g in self.groups])
            d_gamma = _sum([g.count * _mul(d_a[id(g)], g.wcw) for g in self.groups])
        return _LossParts(value, own, d_class_weight, d_beta, d_gamma)


# --------------------------------------------------------------------------------------
# Float helpers for the non-exact tests


def effective_targets(z_shape, y=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
                      ignore_index=None):
    """The effective target matrix a (N, K) in float64 and the ignored-row mask, from the README's formula."""
    n_classes = z_shape[-1]
    n_rows = int(np.prod(z_shape[:-1], dtype=np.int64))
    w = np.ones(n_rows) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(n_rows)
    cw = np.ones(n_classes) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    eps = float(label_smoothing)
    ignored = np.zeros(n_rows, dtype=bool)
    if y is None:
        return None, ignored
    y = np.asarray(y)
    if y.dtype.kind in "iu" and y.shape == tuple(z_shape[:-1]):
        labels = y.reshape(n_rows)
        if ignore_index is not None:
            ignored = labels == ignore_index
        base = np.zeros((n_rows, n_classes))
        base[np.flatnonzero(~ignored), labels[~ignored]] = 1.0
    else:
        base = y.astype(np.float64).reshape(n_rows, n_classes)
    a = w[:, None] * cw * ((1.0 - eps) * base + eps / n_classes)
    a[ignored] = 0.0
    return a, ignored
