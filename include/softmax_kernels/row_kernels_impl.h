/* softmax_kernels: the kernels for one block of rows, written once for a real type.
 *
 * Included by kernels.h with SK_REAL (float or double) and SK_NAME(x) (suffix
 * _f or _d) defined; vmath.h provides sk_exp_f/sk_exp_d and sk_log1p_d.
 *
 * The recipe for a row z (K classes) with target weights a (c = sum a); the
 * NumPy reference (reference.py) follows the same steps:
 *   1. m = max z; NaN anywhere, +inf, or all -inf makes the whole row NaN.
 *   2. e_k = exp(z_k - m); e = 1 at the arg-max p; T = sum_{k != p} e_k; S = 1 + T.
 *      log S = log1p(T) keeps every digit of a tiny T (confident rows), where
 *      log(S) would round S to 1 and return 0.
 *   3. c_excl = sum_{k != p} a_k, c = c_excl + a_p, dot = sum_{a_k != 0} a_k (m - z_k).
 *   4. loss = dot + c log1p(T): non-negative terms for a >= 0, no cancellation.
 *   5. s_k = e_k / S; 1 - s_k = T / S where z_k = m (then e_k = 1, so this is exact
 *      algebra) and (S - e_k) / S elsewhere (S - e_k >= S / 2 there), never 1 - s_k.
 *   6. g_k = c s_k - a_k (k != p); g_p = c_excl / S - a_p T / S: the dominant parts
 *      of c s_p and a_p cancel exactly on paper, not in floating point.
 *   7. H_ij = -(c s_max(i,j)) s_min(i,j) (bitwise symmetric), H_ii = (c s_i)(1 - s_i).
 *   8. sigma = (v_p + sum_{j != p} e_j v_j) / S; (Hv)_k = (c s_k)(v_k - sigma) for k != p,
 *      and v_p - sigma = sum_{j != p} e_j (v_p - v_j) / S for the arg-max class.
 *   9. "mean": the gradient is divided by D, the Hessian-type outputs use c / D.
 *
 * Rows are processed in blocks so that the expensive exp runs over one contiguous
 * strip (SIMD lanes stay full even for K = 10) and log1p runs over the block's rows:
 *   phase 1, per row: m and the strip d = z - m (ignored rows are not read);
 *   phase 2, the strip: e = exp(d);
 *   phase 3, per row: T, and whether the row is valid;
 *   phase 4, the rows: log1p(T), when a loss or log-softmax needs it;
 *   phase 5, per row: the outputs.
 * float data computes exp in float (16 AVX-512 lanes) and everything else in double.
 */

#ifndef SK_REAL
#error "row_kernels_impl.h is included by kernels.h only"
#endif

#define SK_ROW(ptr, row, width) ((SK_REAL *)(ptr) + (sk_index)(row) * (width))
#define SK_CROW(ptr, row, width) ((const SK_REAL *)(ptr) + (sk_index)(row) * (width))
#define SK_EXP SK_NAME(sk_exp)

/* ---- phases 1 to 4: the statistics of a block ------------------------------------------- */

SK_INLINE SK_REAL SK_NAME(sk_row_max)(const SK_REAL *z, sk_index n_classes)
{
    /* A NaN never wins a comparison; it is caught later because exp(NaN - m) poisons T.
     * The SIMD reduction may start its lanes at the lowest finite value instead of -inf:
     * a row of only -inf then gets a finite m, and T < 0 (no term equals 1) flags it. */
    SK_REAL m = (SK_REAL)-INFINITY;
    SK_SIMD_REDUCE(max : m)
    for (sk_index k = 0; k < n_classes; ++k)
        m = z[k] > m ? z[k] : m;
    return m;
}

/* T = sum_k e_k - 1, with a TwoSum-compensated sum in double: the sum carries its exact
 * rounding error, and (hi - 1) is exact for hi >= 1 (e = 1 at the arg-max), so T keeps
 * its digits even when T << 1, and ties need no special care. The lanes are
 * independent so the compiler vectorises them; their order is fixed, so the result
 * does not depend on threads. */
SK_INLINE double SK_NAME(sk_sum_excl_argmax)(const SK_REAL *e, sk_index n_classes)
{
    double hi[SK_SUM_LANES] = {0}, lo[SK_SUM_LANES] = {0};
    sk_index k = 0;
    for (; k + SK_SUM_LANES <= n_classes; k += SK_SUM_LANES) {
        SK_SIMD
        for (int l = 0; l < SK_SUM_LANES; ++l) {
            const double x = (double)e[k + l];
            const double t = hi[l] + x;
            const double bp = t - hi[l];
            lo[l] += (hi[l] - (t - bp)) + (x - bp);
            hi[l] = t;
        }
    }
    sk_acc total = {0.0, 0.0};
    for (; k < n_classes; ++k)
        sk_acc_add(&total, (double)e[k]);
    for (int l = 0; l < SK_SUM_LANES; ++l) {
        sk_acc_add(&total, hi[l]);
        total.err += lo[l];
    }
    return (total.sum - 1.0) + total.err;
}

SK_INLINE int SK_NAME(sk_row_ignored)(const sk_problem *pb, sk_index row)
{
    return pb->target_kind == SK_TARGET_LABELS && pb->has_ignore_index && pb->labels[row] == pb->ignore_index;
}

/* Phases 1-4 for rows [row_begin, row_begin + n_rows). */
SK_INLINE void SK_NAME(sk_block_stats)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, sk_block *blk,
                                           int need_log1p)
{
    const sk_index n_classes = pb->n_classes;
    SK_REAL *strip = (SK_REAL *)blk->strip;
    for (sk_index i = 0; i < n_rows; ++i) {
        SK_REAL *d = strip + i * n_classes;
        if (SK_NAME(sk_row_ignored)(pb, row_begin + i)) {
            blk->status[i] = SK_ROW_IGNORED;
            blk->row_max[i] = 0.0;
            for (sk_index k = 0; k < n_classes; ++k)
                d[k] = 0;
            continue;
        }
        const SK_REAL *z = SK_CROW(pb->z, row_begin + i, n_classes);
        SK_REAL m = SK_NAME(sk_row_max)(z, n_classes);
        blk->row_max[i] = m;
        blk->status[i] = isfinite((double)m) ? SK_ROW_VALID : SK_ROW_INVALID;
        SK_SIMD
        for (sk_index k = 0; k < n_classes; ++k)
            d[k] = z[k] - m;
    }
    const sk_index n_strip = n_rows * n_classes;
    SK_SIMD
    for (sk_index j = 0; j < n_strip; ++j)
        strip[j] = SK_EXP(strip[j]);
    for (sk_index i = 0; i < n_rows; ++i) {
        double sum_excl = 0.0;
        if (blk->status[i] == SK_ROW_VALID) {
            sum_excl = SK_NAME(sk_sum_excl_argmax)(strip + i * n_classes, n_classes);
            if (!(sum_excl >= 0.0)) /* NaN in the row, or no class at the maximum */
                blk->status[i] = SK_ROW_INVALID;
        }
        blk->sum_excl[i] = blk->status[i] == SK_ROW_VALID ? sum_excl : 0.0;
    }
    if (need_log1p) {
        double *log1p_sum = blk->log1p_sum;
        const double *sum_excl = blk->sum_excl;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            log1p_sum[i] = sk_log1p_d(sum_excl[i]);
    }
}

SK_INLINE void SK_NAME(sk_fill)(SK_REAL *out, sk_index n, double value)
{
    for (sk_index k = 0; k < n; ++k)
        out[k] = (SK_REAL)value;
}

/* ---- softmax and log-softmax -------------------------------------------------------------- */

SK_DISPATCH static void SK_NAME(sk_softmax_block)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                  double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    sk_block blk = sk_block_layout(scratch, n_classes, n_rows);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, 0);
    const SK_REAL *strip = (const SK_REAL *)blk.strip;
    for (sk_index i = 0; i < n_rows; ++i) {
        SK_REAL *out = SK_ROW(pb->softmax, row_begin + i, n_classes);
        if (blk.status[i] != SK_ROW_VALID) {
            SK_NAME(sk_fill)(out, n_classes, NAN);
            continue;
        }
        const SK_REAL *e = strip + i * n_classes;
        const SK_REAL inv_sum = (SK_REAL)(1.0 / (1.0 + blk.sum_excl[i]));
        SK_SIMD
        for (sk_index k = 0; k < n_classes; ++k)
            out[k] = e[k] * inv_sum;
    }
}

SK_DISPATCH static void SK_NAME(sk_log_softmax_block)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                      double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    sk_block blk = sk_block_layout(scratch, n_classes, n_rows);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, 1);
    for (sk_index i = 0; i < n_rows; ++i) {
        const SK_REAL *z = SK_CROW(pb->z, row_begin + i, n_classes);
        SK_REAL *out = SK_ROW(pb->log_softmax, row_begin + i, n_classes);
        if (blk.status[i] != SK_ROW_VALID) {
            SK_NAME(sk_fill)(out, n_classes, NAN);
            continue;
        }
        const double m = blk.row_max[i], log_sum = blk.log1p_sum[i];
        /* (z_k - m) <= 0 and -log_sum <= 0: a sum of same-sign terms (out may alias z). */
        SK_SIMD
        for (sk_index k = 0; k < n_classes; ++k)
            out[k] = (SK_REAL)(((double)z[k] - m) - log_sum);
    }
}

/* ---- targets ------------------------------------------------------------------------------ */

/* a_k for one row: labels a = w (eps/K) cw + w cw_y (1 - eps) onehot(y);
 * soft targets a = w cw ((1 - eps) y + eps/K). */
SK_INLINE double SK_NAME(sk_target_weight)(const sk_problem *pb, sk_index row, double row_weight,
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
    sk_index argmax;          /* first arg-max; only found when needed (has_argmax) */
    int has_argmax;
    double sum_excl_argmax;   /* T */
    double sum;               /* S = 1 + T */
    double row_weight;        /* w */
    double label_coefficient; /* w cw_y (1 - eps), labels only */
    double a_argmax;          /* a_p */
    double c_excl;            /* sum_{k != p} a_k */
    double c;                 /* sum_k a_k (w without targets) */
    double dot;               /* sum_{a_k != 0} a_k (m - z_k) */
    int sparse_labels;        /* labels without smoothing: a is zero but at y */
    sk_index label;
    int label_is_max;         /* z_y = m: y can play the arg-max class */
} SK_NAME(sk_row_state);

SK_INLINE sk_index SK_NAME(sk_first_argmax)(const SK_REAL *z, sk_index n_classes, SK_REAL m)
{
    sk_index p = 0;
    while (p < n_classes - 1 && z[p] != m)
        ++p;
    return p;
}

/* Step 3: the target sums; labels without smoothing touch one class and need no arg-max. */
SK_INLINE void SK_NAME(sk_target_sums)(const sk_problem *pb, sk_index row, const SK_REAL *z,
                                           SK_NAME(sk_row_state) *st)
{
    if (pb->target_kind == SK_TARGET_NONE) {
        st->c = st->row_weight;
        return;
    }
    if (st->sparse_labels) {
        const double alpha = st->label_coefficient;
        st->a_argmax = st->label_is_max ? alpha : 0.0;
        st->c_excl = st->label_is_max ? 0.0 : alpha;
        st->dot = alpha != 0.0 ? alpha * (st->row_max - (double)z[st->label]) : 0.0;
    } else {
        const sk_index p = st->argmax;
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

/* ---- outputs ------------------------------------------------------------------------------ */

SK_INLINE void SK_NAME(sk_write_gradient)(const sk_problem *pb, sk_index row, const SK_NAME(sk_row_state) *st,
                                              const SK_REAL *e, const double *s, SK_REAL *g)
{
    const sk_index n_classes = pb->n_classes;
    const double c = st->c, D = pb->denominator;
    if (st->sparse_labels) {
        /* g_k = c s_k / D, one multiply per class; then the label's class. */
        const SK_REAL scale = (SK_REAL)((c / st->sum) / D);
        SK_SIMD
        for (sk_index k = 0; k < n_classes; ++k)
            g[k] = e[k] * scale;
        const sk_index y = st->label;
        if (st->label_is_max) /* g_y = -a_y (1 - s_y) = -a_y T / S */
            g[y] = (SK_REAL)(-(st->label_coefficient * st->sum_excl_argmax / st->sum) / D);
        else /* s_y <= 1/2 here: c s_y - a_y loses at most one bit */
            g[y] = (SK_REAL)((c * s[y] - st->label_coefficient) / D);
        return;
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        double a = SK_NAME(sk_target_weight)(pb, row, st->row_weight, st->label_coefficient, k);
        g[k] = (SK_REAL)((c * s[k] - a) / D);
    }
    const sk_index p = st->argmax;
    g[p] = (SK_REAL)((st->c_excl / st->sum - st->a_argmax * st->sum_excl_argmax / st->sum) / D);
}

/* 1 - s_k without cancellation (step 5). */
SK_INLINE double SK_NAME(sk_one_minus_s)(const SK_NAME(sk_row_state) *st, SK_REAL z_k, SK_REAL e_k)
{
    return z_k == (SK_REAL)st->row_max ? st->sum_excl_argmax / st->sum : (st->sum - (double)e_k) / st->sum;
}

SK_INLINE void SK_NAME(sk_write_hessian)(const sk_problem *pb, const SK_NAME(sk_row_state) *st,
                                             const SK_REAL *z, const SK_REAL *e, const double *s,
                                             double *minus_cs, double coef, SK_REAL *h)
{
    const sk_index n_classes = pb->n_classes;
    for (sk_index k = 0; k < n_classes; ++k)
        minus_cs[k] = -(coef * s[k]);
    /* H_ij = minus_cs[max(i, j)] * s[min(i, j)]: every layout stores bitwise the same numbers. */
    for (sk_index j = 0; j < n_classes; ++j) {
        const double diag = (coef * s[j]) * SK_NAME(sk_one_minus_s)(st, z[j], e[j]);
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

SK_INLINE void SK_NAME(sk_write_hessian_vector_product)(const sk_problem *pb, sk_index row,
                                                            const SK_NAME(sk_row_state) *st, const SK_REAL *e,
                                                            const double *s, double coef, SK_REAL *hv)
{
    const sk_index n_classes = pb->n_classes, p = st->argmax;
    const SK_REAL *v = SK_CROW(pb->v, row, n_classes);
    const double v_p = v[p];
    sk_lanes ev, ediff;
    sk_lanes_init(&ev);
    sk_lanes_init(&ediff);
    for (sk_index j = 0; j < n_classes; ++j) {
        double ej = j == p ? 0.0 : (double)e[j];
        sk_lanes_add(&ev, j, ej * (double)v[j]);
        sk_lanes_add(&ediff, j, ej * (v_p - (double)v[j]));
    }
    const double sigma = (v_p + sk_lanes_value(&ev)) / st->sum;
    for (sk_index k = 0; k < n_classes; ++k)
        hv[k] = (SK_REAL)((coef * s[k]) * ((double)v[k] - sigma));
    hv[p] = (SK_REAL)((coef * s[p]) * (sk_lanes_value(&ediff) / st->sum));
}

SK_INLINE void SK_NAME(sk_fill_target_row)(const sk_problem *pb, sk_index row, double fill)
{
    const sk_index n_classes = pb->n_classes;
    if (pb->row_loss)
        pb->row_loss[row] = fill;
    if (pb->gradient)
        SK_NAME(sk_fill)(SK_ROW(pb->gradient, row, n_classes), n_classes, fill);
    if (pb->hessian)
        SK_NAME(sk_fill)(SK_ROW(pb->hessian, row, pb->hessian_width), pb->hessian_width, fill);
    if (pb->hessian_diagonal)
        SK_NAME(sk_fill)(SK_ROW(pb->hessian_diagonal, row, n_classes), n_classes, fill);
    if (pb->hessian_vector_product)
        SK_NAME(sk_fill)(SK_ROW(pb->hessian_vector_product, row, n_classes), n_classes, fill);
}

/* Phase 5 of a target call for one valid row. */
SK_INLINE void SK_NAME(sk_target_row)(const sk_problem *pb, sk_index row, const sk_block *blk, sk_index i,
                                          double *s, double *minus_cs)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    const SK_REAL *e = (const SK_REAL *)blk->strip + i * n_classes;
    SK_NAME(sk_row_state) st;
    st.row_max = blk->row_max[i];
    st.sum_excl_argmax = blk->sum_excl[i];
    st.sum = 1.0 + st.sum_excl_argmax;
    st.row_weight = pb->sample_weight ? (double)((const SK_REAL *)pb->sample_weight)[row] : 1.0;
    st.sparse_labels = pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing == 0.0;
    st.label_coefficient = 0.0;
    st.label = 0;
    st.label_is_max = 0;
    if (pb->target_kind == SK_TARGET_LABELS) {
        const SK_REAL *cw = (const SK_REAL *)pb->class_weight;
        st.label = pb->labels[row];
        st.label_is_max = z[st.label] == (SK_REAL)st.row_max;
        st.label_coefficient = (st.row_weight * (cw ? (double)cw[st.label] : 1.0)) * pb->one_minus_eps;
    }
    st.has_argmax = !st.sparse_labels || pb->hessian_vector_product;
    st.argmax = st.has_argmax ? SK_NAME(sk_first_argmax)(z, n_classes, (SK_REAL)st.row_max) : 0;
    if (st.sparse_labels && st.has_argmax && st.label_is_max)
        st.argmax = st.label; /* any arg-max can play p; the label's keeps the sums consistent */
    SK_NAME(sk_target_sums)(pb, row, z, &st);
    if (pb->row_loss)
        pb->row_loss[row] = st.dot + st.c * blk->log1p_sum[i];
    /* The softmax vector is needed by everything but the labels-only gradient. */
    if (pb->hessian || pb->hessian_diagonal || pb->hessian_vector_product || !st.sparse_labels) {
        SK_SIMD
        for (sk_index k = 0; k < n_classes; ++k)
            s[k] = (double)e[k] / st.sum;
    } else {
        s[st.label] = (double)e[st.label] / st.sum;
    }
    const double coef = st.c / pb->denominator;
    if (pb->hessian)
        SK_NAME(sk_write_hessian)(pb, &st, z, e, s, minus_cs, coef, SK_ROW(pb->hessian, row, pb->hessian_width));
    if (pb->hessian_diagonal) {
        SK_REAL *hd = SK_ROW(pb->hessian_diagonal, row, n_classes);
        for (sk_index k = 0; k < n_classes; ++k)
            hd[k] = (SK_REAL)((coef * s[k]) * SK_NAME(sk_one_minus_s)(&st, z[k], e[k]));
    }
    if (pb->hessian_vector_product)
        SK_NAME(sk_write_hessian_vector_product)(pb, row, &st, e, s, coef,
                                                 SK_ROW(pb->hessian_vector_product, row, n_classes));
    /* Last: the gradient may overwrite z (in place), which the outputs above still read. */
    if (pb->gradient)
        SK_NAME(sk_write_gradient)(pb, row, &st, e, s, SK_ROW(pb->gradient, row, n_classes));
}

/* Everything a target call asks for, for rows [row_begin, row_end); ignored rows are zero
 * and not read, invalid rows NaN. */
SK_DISPATCH static void SK_NAME(sk_target_block)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                 double *scratch)
{
    const sk_index n_rows = row_end - row_begin;
    sk_block blk = sk_block_layout(scratch, pb->n_classes, n_rows);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, pb->row_loss != NULL);
    for (sk_index i = 0; i < n_rows; ++i) {
        const sk_index row = row_begin + i;
        if (blk.status[i] == SK_ROW_VALID)
            SK_NAME(sk_target_row)(pb, row, &blk, i, blk.s, blk.minus_cs);
        else
            SK_NAME(sk_fill_target_row)(pb, row, blk.status[i] == SK_ROW_IGNORED ? 0.0 : NAN);
    }
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
            if (SK_NAME(sk_row_ignored)(pb, i))
                continue;
            if (cw)
                term *= (double)cw[pb->labels[i]];
        }
        sk_lanes_add(&acc, i, term);
    }
    return sk_lanes_value(&acc);
}

#undef SK_ROW
#undef SK_CROW
#undef SK_EXP
