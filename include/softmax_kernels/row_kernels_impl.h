/* softmax_kernels: the per-row kernels, written once for a real type.
 *
 * Included by kernels.h with SK_REAL (float or double) and SK_NAME(x) (suffix
 * _f or _d) defined. All arithmetic is in double: float32 inputs gain accuracy
 * for free and are rounded once on store.
 *
 * The recipe for a row z (K classes) with target weights a (c = sum a); the
 * NumPy reference (reference.py) follows the same steps:
 *   1. m = max z, p = first arg-max; NaN or +-inf m makes the whole row NaN.
 *   2. e_k = exp(z_k - m), so e_p = 1; T = sum_{k != p} e_k; S = 1 + T.
 *      log S = log1p(T) keeps every digit of a tiny T (confident rows), where
 *      log(S) would round S to 1 and return 0.
 *   3. c_excl = sum_{k != p} a_k, c = c_excl + a_p, dot = sum_{a_k != 0} a_k (m - z_k).
 *   4. loss = dot + c log1p(T): non-negative terms for a >= 0, no cancellation.
 *   5. s_k = e_k / S; 1 - s_p = T / S and 1 - s_k = (S - e_k) / S for k != p
 *      (S - e_k >= S / 2 there), never 1 - s_k itself.
 *   6. g_k = c s_k - a_k (k != p); g_p = c_excl / S - a_p T / S: the dominant
 *      parts of c s_p and a_p cancel exactly on paper, not in floating point.
 *   7. H_ij = -(c s_max(i,j)) s_min(i,j) (bitwise symmetric), H_ii = (c s_i)(1 - s_i).
 *   8. sigma = (v_p + sum_{j != p} e_j v_j) / S; (Hv)_k = (c s_k)(v_k - sigma) for k != p,
 *      and v_p - sigma = sum_{j != p} e_j (v_p - v_j) / S for the arg-max class.
 *   9. "mean": the gradient is divided by D, the Hessian-type outputs use c / D.
 */

#ifndef SK_REAL
#error "row_kernels_impl.h is included by kernels.h only"
#endif

#define SK_ROW(ptr, row, width) ((SK_REAL *)(ptr) + (sk_index)(row) * (width))
#define SK_CROW(ptr, row, width) ((const SK_REAL *)(ptr) + (sk_index)(row) * (width))

/* Step 1. Returns 0 when the row has a NaN, a +inf, or only -inf logits. */
static inline int SK_NAME(sk_row_max)(const SK_REAL *z, sk_index n_classes, double *row_max, sk_index *argmax)
{
    double m = z[0];
    sk_index p = 0;
    int has_nan = z[0] != z[0];
    for (sk_index k = 1; k < n_classes; ++k) {
        double x = z[k];
        has_nan |= x != x;
        if (x > m) {
            m = x;
            p = k;
        }
    }
    *row_max = m;
    *argmax = p;
    return !has_nan && isfinite(m);
}

/* Step 2: fills e and returns T = sum_{k != p} e_k. */
static inline double SK_NAME(sk_row_exp)(const SK_REAL *z, sk_index n_classes, double row_max, sk_index argmax,
                                        double *e)
{
    for (sk_index k = 0; k < n_classes; ++k)
        e[k] = exp((double)z[k] - row_max);
    e[argmax] = 0.0; /* excluded from T, restored below */
    double sum_excl_argmax = sk_compensated_sum(e, n_classes);
    e[argmax] = 1.0;
    return sum_excl_argmax;
}

static inline void SK_NAME(sk_fill)(SK_REAL *out, sk_index n, double value)
{
    for (sk_index k = 0; k < n; ++k)
        out[k] = (SK_REAL)value;
}

/* ---- softmax and log-softmax ------------------------------------------------------ */

static void SK_NAME(sk_softmax_row)(const sk_problem *pb, sk_index row, double *scratch)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    SK_REAL *out = SK_ROW(pb->softmax, row, n_classes);
    double m;
    sk_index p;
    if (!SK_NAME(sk_row_max)(z, n_classes, &m, &p)) {
        SK_NAME(sk_fill)(out, n_classes, NAN);
        return;
    }
    double *e = scratch;
    double S = 1.0 + SK_NAME(sk_row_exp)(z, n_classes, m, p, e);
    for (sk_index k = 0; k < n_classes; ++k)
        out[k] = (SK_REAL)(e[k] / S);
}

static void SK_NAME(sk_log_softmax_row)(const sk_problem *pb, sk_index row, double *scratch)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    SK_REAL *out = SK_ROW(pb->log_softmax, row, n_classes);
    double m;
    sk_index p;
    if (!SK_NAME(sk_row_max)(z, n_classes, &m, &p)) {
        SK_NAME(sk_fill)(out, n_classes, NAN);
        return;
    }
    double log_sum = log1p(SK_NAME(sk_row_exp)(z, n_classes, m, p, scratch));
    /* (z_k - m) <= 0 and -log_sum <= 0: a sum of same-sign terms (out may alias z). */
    for (sk_index k = 0; k < n_classes; ++k)
        out[k] = (SK_REAL)(((double)z[k] - m) - log_sum);
}

/* ---- targets ------------------------------------------------------------------------ */

/* a_k for one row: labels a = w (eps/K) cw + w cw_y (1 - eps) onehot(y);
 * soft targets a = w cw ((1 - eps) y + eps/K). */
static inline double SK_NAME(sk_target_weight)(const sk_problem *pb, sk_index row, double row_weight,
                                               double label_coefficient, sk_index k)
{
    const SK_REAL *cw = (const SK_REAL *)pb->class_weight;
    if (pb->target_kind == SK_TARGET_SOFT) {
        double t = SK_CROW(pb->soft_targets, row, pb->n_classes)[k];
        if (pb->label_smoothing != 0.0)
            t = t * pb->one_minus_eps + pb->eps_over_k;
        if (cw)
            t = t * (double)cw[k];
        return t * row_weight;
    }
    double a = 0.0;
    if (pb->label_smoothing != 0.0)
        a = (row_weight * pb->eps_over_k) * (cw ? (double)cw[k] : 1.0);
    if (k == pb->labels[row])
        a += label_coefficient;
    return a;
}

typedef struct {
    double row_max;
    sk_index argmax;
    double sum_excl_argmax; /* T */
    double sum;             /* S = 1 + T */
    double row_weight;      /* w */
    double label_coefficient; /* w cw_y (1 - eps), labels only */
    double a_argmax;        /* a_p */
    double c_excl;          /* sum_{k != p} a_k */
    double c;               /* sum_k a_k (w without targets) */
    double dot;             /* sum_{a_k != 0} a_k (m - z_k) */
    int sparse_labels;      /* labels without smoothing: a is zero but at y */
} SK_NAME(sk_row_state);

/* Step 3: the target sums; the labels-without-smoothing case touches one class only. */
static inline void SK_NAME(sk_target_sums)(const sk_problem *pb, sk_index row, const SK_REAL *z,
                                           SK_NAME(sk_row_state) *st)
{
    const sk_index p = st->argmax;
    if (pb->target_kind == SK_TARGET_NONE) {
        st->c = st->row_weight;
        return;
    }
    if (st->sparse_labels) {
        const sk_index y = pb->labels[row];
        const double alpha = st->label_coefficient;
        st->a_argmax = y == p ? alpha : 0.0;
        st->c_excl = y == p ? 0.0 : alpha;
        st->dot = alpha != 0.0 ? alpha * (st->row_max - (double)z[y]) : 0.0;
    } else {
        sk_lanes c_excl, dot;
        sk_lanes_init(&c_excl);
        sk_lanes_init(&dot);
        for (sk_index k = 0; k < pb->n_classes; ++k) {
            double a = SK_NAME(sk_target_weight)(pb, row, st->row_weight, st->label_coefficient, k);
            sk_lanes_add(&c_excl, k, k == p ? 0.0 : a);
            /* a zero weight on a -inf logit contributes 0, not 0 * inf = NaN */
            sk_lanes_add(&dot, k, a != 0.0 ? a * (st->row_max - (double)z[k]) : 0.0);
        }
        st->a_argmax = SK_NAME(sk_target_weight)(pb, row, st->row_weight, st->label_coefficient, p);
        st->c_excl = sk_lanes_value(&c_excl);
        st->dot = sk_lanes_value(&dot);
    }
    st->c = st->c_excl + st->a_argmax;
}

/* ---- outputs ------------------------------------------------------------------------ */

static inline void SK_NAME(sk_write_gradient)(const sk_problem *pb, sk_index row, const SK_NAME(sk_row_state) *st,
                                              const double *s, SK_REAL *g)
{
    const sk_index n_classes = pb->n_classes, p = st->argmax;
    const double c = st->c, D = pb->denominator;
    if (st->sparse_labels) {
        for (sk_index k = 0; k < n_classes; ++k)
            g[k] = (SK_REAL)((c * s[k]) / D);
        const sk_index y = pb->labels[row];
        g[y] = (SK_REAL)((c * s[y] - st->label_coefficient) / D);
    } else {
        for (sk_index k = 0; k < n_classes; ++k) {
            double a = SK_NAME(sk_target_weight)(pb, row, st->row_weight, st->label_coefficient, k);
            g[k] = (SK_REAL)((c * s[k] - a) / D);
        }
    }
    g[p] = (SK_REAL)((st->c_excl / st->sum - st->a_argmax * st->sum_excl_argmax / st->sum) / D);
}

/* 1 - s_k without cancellation (step 5). */
static inline double SK_NAME(sk_one_minus_s)(const SK_NAME(sk_row_state) *st, const double *e, sk_index k)
{
    return k == st->argmax ? st->sum_excl_argmax / st->sum : (st->sum - e[k]) / st->sum;
}

static inline void SK_NAME(sk_write_hessian)(const sk_problem *pb, const SK_NAME(sk_row_state) *st,
                                             const double *e, const double *s, double *minus_cs, double coef,
                                             SK_REAL *h)
{
    const sk_index n_classes = pb->n_classes;
    for (sk_index k = 0; k < n_classes; ++k)
        minus_cs[k] = -(coef * s[k]);
    /* H_ij = minus_cs[max(i, j)] * s[min(i, j)]: every layout stores bitwise the same numbers. */
    for (sk_index j = 0; j < n_classes; ++j) {
        const double diag = (coef * s[j]) * SK_NAME(sk_one_minus_s)(st, e, j);
        if (pb->layout == SK_LAYOUT_PACKED_UPPER) {
            SK_REAL *col = h + sk_packed_upper_index(0, j); /* H[0..j][j] */
            for (sk_index i = 0; i < j; ++i)
                col[i] = (SK_REAL)(minus_cs[j] * s[i]);
            col[j] = (SK_REAL)diag;
        } else if (pb->layout == SK_LAYOUT_PACKED_LOWER) {
            SK_REAL *col = h + sk_packed_lower_index(j, j, n_classes); /* H[j..K-1][j] */
            col[0] = (SK_REAL)diag;
            for (sk_index i = j + 1; i < n_classes; ++i)
                col[i - j] = (SK_REAL)(minus_cs[i] * s[j]);
        } else {
            SK_REAL *full_row = h + j * n_classes; /* H[j][0..K-1] */
            for (sk_index i = 0; i < j; ++i)
                full_row[i] = (SK_REAL)(minus_cs[j] * s[i]);
            full_row[j] = (SK_REAL)diag;
            for (sk_index i = j + 1; i < n_classes; ++i)
                full_row[i] = (SK_REAL)(minus_cs[i] * s[j]);
        }
    }
}

static inline void SK_NAME(sk_write_hessian_vector_product)(const sk_problem *pb, sk_index row,
                                                            const SK_NAME(sk_row_state) *st, const double *e,
                                                            const double *s, double coef, SK_REAL *hv)
{
    const sk_index n_classes = pb->n_classes, p = st->argmax;
    const SK_REAL *v = SK_CROW(pb->v, row, n_classes);
    const double v_p = v[p];
    sk_lanes ev, ediff;
    sk_lanes_init(&ev);
    sk_lanes_init(&ediff);
    for (sk_index j = 0; j < n_classes; ++j) {
        double ej = j == p ? 0.0 : e[j];
        sk_lanes_add(&ev, j, ej * (double)v[j]);
        sk_lanes_add(&ediff, j, ej * (v_p - (double)v[j]));
    }
    const double sigma = (v_p + sk_lanes_value(&ev)) / st->sum;
    for (sk_index k = 0; k < n_classes; ++k)
        hv[k] = (SK_REAL)((coef * s[k]) * ((double)v[k] - sigma));
    hv[p] = (SK_REAL)((coef * s[p]) * (sk_lanes_value(&ediff) / st->sum));
}

/* Everything a target call asks for, for one row; ignored rows are zero and not read. */
static void SK_NAME(sk_target_row)(const sk_problem *pb, sk_index row, double *scratch)
{
    const sk_index n_classes = pb->n_classes, width = pb->hessian_width;
    SK_REAL *g = pb->gradient ? SK_ROW(pb->gradient, row, n_classes) : NULL;
    SK_REAL *h = pb->hessian ? SK_ROW(pb->hessian, row, width) : NULL;
    SK_REAL *hd = pb->hessian_diagonal ? SK_ROW(pb->hessian_diagonal, row, n_classes) : NULL;
    SK_REAL *hv = pb->hessian_vector_product ? SK_ROW(pb->hessian_vector_product, row, n_classes) : NULL;
    const int ignored = pb->target_kind == SK_TARGET_LABELS && pb->has_ignore_index &&
                        pb->labels[row] == pb->ignore_index;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    SK_NAME(sk_row_state) st;
    const int valid = !ignored && SK_NAME(sk_row_max)(z, n_classes, &st.row_max, &st.argmax);
    if (!valid) {
        double fill = ignored ? 0.0 : NAN;
        if (pb->row_loss) pb->row_loss[row] = fill;
        if (g) SK_NAME(sk_fill)(g, n_classes, fill);
        if (h) SK_NAME(sk_fill)(h, width, fill);
        if (hd) SK_NAME(sk_fill)(hd, n_classes, fill);
        if (hv) SK_NAME(sk_fill)(hv, n_classes, fill);
        return;
    }
    double *e = scratch, *s = scratch + n_classes, *minus_cs = scratch + 2 * n_classes;
    st.sum_excl_argmax = SK_NAME(sk_row_exp)(z, n_classes, st.row_max, st.argmax, e);
    st.sum = 1.0 + st.sum_excl_argmax;
    st.row_weight = pb->sample_weight ? (double)((const SK_REAL *)pb->sample_weight)[row] : 1.0;
    st.sparse_labels = pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing == 0.0;
    st.label_coefficient = 0.0;
    if (pb->target_kind == SK_TARGET_LABELS) {
        const SK_REAL *cw = (const SK_REAL *)pb->class_weight;
        st.label_coefficient = (st.row_weight * (cw ? (double)cw[pb->labels[row]] : 1.0)) * pb->one_minus_eps;
    }
    SK_NAME(sk_target_sums)(pb, row, z, &st);
    /* The loss is complete before any output is written, so grad may alias z. */
    if (pb->row_loss)
        pb->row_loss[row] = st.dot + st.c * log1p(st.sum_excl_argmax);
    for (sk_index k = 0; k < n_classes; ++k)
        s[k] = e[k] / st.sum;
    if (g)
        SK_NAME(sk_write_gradient)(pb, row, &st, s, g);
    const double coef = st.c / pb->denominator;
    if (h)
        SK_NAME(sk_write_hessian)(pb, &st, e, s, minus_cs, coef, h);
    if (hd)
        for (sk_index k = 0; k < n_classes; ++k)
            hd[k] = (SK_REAL)((coef * s[k]) * SK_NAME(sk_one_minus_s)(&st, e, k));
    if (hv)
        SK_NAME(sk_write_hessian_vector_product)(pb, row, &st, e, s, coef, hv);
}

/* The "mean" denominator: sum of w cw_y over non-ignored rows (labels), else sum of w or N. */
static double SK_NAME(sk_mean_denominator)(const sk_problem *pb, sk_index n_rows)
{
    const SK_REAL *w = (const SK_REAL *)pb->sample_weight;
    const SK_REAL *cw = (const SK_REAL *)pb->class_weight;
    sk_lanes acc;
    sk_lanes_init(&acc);
    for (sk_index i = 0; i < n_rows; ++i) {
        double term = w ? (double)w[i] : 1.0;
        if (pb->target_kind == SK_TARGET_LABELS) {
            const int64_t y = pb->labels[i];
            if (pb->has_ignore_index && y == pb->ignore_index)
                continue;
            if (cw)
                term *= (double)cw[y];
        }
        sk_lanes_add(&acc, i, term);
    }
    return sk_lanes_value(&acc);
}

#undef SK_ROW
#undef SK_CROW
