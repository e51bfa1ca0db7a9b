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
 *   8. sigma = (v_p + sum_{j != p} e_j v_j) / S; (Hv)_k = c (s_k (v_k - sigma)) for k != p,
 *      and v_p - sigma = sum_{j != p} e_j (v_p - v_j) / S for the arg-max class.
 *   9. "mean": the row weight w becomes w / D before anything else, so every output
 *      (and each row's share of the loss) is already divided by D.
 *
 * Rows are processed in blocks so that the expensive exp runs over one contiguous
 * strip (SIMD lanes stay full even for K = 10) and log1p runs over the block's rows:
 *   phase 1, per row: m and the strip d = z - m (ignored rows are not read);
 *   phase 2, the strip: e = exp(d);
 *   phase 3, per row: T, and whether the row is valid;
 *   phase 4, the rows: log1p(T), when a loss or log-softmax needs it;
 *   phase 5, per row: the outputs (row_outputs_impl.h).
 * Short rows (K <= SK_SMALL_CLASSES) do phases 1-3 on the block transposed to columns,
 * one SIMD lane per row (sk_block_stats_columns).
 * float data computes exp in float (16 AVX-512 lanes) and everything else in double.
 *
 * Extreme rows, whose finite logits span more than SK_EXTREME_GAP, would have e_k (and
 * s_k) in or near the subnormal range, where a product like c s_k (v_k - sigma) loses
 * digits the contract promises (its room for subnormal results is a few of their ulps).
 * Such rows take a path in a wider type (double for float data, long double for double
 * data, where the platform's long double is wider), exact to the last bit that matters.
 * Masked classes (-inf) have s = 0 exactly and do not count. For float data the same
 * double path serves gradients with dense targets (soft, or label smoothing), where
 * c s_k - a_k may cancel and float's exp would cost digits the contract promises.
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
        for (int l = 0; l < SK_SUM_LANES; ++l)
            sk_two_sum_add(&hi[l], &lo[l], (double)e[k + l]);
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

#if SK_IS_DOUBLE
#define SK_EXTREME_GAP 600.0 /* exp(-600) = 2.6e-261: far from double's subnormals */
#else
#define SK_EXTREME_GAP 80.0 /* exp(-80) = 1.8e-35: far from float's subnormals */
#endif

/* The smallest finite logit (+inf when there is none). */
SK_INLINE SK_REAL SK_NAME(sk_row_min_finite)(const SK_REAL *z, sk_index n_classes)
{
    SK_REAL lo = (SK_REAL)INFINITY;
    SK_SIMD_REDUCE(min : lo)
    for (sk_index k = 0; k < n_classes; ++k)
        lo = z[k] < lo && z[k] != (SK_REAL)-INFINITY ? z[k] : lo;
    return lo;
}

SK_INLINE int SK_NAME(sk_row_ignored)(const sk_problem *pb, sk_index row)
{
    return pb->target_kind == SK_TARGET_LABELS && pb->has_ignore_index && pb->labels[row] == pb->ignore_index;
}

/* Phases 1-3 row by row: for rows long enough to fill the SIMD lanes. */
SK_INLINE void SK_NAME(sk_block_stats_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, sk_block *blk,
                                            int detect_extreme)
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
        if (detect_extreme && blk->status[i] == SK_ROW_VALID &&
            (double)SK_NAME(sk_row_min_finite)(z, n_classes) - (double)m < -SK_EXTREME_GAP)
            blk->status[i] = SK_ROW_EXTREME;
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
        if (blk->status[i] != SK_ROW_INVALID && blk->status[i] != SK_ROW_IGNORED) {
            sum_excl = SK_NAME(sk_sum_excl_argmax)(strip + i * n_classes, n_classes);
            if (!(sum_excl >= 0.0)) /* NaN in the row, or no class at the maximum */
                blk->status[i] = SK_ROW_INVALID;
        }
        blk->sum_excl[i] = blk->status[i] == SK_ROW_INVALID || blk->status[i] == SK_ROW_IGNORED ? 0.0 : sum_excl;
    }
}

/* Phases 1-3 for short rows (K <= SK_SMALL_CLASSES): row by row, a row would use a
 * fraction of a SIMD register and spend its time in horizontal reductions. Instead the
 * block is transposed to columns of classes, so that every step is an elementwise
 * operation across the block's rows (one SIMD lane per row), then transposed back. */
SK_INLINE void SK_NAME(sk_block_stats_columns)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                               sk_block *blk, int detect_extreme)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = (const SK_REAL *)pb->z + row_begin * n_classes;
    SK_REAL *strip = (SK_REAL *)blk->strip;
    SK_REAL *columns = (SK_REAL *)blk->columns;             /* columns[k * n_rows + i] */
    SK_REAL *row_max = columns + n_classes * n_rows;        /* n_rows each */
    SK_REAL *row_min = row_max + n_rows;
    double *hi = (double *)blk->columns_sums, *lo = hi + n_rows;
    unsigned char *status = blk->status;
    for (sk_index i = 0; i < n_rows; ++i)
        status[i] = SK_NAME(sk_row_ignored)(pb, row_begin + i) ? SK_ROW_IGNORED : SK_ROW_VALID;
    for (sk_index i = 0; i < n_rows; ++i) /* ignored rows are not read */
        for (sk_index k = 0; k < n_classes; ++k)
            columns[k * n_rows + i] = status[i] == SK_ROW_IGNORED ? (SK_REAL)0 : z[i * n_classes + k];
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        row_max[i] = (SK_REAL)-INFINITY;
        row_min[i] = (SK_REAL)INFINITY;
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *col = columns + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            row_max[i] = col[i] > row_max[i] ? col[i] : row_max[i];
            row_min[i] = col[i] < row_min[i] && col[i] != (SK_REAL)-INFINITY ? col[i] : row_min[i];
        }
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        SK_REAL *col = columns + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            col[i] = SK_EXP(col[i] - row_max[i]);
    }
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i)
        hi[i] = lo[i] = 0.0;
    for (sk_index k = 0; k < n_classes; ++k) { /* TwoSum, one accumulator per row */
        const SK_REAL *col = columns + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            sk_two_sum_add(&hi[i], &lo[i], (double)col[i]);
    }
    for (sk_index i = 0; i < n_rows; ++i) {
        const double m = (double)row_max[i];
        const double sum_excl = (hi[i] - 1.0) + lo[i]; /* as in sk_sum_excl_argmax */
        if (status[i] == SK_ROW_VALID && !(isfinite(m) && sum_excl >= 0.0))
            status[i] = SK_ROW_INVALID;
        if (detect_extreme && status[i] == SK_ROW_VALID && (double)row_min[i] - m < -SK_EXTREME_GAP)
            status[i] = SK_ROW_EXTREME;
        blk->row_max[i] = status[i] == SK_ROW_IGNORED ? 0.0 : m;
        blk->sum_excl[i] = status[i] == SK_ROW_INVALID || status[i] == SK_ROW_IGNORED ? 0.0 : sum_excl;
    }
    for (sk_index i = 0; i < n_rows; ++i)
        for (sk_index k = 0; k < n_classes; ++k)
            strip[i * n_classes + k] = columns[k * n_rows + i];
}

/* Phases 1-4 for rows [row_begin, row_begin + n_rows). */
SK_INLINE void SK_NAME(sk_block_stats)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, sk_block *blk,
                                       int need_log1p, int detect_extreme)
{
    if (pb->n_classes <= SK_SMALL_CLASSES)
        SK_NAME(sk_block_stats_columns)(pb, row_begin, n_rows, blk, detect_extreme);
    else
        SK_NAME(sk_block_stats_rows)(pb, row_begin, n_rows, blk, detect_extreme);
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
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, 0, 0);
    const SK_REAL *strip = (const SK_REAL *)blk.strip;
    for (sk_index i = 0; i < n_rows; ++i) {
        SK_REAL *out = SK_ROW(pb->softmax, row_begin + i, n_classes);
        if (blk.status[i] == SK_ROW_INVALID) {
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
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, 1, 0);
    for (sk_index i = 0; i < n_rows; ++i) {
        const SK_REAL *z = SK_CROW(pb->z, row_begin + i, n_classes);
        SK_REAL *out = SK_ROW(pb->log_softmax, row_begin + i, n_classes);
        if (blk.status[i] == SK_ROW_INVALID) {
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

SK_INLINE sk_index SK_NAME(sk_first_argmax)(const SK_REAL *z, sk_index n_classes, SK_REAL m)
{
    sk_index p = 0;
    while (p < n_classes - 1 && z[p] != m)
        ++p;
    return p;
}

#define SK_MATH double
#define SK_MNAME(name) SK_NAME(name##_md)
#include "row_outputs_impl.h"
#undef SK_MATH
#undef SK_MNAME

#if SK_IS_DOUBLE
#define SK_MATH long double
#define SK_MNAME(name) SK_NAME(name##_ml)
#include "row_outputs_impl.h"
#undef SK_MATH
#undef SK_MNAME
#define SK_WIDE long double
#define SK_WIDE_NAME(name) SK_NAME(name##_ml)
#define SK_WIDE_EXP expl
#define SK_WIDE_LOG1P log1pl
#else
#define SK_WIDE double
#define SK_WIDE_NAME(name) SK_NAME(name##_md)
#define SK_WIDE_EXP sk_exp_d
#define SK_WIDE_LOG1P sk_log1p_d
#endif

/* A row computed all in SK_WIDE: the extreme rows, and for float data the rows whose
 * gradient subtracts dense targets (where float's exp would cost digits). */
SK_INLINE void SK_NAME(sk_target_row_wide)(const sk_problem *pb, sk_index row, SK_REAL row_max, void *work)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = (const SK_REAL *)pb->z + row * n_classes;
    SK_WIDE *e = (SK_WIDE *)work, *s = e + n_classes, *minus_cs = s + n_classes;
    SK_SIMD
    for (sk_index k = 0; k < n_classes; ++k)
        e[k] = SK_WIDE_EXP((SK_WIDE)z[k] - (SK_WIDE)row_max);
    SK_WIDE_NAME(sk_macc) total = {0, 0};
    for (sk_index k = 0; k < n_classes; ++k)
        SK_WIDE_NAME(sk_macc_add)(&total, e[k]);
    const SK_WIDE sum_excl = (total.sum - 1) + total.err; /* as in sk_sum_excl_argmax */
    SK_WIDE_NAME(sk_target_outputs)(pb, row, row_max, sum_excl, SK_WIDE_LOG1P(sum_excl), e, s, minus_cs);
}

SK_INLINE void SK_NAME(sk_fill_target_row)(const sk_problem *pb, sk_index row, double fill)
{
    const sk_index n_classes = pb->n_classes;
    if (pb->row_loss)
        pb->row_loss[row] = fill;
    if (pb->gradient)
        SK_NAME(sk_fill)((SK_REAL *)pb->gradient + row * n_classes, n_classes, fill);
    if (pb->hessian)
        SK_NAME(sk_fill)((SK_REAL *)pb->hessian + row * pb->hessian_width, pb->hessian_width, fill);
    if (pb->hessian_diagonal)
        SK_NAME(sk_fill)((SK_REAL *)pb->hessian_diagonal + row * n_classes, n_classes, fill);
    if (pb->hessian_vector_product)
        SK_NAME(sk_fill)((SK_REAL *)pb->hessian_vector_product + row * n_classes, n_classes, fill);
}

/* Everything a target call asks for, for rows [row_begin, row_end); ignored rows are zero
 * and not read, invalid rows NaN. */
SK_DISPATCH static void SK_NAME(sk_target_block)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                 double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    sk_block blk = sk_block_layout(scratch, n_classes, n_rows);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, pb->row_loss != NULL, 1);
    double *e = (double *)blk.row_work, *s = e + n_classes, *minus_cs = s + n_classes;
    /* float data: a gradient c s_k - a_k with dense targets needs s_k to double precision. */
    const int dense_gradient = !SK_IS_DOUBLE && pb->gradient &&
                               (pb->target_kind == SK_TARGET_SOFT ||
                                (pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing != 0.0));
    for (sk_index i = 0; i < n_rows; ++i) {
        const sk_index row = row_begin + i;
        const SK_REAL m = (SK_REAL)blk.row_max[i];
        const SK_REAL *e_strip = (const SK_REAL *)blk.strip + i * n_classes;
        const int status = blk.status[i] == SK_ROW_VALID && dense_gradient ? SK_ROW_EXTREME : blk.status[i];
        switch (status) {
        case SK_ROW_VALID:
#if SK_IS_DOUBLE
            e = (double *)e_strip;
#else
            SK_SIMD
            for (sk_index k = 0; k < n_classes; ++k)
                e[k] = (double)e_strip[k];
#endif
            SK_NAME(sk_target_outputs_md)(pb, row, m, blk.sum_excl[i], blk.log1p_sum[i], e, s, minus_cs);
            break;
        case SK_ROW_EXTREME:
            SK_NAME(sk_target_row_wide)(pb, row, m, blk.row_work);
            break;
        default:
            SK_NAME(sk_fill_target_row)(pb, row, status == SK_ROW_IGNORED ? 0.0 : NAN);
        }
    }
}

#undef SK_WIDE
#undef SK_WIDE_NAME
#undef SK_WIDE_EXP
#undef SK_WIDE_LOG1P

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
#undef SK_EXTREME_GAP
