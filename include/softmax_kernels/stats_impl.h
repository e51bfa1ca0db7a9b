/* softmax_kernels, stamped per data type: phases 1-4 of the recipe for a block of rows, the
 * row statistics every output needs: m = max z, e_k = exp(z_k - m) (in the strip, and for
 * short rows in the columns), T = sum_{k != p} e_k, log1p(T) and each row's status.
 * Long rows are read a vector at a time into lane arrays; short rows are transposed to
 * columns and processed one SIMD lane per row.
 */

#ifndef SK_REAL
#error "stats_impl.h is stamped by kernels.h only"
#endif

/* Rows whose finite logits span more than this have e_k near the subnormal range; target
 * calls recompute them in a wider type (the recipe in kernels.h). */
#if SK_IS_DOUBLE
#define SK_EXTREME_GAP 600.0 /* exp(-600) = 2.6e-261: far from double's subnormals */
#else
#define SK_EXTREME_GAP 80.0 /* exp(-80) = 1.8e-35: far from float's subnormals */
#endif

/* exp(z - m) for the statistics: sk_exp_nonpositive where what it flushes to 0 is not needed
 * (target calls recompute extreme rows in a wider type; other calls check that it flushed
 * nothing, SK_FLUSH_THRESHOLD), else sk_exp. The two round every normal result alike. */
#define SK_EXP_ROW(x, flushing) ((flushing) ? SK_NAME(sk_exp_nonpositive)(x) : SK_NAME(sk_exp)(x))

/* ---- the sum T ------------------------------------------------------------------------------
 * T is accumulated from e_k and whether z_k = m (the arg-max and its ties, where e_k = 1
 * exactly), keeping every digit of a tiny T, in one of two ways:
 *   float data: T = sum_{z_k < m} e_k + (ties - 1), the sum in double. The terms are positive,
 *     so the relative error is at most K 2^-53, invisible after rounding to float; the sum
 *     needs no compensation (and has no dependency chain: it vectorises freely).
 *   double data: all e_k (the ones included) in compensated lanes, each started at 1, so that
 *     every term e_k <= 1 is at most the running sum and Fast2Sum captures each rounding error
 *     exactly in three operations. Subtracting the lanes' starting ones and the arg-max's 1 at
 *     the end is exact (the sum is at least n_starts + 1 and below 2^52), and the carried
 *     error then restores T to within an ulp or so.
 * sk_excl_sums points at one accumulator per lane (long rows) or per row (short rows). The
 * SIMD loops add to them with the macro SK_EXCL_ADD on a struct declared outside the loop:
 * an inline function's struct parameter inside an OpenMP SIMD loop body is a private copy
 * per lane, kept in memory, which cost float calls 10-20%. */
#if SK_IS_DOUBLE
/* Adds e_k (at_max: whether z_k = m) to accumulator i of the sk_excl_sums t. */
#define SK_EXCL_ADD(t, i, e, at_max) ((void)(at_max), sk_fast_two_sum_add(&(t).sum[i], &(t).error[i], (e)))
#define SK_EXCL_SIMD SK_SIMD_LANES /* the directive of a loop adding to compensated lanes */
#define SK_EXCL_ROWS_SIMD SK_SIMD  /* the directive of a loop adding to one sum per row */
typedef struct {
    double *sum;   /* the e_k, each lane started at 1 */
    double *error; /* the exact rounding errors of the additions */
} SK_NAME(sk_excl_sums);
typedef int64_t SK_NAME(sk_lane_flag); /* a flag as wide as a lane of doubles */

SK_INLINE void SK_NAME(sk_excl_start)(SK_NAME(sk_excl_sums) t, sk_index i)
{
    t.sum[i] = 1.0;
    t.error[i] = 0.0;
}

SK_INLINE void SK_NAME(sk_excl_merge)(SK_NAME(sk_excl_sums) t, sk_index i, sk_index from)
{
    sk_two_sum_add(&t.sum[i], &t.error[i], t.sum[from]);
    t.error[i] += t.error[from];
}

SK_INLINE double SK_NAME(sk_excl_value)(SK_NAME(sk_excl_sums) t, sk_index i, sk_index n_starts)
{
    return (t.sum[i] - (double)(n_starts + 1)) + t.error[i];
}
#else
#define SK_EXCL_ADD(t, i, e, at_max) ((t).sum[i] += (at_max) ? 0.0 : (e), (t).ties[i] += (at_max) ? 1 : 0)
/* The directives of loops adding to the lanes and to one sum per row: 16 floats to a vector (a
 * whole AVX-512 vector, SK_ROW_LANES), where clang would run 8, sized by the double sums. */
#define SK_EXCL_SIMD SK_SIMD SK_CLANG_VECTOR_WIDTH(16)
#define SK_EXCL_ROWS_SIMD SK_SIMD SK_CLANG_VECTOR_WIDTH(16)
typedef struct {
    double *sum;   /* the e_k below the maximum */
    int32_t *ties; /* the classes at the maximum (16 to a vector) */
} SK_NAME(sk_excl_sums);
typedef int32_t SK_NAME(sk_lane_flag); /* a flag as wide as a lane of floats */

SK_INLINE void SK_NAME(sk_excl_start)(SK_NAME(sk_excl_sums) t, sk_index i)
{
    t.sum[i] = 0.0;
    t.ties[i] = 0;
}

SK_INLINE void SK_NAME(sk_excl_merge)(SK_NAME(sk_excl_sums) t, sk_index i, sk_index from)
{
    t.sum[i] += t.sum[from];
    t.ties[i] += t.ties[from];
}

SK_INLINE double SK_NAME(sk_excl_value)(SK_NAME(sk_excl_sums) t, sk_index i, sk_index n_starts)
{
    (void)n_starts;
    return t.sum[i] + (double)(t.ties[i] - 1);
}
#endif

SK_INLINE sk_index SK_NAME(sk_first_argmax)(const SK_REAL *z, sk_index n_classes, SK_REAL m)
{
    sk_index p = 0;
    while (p < n_classes - 1 && z[p] != m)
        ++p;
    return p;
}

/* Whether logit x (finite, or +inf for none) lies more than SK_EXTREME_GAP below the row's
 * maximum m: the rows sk_row_status calls extreme. In double, where x - m rounds the same way
 * as m - x, so that testing every finite logit equals testing the smallest one. */
SK_INLINE int SK_NAME(sk_far_below)(double x, double m)
{
    return x - m < -SK_EXTREME_GAP;
}

/* Lanes flag the logits x with x != -inf and fl(x - m) below a threshold: one of two. */
#if SK_IS_DOUBLE
/* Target calls: the test of sk_far_below itself (x - m in double). */
#define SK_FAR_THRESHOLD (-SK_EXTREME_GAP)
#else
/* Target calls: a candidate for sk_far_below, with a margin of 1 (fl(x - m) errs by at most
 * 2^-24 of itself, so fl(x - m) >= -(SK_EXTREME_GAP - 1) implies x - m > -SK_EXTREME_GAP),
 * which saves two conversions per value; rows with a candidate (rare) are tested again exactly. */
#define SK_FAR_THRESHOLD ((SK_REAL)(1.0 - SK_EXTREME_GAP))
#endif
/* Other calls: the arguments that sk_exp_nonpositive flushes to 0, though exp is not 0 there
 * (rows with one are computed again with sk_exp, which keeps every digit). */
#define SK_FLUSH_THRESHOLD SK_NAME(SK_EXP_NONPOSITIVE_MIN)

/* Whether sk_exp_nonpositive gives exp(z - m) for every logit of a row whose maximum is m and
 * whose smallest finite logit is `lowest` (short rows know it before their exp): fl(z - m) >=
 * fl(lowest - m) for every finite z (rounding is monotonic), so none is flushed. */
SK_INLINE int SK_NAME(sk_flush_free)(SK_REAL lowest, SK_REAL m)
{
    return lowest - m >= SK_FLUSH_THRESHOLD;
}

/* ---- long rows: lane arrays ------------------------------------------------------------------
 * Rows longer than SK_SMALL_CLASSES are read SK_ROW_LANES values at a time into lane arrays
 * that the compiler keeps in vector registers (one AVX-512 register, two AVX2 or four SSE2),
 * reduced across the lanes by a tree at the end of the row. The last, partial chunk overlaps
 * the one before it, so no scalar remainder loop runs (docs/performance-notes.md, "lane arrays"). */
#define SK_ROW_LANES (64 / (sk_index)sizeof(SK_REAL))
#if SK_SMALL_CLASSES < 16
#error "sk_row_max and sk_exp_row need rows of at least SK_ROW_LANES values"
#endif

/* The tree over the lanes, one level per call with a constant width (the last a no-op for
 * double's 8 lanes), so that each level compiles to a few vector operations. */
#define SK_LANE_TREE(LEVEL) LEVEL(SK_ROW_LANES / 2) LEVEL(SK_ROW_LANES / 4) LEVEL(SK_ROW_LANES / 8) \
    LEVEL(SK_ROW_LANES / 16)
/* Four levels cover at most 16 lanes (a compile-time check: sizeof is not known to #if). */
typedef char SK_NAME(sk_lane_tree_covers_the_lanes)[SK_ROW_LANES <= 16 ? 1 : -1];

/* One chunk of sk_row_max. A NaN never wins a comparison; it is caught later because
 * exp(NaN - m) poisons T. Revisiting values (the overlapping last chunk) changes nothing. */
SK_INLINE void SK_NAME(sk_max_chunk)(const SK_REAL *z, SK_REAL *hi)
{
    SK_SIMD
    for (sk_index l = 0; l < SK_ROW_LANES; ++l)
        hi[l] = z[l] > hi[l] ? z[l] : hi[l];
}

SK_INLINE void SK_NAME(sk_max_level)(SK_REAL *hi, sk_index width)
{
    for (sk_index l = 0; l < width; ++l)
        hi[l] = hi[l + width] > hi[l] ? hi[l + width] : hi[l];
}

/* m = max z; -inf for a row of -inf (and NaN). */
SK_INLINE SK_REAL SK_NAME(sk_row_max)(const SK_REAL *z, sk_index n_classes)
{
    SK_LANE_ALIGNED SK_REAL hi[SK_ROW_LANES];
    for (sk_index l = 0; l < SK_ROW_LANES; ++l)
        hi[l] = (SK_REAL)-INFINITY;
    sk_index k = 0;
    for (; k + SK_ROW_LANES <= n_classes; k += SK_ROW_LANES)
        SK_NAME(sk_max_chunk)(z + k, hi);
    if (k < n_classes)
        SK_NAME(sk_max_chunk)(z + n_classes - SK_ROW_LANES, hi);
#define SK_LEVEL(width) SK_NAME(sk_max_level)(hi, width);
    SK_LANE_TREE(SK_LEVEL)
#undef SK_LEVEL
    return hi[0];
}

/* Declares the lane arrays of sk_exp_row for T (`name`, an sk_excl_sums over them) and the
 * lanes' flags (`name`_far). */
#if SK_IS_DOUBLE
#define SK_EXP_LANES(name)                                                                          \
    SK_LANE_ALIGNED double name##_sum[SK_ROW_LANES], name##_error[SK_ROW_LANES];                  \
    SK_LANE_ALIGNED SK_NAME(sk_lane_flag) name##_far[SK_ROW_LANES];                               \
    const SK_NAME(sk_excl_sums) name = {name##_sum, name##_error}
#else
#define SK_EXP_LANES(name)                                                                          \
    SK_LANE_ALIGNED double name##_sum[SK_ROW_LANES];                                              \
    SK_LANE_ALIGNED int32_t name##_ties[SK_ROW_LANES];                                            \
    SK_LANE_ALIGNED SK_NAME(sk_lane_flag) name##_far[SK_ROW_LANES];                               \
    const SK_NAME(sk_excl_sums) name = {name##_sum, name##_ties}
#endif

/* One chunk of sk_exp_row: e = exp(z - m) for all SK_ROW_LANES values, added to T from lane
 * `first` on (the lanes before it were added by the previous chunk), and each lane's flag of
 * a finite logit with fl(x - m) below `threshold`. */
SK_INLINE void SK_NAME(sk_exp_chunk)(const SK_REAL *z, SK_REAL m, SK_REAL *e, SK_NAME(sk_excl_sums) sums,
                                     SK_NAME(sk_lane_flag) *far, sk_index first, int flushing, SK_REAL threshold)
{
    SK_EXCL_SIMD
    for (sk_index l = 0; l < SK_ROW_LANES; ++l) {
        const SK_REAL x = z[l], value = SK_EXP_ROW(x - m, flushing);
        e[l] = value;
        SK_EXCL_ADD(sums, l, (double)(l >= first ? value : (SK_REAL)0), (l >= first) & (x == m));
        far[l] |= (x != (SK_REAL)-INFINITY) & (x - m < threshold);
    }
}

/* The chunks of a row from fresh lanes; whether a lane flagged a logit. Compilers vectorise
 * the chunk's loop where `flushing` is a constant, so each call passes one. */
SK_INLINE int SK_NAME(sk_exp_pass)(const SK_REAL *z, SK_REAL m, SK_REAL *e, sk_index n_classes,
                                   SK_NAME(sk_excl_sums) sums, SK_NAME(sk_lane_flag) *far, int flushing,
                                   SK_REAL threshold)
{
    for (sk_index l = 0; l < SK_ROW_LANES; ++l) {
        SK_NAME(sk_excl_start)(sums, l);
        far[l] = 0;
    }
    sk_index k = 0;
    for (; k + SK_ROW_LANES <= n_classes; k += SK_ROW_LANES)
        SK_NAME(sk_exp_chunk)(z + k, m, e + k, sums, far, 0, flushing, threshold);
    if (k < n_classes) {
        const sk_index start = n_classes - SK_ROW_LANES;
        SK_NAME(sk_exp_chunk)(z + start, m, e + start, sums, far, k - start, flushing, threshold);
    }
    SK_NAME(sk_lane_flag) any = 0;
    for (sk_index l = 0; l < SK_ROW_LANES; ++l)
        any |= far[l];
    return any != 0;
}

SK_INLINE void SK_NAME(sk_sum_level)(SK_NAME(sk_excl_sums) sums, sk_index width)
{
    for (sk_index l = 0; l < width; ++l)
        SK_NAME(sk_excl_merge)(sums, l, l + width);
}

/* Whether a finite logit of the row lies more than SK_EXTREME_GAP below m, given that a lane
 * found a candidate (float data: confirmed by the exact test over the row again). */
SK_INLINE int SK_NAME(sk_row_far)(const SK_REAL *z, SK_REAL m, sk_index n_classes)
{
#if SK_IS_DOUBLE
    (void)z, (void)m, (void)n_classes;
    return 1;
#else
    int any_far = 0;
    for (sk_index j = 0; j < n_classes; ++j)
        any_far |= (z[j] != (SK_REAL)-INFINITY) & SK_NAME(sk_far_below)((double)z[j], (double)m);
    return any_far;
#endif
}

/* e_k = exp(z_k - m) into e, and T. Target calls (extreme_rows_recomputed) take the cheaper
 * exp, and *far_out tells whether a finite logit lies more than SK_EXTREME_GAP below m; other
 * calls take it too, and compute a row again with sk_exp where it flushed an exp that is not
 * 0 (*far_out is then 0). The summation order is fixed by the code (not by the threads or the
 * instruction set), so the result does not depend on the threads; where the CPU has FMA the
 * compiler may fuse a multiply and an add, so the last bits may differ between instruction
 * sets, each within the accuracy bound (tools/isa_builds.sh tests them). */
SK_INLINE double SK_NAME(sk_exp_row)(const SK_REAL *z, SK_REAL m, SK_REAL *e, sk_index n_classes,
                                     int extreme_rows_recomputed, int *far_out)
{
    SK_EXP_LANES(lanes);
    *far_out = 0;
    if (extreme_rows_recomputed) {
        if (SK_NAME(sk_exp_pass)(z, m, e, n_classes, lanes, lanes_far, 1, SK_FAR_THRESHOLD))
            *far_out = SK_NAME(sk_row_far)(z, m, n_classes);
    } else if (SK_NAME(sk_exp_pass)(z, m, e, n_classes, lanes, lanes_far, 1, SK_FLUSH_THRESHOLD)) {
        SK_NAME(sk_exp_pass)(z, m, e, n_classes, lanes, lanes_far, 0, (SK_REAL)-INFINITY);
    }
    /* The lanes are combined pairwise (a tree, not a chain); double's compensated lanes by a
     * loop over the widths (docs/performance-notes.md, "lane arrays"). */
#if SK_IS_DOUBLE
    for (sk_index width = SK_ROW_LANES / 2; width >= 1; width /= 2)
        SK_NAME(sk_sum_level)(lanes, width);
#else
#define SK_LEVEL(width) SK_NAME(sk_sum_level)(lanes, width);
    SK_LANE_TREE(SK_LEVEL)
#undef SK_LEVEL
#endif
    return SK_NAME(sk_excl_value)(lanes, 0, SK_ROW_LANES);
}

/* ---- row status -------------------------------------------------------------------------- */

SK_INLINE int SK_NAME(sk_row_ignored)(const sk_problem *pb, sk_index row)
{
    return pb->target_kind == SK_TARGET_LABELS && pb->has_ignore_index && pb->labels[row] == pb->ignore_index;
}

/* status[i] = sk_row_ignored(row_begin + i) ? SK_ROW_IGNORED : SK_ROW_VALID, in a loop that
 * vectorises (no conditional load). */
SK_INLINE void SK_NAME(sk_mark_ignored_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                             unsigned char *status)
{
    if (pb->target_kind == SK_TARGET_LABELS && pb->has_ignore_index) {
        const int64_t *labels = pb->labels + row_begin, ignore_index = pb->ignore_index;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            status[i] = labels[i] == ignore_index ? SK_ROW_IGNORED : SK_ROW_VALID;
    } else {
        memset(status, SK_ROW_VALID, (size_t)n_rows);
    }
}

/* The status of a row from its statistics (far: a finite logit lies more than SK_EXTREME_GAP
 * below m); T < 0 means NaN in the row or no class at m. Branch-free (m - m is 0 exactly for
 * finite m), so the loop over a block vectorises. */
SK_INLINE unsigned char SK_NAME(sk_row_status)(double m, int far, double sum_excl, int detect_extreme)
{
    const int usable = (m - m == 0.0) & (sum_excl >= 0.0);
    const int extreme = detect_extreme & far;
    return usable ? (extreme ? SK_ROW_EXTREME : SK_ROW_VALID) : SK_ROW_INVALID;
}

/* Phases 1-3 row by row, for rows long enough to fill the SIMD lanes: one pass for m, one
 * pass for exp and T, the exp values into exp_rows (the strip or an output block). */
SK_INLINE void SK_NAME(sk_block_stats_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                            const sk_block *blk, int detect_extreme, SK_REAL *exp_rows)
{
    const sk_index n_classes = pb->n_classes;
    SK_NAME(sk_mark_ignored_rows)(pb, row_begin, n_rows, blk->status);
    for (sk_index i = 0; i < n_rows; ++i) {
        if (SK_IS_DOUBLE) /* float long rows run faster without (docs/performance-notes.md, "prefetch") */
            SK_NAME(sk_prefetch_next_rows)(pb, pb->z, row_begin, n_rows, i, n_rows, 0);
        SK_REAL *e = exp_rows + i * n_classes;
        blk->row_max[i] = 0.0;
        blk->sum_excl[i] = 0.0;
        if (blk->status[i] == SK_ROW_IGNORED) { /* skipped: its logits may be NaN */
            SK_NAME(sk_fill)(e, n_classes, 0.0); /* the vectorised outputs read every row */
            continue;
        }
        const SK_REAL *z = SK_CROW(pb->z, row_begin + i, n_classes);
        const SK_REAL m = SK_NAME(sk_row_max)(z, n_classes);
        blk->status[i] = SK_ROW_INVALID;
        if (!isfinite((double)m)) {
            SK_NAME(sk_fill)(e, n_classes, 0.0);
            continue;
        }
        int far;
        const double sum_excl = SK_NAME(sk_exp_row)(z, m, e, n_classes, detect_extreme, &far);
        blk->status[i] = SK_NAME(sk_row_status)((double)m, far, sum_excl, detect_extreme);
        blk->row_max[i] = (double)m;
        blk->sum_excl[i] = blk->status[i] == SK_ROW_INVALID ? 0.0 : sum_excl;
    }
}

/* ---- short rows: columns ----------------------------------------------------------------
 * Row by row, a short row would use a fraction of a SIMD register and spend its time in
 * horizontal reductions. Instead the block is transposed to columns of classes, so that every
 * step is an element-wise operation across the block's rows (one SIMD lane per row). An
 * ignored row's logits (NaN, say) go through these steps too: each row has a lane of its
 * own, so they touch nothing but that row's values, which are then discarded. */

/* Where the statistics of short rows work, in the block's scratch. */
typedef struct {
    SK_REAL *columns;    /* columns[k * n_rows + i]: z, then e */
    SK_REAL *column_max; /* per row: m, in the data type */
    SK_REAL *column_min; /* per row: the smallest finite logit (+inf for none) */
    SK_NAME(sk_excl_sums) excl;
} SK_NAME(sk_stats_columns_scratch);

SK_INLINE SK_NAME(sk_stats_columns_scratch) SK_NAME(sk_stats_columns_view)(const sk_block *blk, sk_index n_rows,
                                                                         sk_index n_classes)
{
    SK_NAME(sk_stats_columns_scratch) view;
    view.columns = (SK_REAL *)blk->columns;
    view.column_max = view.columns + n_classes * n_rows;
    view.column_min = view.column_max + n_rows;
    view.excl.sum = blk->row_sums;
#if SK_IS_DOUBLE
    view.excl.error = blk->row_sums + n_rows;
#else
    view.excl.ties = (int32_t *)(blk->row_sums + n_rows);
#endif
    return view;
}

/* m and the smallest finite logit of each row, and T's accumulators started. */
SK_INLINE void SK_NAME(sk_columns_extremes)(const SK_NAME(sk_stats_columns_scratch) *work, sk_index n_rows,
                                            sk_index n_classes)
{
    SK_REAL *column_max = work->column_max, *column_min = work->column_min;
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        column_max[i] = (SK_REAL)-INFINITY;
        column_min[i] = (SK_REAL)INFINITY;
        SK_NAME(sk_excl_start)(work->excl, i);
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *col = work->columns + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            const SK_REAL finite_or_inf = col[i] == (SK_REAL)-INFINITY ? (SK_REAL)INFINITY : col[i];
            column_max[i] = col[i] > column_max[i] ? col[i] : column_max[i];
            column_min[i] = finite_or_inf < column_min[i] ? finite_or_inf : column_min[i];
        }
    }
}

/* Whether z_k = m, as 1 or 0, into max_flags[k * n_rows + i]: facts that exp overwrites. */
SK_INLINE void SK_NAME(sk_columns_max_flags)(const SK_NAME(sk_stats_columns_scratch) *work, sk_index n_rows,
                                             sk_index n_classes, SK_REAL *max_flags)
{
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *col = work->columns + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            max_flags[k * n_rows + i] = col[i] == work->column_max[i] ? (SK_REAL)1 : (SK_REAL)0;
    }
}

/* The first class at m of each row, as a double; K - 1 where none is (all NaN). */
SK_INLINE void SK_NAME(sk_columns_first_argmax)(const SK_NAME(sk_stats_columns_scratch) *work, sk_index n_rows,
                                                sk_index n_classes, double *first_argmax)
{
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i)
        first_argmax[i] = (double)(n_classes - 1);
    for (sk_index k = n_classes - 1; k >= 0; --k) {
        const SK_REAL *col = work->columns + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            first_argmax[i] = col[i] == work->column_max[i] ? (double)k : first_argmax[i];
    }
}

/* Whether every row of the block is sk_flush_free (one choice of exp for the whole block). */
SK_INLINE int SK_NAME(sk_columns_flush_free)(const SK_NAME(sk_stats_columns_scratch) *work, sk_index n_rows)
{
    int all_free = 1;
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i)
        all_free &= SK_NAME(sk_flush_free)(work->column_min[i], work->column_max[i]);
    return all_free;
}

/* e = exp(z - m) in place of column k, and T's terms (vectorised where `flushing` is a constant). */
SK_INLINE void SK_NAME(sk_column_exp)(const SK_NAME(sk_stats_columns_scratch) *work, sk_index n_rows, sk_index k,
                                      int flushing)
{
    SK_REAL *col = work->columns + k * n_rows;
    const SK_REAL *column_max = work->column_max;
    const SK_NAME(sk_excl_sums) excl = work->excl;
    SK_EXCL_ROWS_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        const int at_max = col[i] == column_max[i];
        col[i] = SK_EXP_ROW(col[i] - column_max[i], flushing);
        SK_EXCL_ADD(excl, i, (double)col[i], at_max);
    }
}

/* e = exp(z - m) in place of the columns, and T's terms, class by class (asking for the next
 * block's logits and labels a share at a time). */
SK_INLINE void SK_NAME(sk_columns_exp)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                       const SK_NAME(sk_stats_columns_scratch) *work, int detect_extreme)
{
    const sk_index n_classes = pb->n_classes;
    const int flushing = detect_extreme || SK_NAME(sk_columns_flush_free)(work, n_rows);
    for (sk_index k = 0; k < n_classes; ++k) {
        SK_NAME(sk_prefetch_next_rows)(pb, pb->z, row_begin, n_rows, k, n_classes, 0);
        if (pb->labels)
            SK_NAME(sk_prefetch_next_part)(pb, pb->labels, 1, (sk_index)sizeof(int64_t), row_begin, n_rows, k,
                                           n_classes, 0);
        if (flushing)
            SK_NAME(sk_column_exp)(work, n_rows, k, 1);
        else
            SK_NAME(sk_column_exp)(work, n_rows, k, 0);
    }
}

/* Each row's m, T and status into the block's per-row arrays (ignored rows stay ignored). */
SK_INLINE void SK_NAME(sk_columns_status)(const SK_NAME(sk_stats_columns_scratch) *work, sk_index n_rows,
                                          const sk_block *blk, int detect_extreme)
{
    unsigned char *status = blk->status;
    double *block_max = blk->row_max, *block_sum_excl = blk->sum_excl;
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        const double m = (double)work->column_max[i];
        const double sum_excl = SK_NAME(sk_excl_value)(work->excl, i, 1);
        const int far = SK_NAME(sk_far_below)((double)work->column_min[i], m);
        const unsigned char found = SK_NAME(sk_row_status)(m, far, sum_excl, detect_extreme);
        const unsigned char row_status = status[i] == SK_ROW_IGNORED ? SK_ROW_IGNORED : found;
        status[i] = row_status;
        block_max[i] = row_status == SK_ROW_IGNORED ? 0.0 : m;
        block_sum_excl[i] = ((row_status == SK_ROW_VALID) | (row_status == SK_ROW_EXTREME)) ? sum_excl : 0.0;
    }
}

/* Phases 1-3 for short rows. The exp values stay as columns; the strip receives what
 * `options` asks for: the exp values as rows, or the flags z_k = m as columns. */
SK_INLINE void SK_NAME(sk_block_stats_columns)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                               const sk_block *blk, sk_stats_options options)
{
    const sk_index n_classes = pb->n_classes;
    const SK_NAME(sk_stats_columns_scratch) work = SK_NAME(sk_stats_columns_view)(blk, n_rows, n_classes);
    SK_NAME(sk_mark_ignored_rows)(pb, row_begin, n_rows, blk->status);
    SK_NAME(sk_rows_to_columns)(SK_CROW(pb->z, row_begin, n_classes), work.columns, n_rows, n_classes);
    SK_NAME(sk_columns_extremes)(&work, n_rows, n_classes);
    if (options.max_flags)
        SK_NAME(sk_columns_max_flags)(&work, n_rows, n_classes, (SK_REAL *)blk->strip);
    if (options.first_argmax)
        SK_NAME(sk_columns_first_argmax)(&work, n_rows, n_classes, blk->first_argmax);
    SK_NAME(sk_columns_exp)(pb, row_begin, n_rows, &work, options.detect_extreme);
    SK_NAME(sk_columns_status)(&work, n_rows, blk, options.detect_extreme);
    if (options.exp_rows)
        SK_NAME(sk_columns_to_rows)(work.columns, (SK_REAL *)blk->strip, n_rows, n_classes);
}

/* Where long rows of the block from row_begin leave their exp values for the caller to finish
 * in place: that block of `output`; NULL (the strip) for short rows, for no output, and where
 * the output is z itself, whose logits are read again after the exp has been written. */
SK_INLINE void *SK_NAME(sk_exp_output_block)(const sk_problem *pb, void *output, sk_index row_begin)
{
    if (pb->n_classes <= SK_SMALL_CLASSES || output == NULL || output == pb->z)
        return NULL;
    return SK_ROW(output, row_begin, pb->n_classes);
}

/* Where sk_block_stats left the exp values of long rows: options.exp_rows_to, else the strip. */
SK_INLINE SK_REAL *SK_NAME(sk_exp_rows_of)(const sk_block *blk, sk_stats_options options)
{
    return options.exp_rows_to ? (SK_REAL *)options.exp_rows_to : (SK_REAL *)blk->strip;
}

/* Phases 1-4 for rows [row_begin, row_begin + n_rows). Afterwards blk->row_max, sum_excl,
 * log1p_sum (zero unless asked for) and status hold each row's statistics, and the exp
 * values are where `options` asked for them. */
SK_INLINE void SK_NAME(sk_block_stats)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                       const sk_block *blk, sk_stats_options options)
{
    if (pb->n_classes <= SK_SMALL_CLASSES)
        SK_NAME(sk_block_stats_columns)(pb, row_begin, n_rows, blk, options);
    else
        SK_NAME(sk_block_stats_rows)(pb, row_begin, n_rows, blk, options.detect_extreme,
                                     SK_NAME(sk_exp_rows_of)(blk, options));
    double *log1p_sum = blk->log1p_sum;
    const double *sum_excl = blk->sum_excl;
    if (options.log1p_sum) {
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            log1p_sum[i] = sk_log1p_d(sum_excl[i]);
    } else { /* defined either way: the vectorised output loops read it */
        memset(log1p_sum, 0, (size_t)n_rows * sizeof(double));
    }
}

#undef SK_EXP_ROW
#undef SK_ROW_LANES
#undef SK_LANE_TREE
#undef SK_EXTREME_GAP
#undef SK_FAR_THRESHOLD
#undef SK_FLUSH_THRESHOLD
#undef SK_EXP_LANES
#undef SK_EXCL_ADD
#undef SK_EXCL_SIMD
#undef SK_EXCL_ROWS_SIMD
