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
 * Rows are processed in blocks of about SK_STRIP_ELEMENTS values, so that per-row work
 * runs vectorised across the block's rows:
 *   phase 1, per row: m (ignored rows are skipped, or for short rows computed and dropped);
 *   phase 2-3, per row: e = exp(z - m) into the block's strip, T, and the row's status;
 *   phase 4, the rows: log1p(T), when a loss or log-softmax needs it;
 *   phase 5: the outputs. Without dense targets (labels without smoothing, or none) the
 *     per-row values are computed for the whole block in loops across rows and each row
 *     is then written in one pass (sk_label_outputs, sk_short_hessian_outputs,
 *     sk_short_hvp_outputs), or for short rows a block of valid rows by one transposition
 *     (also sk_short_diagonal_outputs); otherwise row by row (row_outputs_impl.h), with the
 *     same formulas in the same order (only the short rows' Hv sums of float data are not
 *     compensated: see sk_short_hvp_outputs).
 * Short rows (K <= SK_SMALL_CLASSES) do phases 1-3 on the block transposed to columns,
 * one SIMD lane per row (sk_block_stats_columns), and their phase 5 reads the columns.
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

/* The rows of a group of the short-row Hessian: one 64-byte vector of values. */
#define SK_HESSIAN_GROUP (64 / (sk_index)sizeof(SK_REAL))
#define SK_ROW(ptr, row, width) ((SK_REAL *)(ptr) + (sk_index)(row) * (width))
#define SK_CROW(ptr, row, width) ((const SK_REAL *)(ptr) + (sk_index)(row) * (width))
/* exp(z - m) for the statistics: target calls recompute extreme rows (span > SK_EXTREME_GAP)
 * in a wider type, so they may use the cheaper exp that flushes what would be subnormal. */
#define SK_EXP_ROW(x, extreme_rows_recomputed) \
    ((extreme_rows_recomputed) ? SK_NAME(sk_exp_nonpositive)(x) : SK_NAME(sk_exp)(x))

SK_INLINE void SK_NAME(sk_fill)(SK_REAL *out, sk_index n, double value)
{
    for (sk_index k = 0; k < n; ++k)
        out[k] = (SK_REAL)value;
}

/* Software prefetch of the next block, spread over the work on this one. The hardware
 * prefetchers follow a stream only a short way ahead of its demand misses, and the
 * arithmetic on a block (a few microseconds) left them idle between blocks: each block's
 * first touch of its logits, labels and outputs waited on memory. So a loop over the
 * `parts` of a block (the classes of short rows, the rows of long ones) asks, at part
 * `part`, for that share of the lines of the next block of rows of an array of rows of
 * `width` items (of item_bytes each), keeping requests in flight all through the block.
 * Measured on the AVX-512 development machine, one thread, 1M x 10 loss and gradient:
 * float32 12.0 -> 8.5 ms, float64 16.2 -> 14.0 ms (the latter against the previous
 * prefetch of the whole next block at once); Hv 22.7 -> 14.5 ms (float32); float64 long
 * rows, 100k x 100, 15.2 -> 12.3 ms. Writing prefetches (outputs) fetch the lines for
 * ownership, ahead of the stores. */
SK_INLINE void SK_NAME(sk_prefetch_next_part)(const sk_problem *pb, const void *array, sk_index width,
                                              sk_index item_bytes, sk_index row_begin, sk_index n_rows,
                                              sk_index part, sk_index parts, int for_writing)
{
    const sk_index next_begin = row_begin + n_rows;
    const sk_index next_rows = next_begin + n_rows <= pb->n_rows ? n_rows : pb->n_rows - next_begin;
    if (next_rows <= 0)
        return;
    const uintptr_t from = (uintptr_t)array + (uintptr_t)(next_begin * width * item_bytes);
    const uintptr_t first_line = from / 64 * 64;
    const sk_index lines = (sk_index)((from + (uintptr_t)(next_rows * width * item_bytes) - first_line + 63) / 64);
    const sk_index share_begin = lines * part / parts, share_end = lines * (part + 1) / parts;
    sk_prefetch_lines(first_line + 64 * (uintptr_t)share_begin, 64 * (uintptr_t)(share_end - share_begin),
                      for_writing);
}

/* The same for the call's (N, K) logits, inputs and outputs of the real type. */
SK_INLINE void SK_NAME(sk_prefetch_next_rows)(const sk_problem *pb, const void *array, sk_index row_begin,
                                              sk_index n_rows, sk_index part, sk_index parts, int for_writing)
{
    SK_NAME(sk_prefetch_next_part)(pb, array, pb->n_classes, (sk_index)sizeof(SK_REAL), row_begin, n_rows, part,
                                   parts, for_writing);
}

SK_INLINE int SK_NAME(sk_all_valid)(const unsigned char *status, sk_index n_rows)
{
    unsigned char any_other = 0;
    for (sk_index i = 0; i < n_rows; ++i)
        any_other |= status[i] != SK_ROW_VALID;
    return !any_other;
}

/* Whether the (N, width) output is written with streaming stores (see SK_STREAM_MIN_BYTES;
 * a build that sets it to 0 streams every output, on any number of threads, for the tests). */
SK_INLINE int SK_NAME(sk_streams)(const sk_problem *pb, sk_index width)
{
    return SK_HAVE_STREAM && (sk_team_threads() > 1 || SK_STREAM_MIN_BYTES == 0) &&
           pb->n_rows * width >= SK_STREAM_MIN_BYTES / (sk_index)sizeof(SK_REAL);
}

/* dst[0:n] = src[0:n], streaming the whole 64-byte lines of dst and storing the partial
 * first and last lines plainly: those lines are shared with the neighbouring blocks, which
 * other threads may write at the same time, and a partly streamed line would be flushed
 * to memory in pieces. Streaming stores are weakly ordered: the driver ends each thread's
 * share of a call with sk_stream_fence(), not each block (a fence waits until the stores
 * have reached memory: 30% slower per block). */
SK_INLINE void SK_NAME(sk_stream_copy)(SK_REAL *dst, const SK_REAL *src, sk_index n)
{
#if SK_HAVE_STREAM
    const sk_index per_store = 16 / (sk_index)sizeof(SK_REAL), per_line = 64 / (sk_index)sizeof(SK_REAL);
    sk_index i = 0;
    if ((uintptr_t)dst % sizeof(SK_REAL) == 0) {
        for (; i < n && (uintptr_t)(dst + i) % 64 != 0; ++i)
            dst[i] = src[i];
        for (; i + per_line <= n; i += per_line)
            for (sk_index j = i; j < i + per_line; j += per_store)
#if SK_IS_DOUBLE
                _mm_stream_pd(dst + j, _mm_loadu_pd(src + j));
#else
                _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
#endif
    }
    for (; i < n; ++i)
        dst[i] = src[i];
#else
    memcpy(dst, src, (size_t)n * sizeof(SK_REAL));
#endif
}

#if SK_TILE_TRANSPOSE
/* Where the CPU has AVX-512 (transpose_x86.h), the Hessian of short rows is computed in
 * tiles (sk_short_hessian_tiles) unless its rows are longer than this. Measured on the
 * AVX-512 development machine, one thread, 100k rows, packed upper, against the row-by-row
 * kernels (Python, the output written again and again): float32 2.5-2.7 -> 1.6-1.7 ms at
 * K = 10, 1.4-1.5 -> 0.6 at K = 4, 3.1-3.3 -> 2.0-2.2 at K = 12, 3.9 -> 2.9-3.0 at K = 14,
 * even at K = 16 (width 136); float64 3.4-3.7 -> 2.7-3.3 ms at K = 10, 2.6 -> 2.0-2.1 at
 * K = 8, 4.3-4.4 -> 4.0-4.1 at K = 12 (width 78), even at K = 14, slower at K = 16
 * (6.0-6.8 -> 6.5-8.3 ms). (The tiles measured indexed their products' vectors, which
 * cost float64 8-13% against the pointers they walk now; the limits were not measured
 * again.) Without AVX-512 the tiles were transposed element by element and lost from
 * K = 10 on (10-70%), so the rows stay there. */
#define SK_HESSIAN_TILE_MAX_WIDTH (SK_IS_DOUBLE ? 78 : 120)
SK_INLINE int SK_NAME(sk_hessian_in_tiles)(const sk_problem *pb)
{
    return pb->hessian && pb->hessian_width <= SK_HESSIAN_TILE_MAX_WIDTH && sk_have_avx512_tiles();
}
#else
SK_INLINE int SK_NAME(sk_hessian_in_tiles)(const sk_problem *pb)
{
    (void)pb;
    return 0;
}
#endif

/* ---- short rows as columns ------------------------------------------------------------------ */

/* The element-wise transpositions of rows [first, n_rows) of a block of short rows,
 * columns[k * n_rows + i] = rows[i * K + k]. */
SK_INLINE void SK_NAME(sk_rows_to_columns_k)(const SK_REAL *rows, SK_REAL *columns, sk_index first,
                                             sk_index n_rows, sk_index n_classes)
{
    for (sk_index i = first; i < n_rows; ++i)
        for (sk_index k = 0; k < n_classes; ++k)
            columns[k * n_rows + i] = rows[i * n_classes + k];
}

SK_INLINE void SK_NAME(sk_columns_to_rows_k)(const SK_REAL *columns, SK_REAL *rows, sk_index first,
                                             sk_index n_rows, sk_index n_classes)
{
    for (sk_index i = first; i < n_rows; ++i)
        for (sk_index k = 0; k < n_classes; ++k)
            rows[i * n_classes + k] = columns[k * n_rows + i];
}

/* The two transpositions of a block of short rows. Where the CPU has AVX-512F (or AVX2,
 * for float) and K is large enough, whole tiles of rows go through registers
 * (transpose_x86.h) and only the block's last rows are left. Those, and every row elsewhere, go
 * element-wise, compiled once per K <= 16 (SK_EACH_SHORT_K): with K a constant the
 * compiler unrolls the classes and, for K up to 4, shuffles whole vectors. (Measured on the
 * AVX-512 development machine, 10M float values through both in blocks of 2048: 2.2 ms,
 * as fast as memcpy, instead of 5.4 ms at K = 4, 3.4 instead of 4.8 ms at K = 10.) */
SK_INLINE void SK_NAME(sk_rows_to_columns)(const SK_REAL *rows, SK_REAL *columns, sk_index n_rows,
                                           sk_index n_classes)
{
    sk_index first = 0;
#if SK_TILE_TRANSPOSE
    first = SK_NAME(sk_rows_to_columns_tiles)(rows, columns, n_rows, n_classes);
#endif
    switch (n_classes) {
#define SK_CASE(K) case K: SK_NAME(sk_rows_to_columns_k)(rows, columns, first, n_rows, K); break;
        SK_EACH_SHORT_K(SK_CASE)
#undef SK_CASE
    default:
        SK_NAME(sk_rows_to_columns_k)(rows, columns, first, n_rows, n_classes);
    }
}

SK_INLINE void SK_NAME(sk_columns_to_rows)(const SK_REAL *columns, SK_REAL *rows, sk_index n_rows,
                                           sk_index n_classes)
{
    sk_index first = 0;
#if SK_TILE_TRANSPOSE
    first = SK_NAME(sk_columns_to_rows_tiles)(columns, rows, n_rows, n_classes);
#endif
    switch (n_classes) {
#define SK_CASE(K) case K: SK_NAME(sk_columns_to_rows_k)(columns, rows, first, n_rows, K); break;
        SK_EACH_SHORT_K(SK_CASE)
#undef SK_CASE
    default:
        SK_NAME(sk_columns_to_rows_k)(columns, rows, first, n_rows, n_classes);
    }
}

/* ---- phases 1 to 4: the statistics of a block ------------------------------------------- */

#if SK_IS_DOUBLE
#define SK_EXTREME_GAP 600.0 /* exp(-600) = 2.6e-261: far from double's subnormals */
#else
#define SK_EXTREME_GAP 80.0 /* exp(-80) = 1.8e-35: far from float's subnormals */
#endif

/* Rows longer than SK_SMALL_CLASSES are read SK_ROW_LANES values at a time into lane arrays
 * that the compiler keeps in vector registers (one AVX-512 register, two AVX2 or four SSE2
 * ones), and reduced across the lanes by a tree at the end of the row. The last, partial
 * chunk overlaps the one before it, which rows of K > SK_SMALL_CLASSES >= SK_ROW_LANES
 * allow, so no scalar remainder loop runs. Against loops with OpenMP SIMD reductions (where
 * a scalar exp ran for each leftover value, and GCC 12 moved the max reduction's masks
 * through integer registers), measured at K = 100, float, in cache: the max pass 6 times
 * faster on the AVX-512 development machine (GCC 12) and 1.5 times on a 16-core Xeon
 * (GCC 13), both passes together 1.5 and 1.1 times. Each lane update is a single select:
 * with a second, dependent one per lane (the smallest finite logit, once computed here),
 * GCC 13 ran the chunk as scalar code with branches, 8 to 15 times slower, and GCC 12 did
 * the same for another spelling. That check now rides on the exp pass (sk_far_below). */
#define SK_ROW_LANES (64 / (sk_index)sizeof(SK_REAL))
#if SK_SMALL_CLASSES < 16
#error "sk_row_max and sk_exp_row need rows of at least SK_ROW_LANES values"
#endif

/* The tree over the lanes, one level per call with a constant width (the last a no-op for
 * double's 8 lanes), so that each level compiles to a few vector operations. As one loop
 * over the widths GCC 12 kept it rolled, as scalar code through memory: in a float
 * loss+gradient call at K = 100 that was about 15% of the kernel's time, and float calls at
 * K = 20-1000 ran 5-20% faster with the levels spelled out. (Not for double's TwoSum
 * accumulators in sk_exp_row: spelled out, those calls ran 5-20% slower.) */
#define SK_LANE_TREE(LEVEL) LEVEL(SK_ROW_LANES / 2) LEVEL(SK_ROW_LANES / 4) LEVEL(SK_ROW_LANES / 8) \
    LEVEL(SK_ROW_LANES / 16)
/* (Four levels cover at most 16 lanes: a compile-time check, since sizeof is not known to #if.) */
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
    SK_REAL hi[SK_ROW_LANES];
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

/* Whether logit x (finite, or +inf for none) lies more than SK_EXTREME_GAP below the row's
 * maximum m: the rows sk_row_status calls extreme. In double, where x - m rounds the same
 * way as m - x, so that testing every finite logit equals testing the smallest one. */
SK_INLINE int SK_NAME(sk_far_below)(double x, double m)
{
    return x - m < -SK_EXTREME_GAP;
}

/* T = sum_{k != p} e_k is accumulated from e_k and whether z_k = m (the arg-max and its
 * ties, where e_k = 1 exactly). Two ways, both keeping every digit of a tiny T:
 *   float data: T = sum_{z_k < m} e_k + (ties - 1), the sum in double. The terms are
 *     positive, so the relative error is at most K 2^-53, invisible after rounding to
 *     float; no compensation is needed (and no dependency chain: the sum vectorises freely).
 *   double data: all e_k (the ones included) in compensated lanes. Each lane starts at
 *     SK_T_START = 1, so every term e_k <= 1 is at most the running sum and Fast2Sum
 *     captures each rounding error exactly in three operations (TwoSum takes six). The
 *     final subtraction of the n_acc starting ones and the arg-max's 1 is exact: the sum
 *     is at least n_acc + 1 and below 2^52, so the difference is a multiple of its ulp
 *     and smaller than it. The carried error then restores T to within an ulp or so.
 * SK_T_ADD adds one class to a row's pair of accumulators (acc_a, acc_b); for float data
 * acc_b counts the ties. SK_T_VALUE is T from n_acc accumulators combined into one. */
#if SK_IS_DOUBLE
#define SK_T_START 1.0
#define SK_T_ADD(acc_a, acc_b, e, at_max) \
    ((void)(at_max), sk_fast_two_sum_add(&(acc_a), &(acc_b), (double)(e)))
#define SK_T_VALUE(acc_a, acc_b, n_acc) (((acc_a) - (double)((n_acc) + 1)) + (acc_b))
#define SK_T_COUNT double
#define SK_LANE_INT int64_t
#else
#define SK_T_START 0.0
#define SK_T_ADD(acc_a, acc_b, e, at_max) ((acc_a) += (at_max) ? 0.0 : (double)(e), (acc_b) += (at_max) ? 1 : 0)
#define SK_T_VALUE(acc_a, acc_b, n_acc) ((acc_a) + (double)((acc_b) - 1))
#define SK_T_COUNT int32_t
#define SK_LANE_INT int32_t
#endif

/* Whether a lane's logit x may be one that sk_far_below flags. For double data that is the
 * test itself. For float data, a float subtraction with a margin of 1 stands in for the
 * test in double, which costs two conversions per value: fl(x - m) errs by at most 2^-24 of
 * itself, so fl(x - m) >= -(SK_EXTREME_GAP - 1) implies x - m > -SK_EXTREME_GAP. Rows with
 * a candidate (a span beyond SK_EXTREME_GAP - 1: rare) are tested again exactly. */
#if SK_IS_DOUBLE
#define SK_FAR_CANDIDATE(x, m) SK_NAME(sk_far_below)((x), (m))
#else
#define SK_FAR_CANDIDATE(x, m) ((x) - (m) < (SK_REAL)(1.0 - SK_EXTREME_GAP))
#endif

/* One chunk of sk_exp_row: e = exp(z - m) for all SK_ROW_LANES values, added to T from lane
 * `first` on (the lanes before it were added by the previous chunk). */
SK_INLINE void SK_NAME(sk_exp_chunk)(const SK_REAL *z, SK_REAL m, SK_REAL *e, double *acc_a, SK_T_COUNT *acc_b,
                                     SK_LANE_INT *far, sk_index first, int extreme_rows_recomputed)
{
    SK_SIMD
    for (sk_index l = 0; l < SK_ROW_LANES; ++l) {
        const SK_REAL x = z[l], value = SK_EXP_ROW(x - m, extreme_rows_recomputed);
        e[l] = value;
        SK_T_ADD(acc_a[l], acc_b[l], l >= first ? value : (SK_REAL)0, (l >= first) & (x == m));
        far[l] |= (x != (SK_REAL)-INFINITY) & SK_FAR_CANDIDATE(x, m);
    }
}

SK_INLINE void SK_NAME(sk_sum_level)(double *acc_a, SK_T_COUNT *acc_b, sk_index width)
{
    for (sk_index l = 0; l < width; ++l) {
#if SK_IS_DOUBLE
        sk_two_sum_add(&acc_a[l], &acc_b[l], acc_a[l + width]);
#else
        acc_a[l] += acc_a[l + width];
#endif
        acc_b[l] += acc_b[l + width];
    }
}

/* e_k = exp(z_k - m) into e, and T; *far_out tells whether a finite logit lies more than
 * SK_EXTREME_GAP below m. The summation order is fixed by the code (not by the threads or
 * the instruction set), so the result does not depend on the threads. (Where the CPU has
 * FMA, the compiler may fuse a multiply and an add, so the last bits may differ between
 * instruction sets; the accuracy bound holds for each, tested by tools/isa_builds.sh.) */
SK_INLINE double SK_NAME(sk_exp_row)(const SK_REAL *z, SK_REAL m, SK_REAL *e, sk_index n_classes,
                                     int extreme_rows_recomputed, int *far_out)
{
    double acc_a[SK_ROW_LANES];
    SK_T_COUNT acc_b[SK_ROW_LANES];
    SK_LANE_INT far[SK_ROW_LANES];
    for (sk_index l = 0; l < SK_ROW_LANES; ++l) {
        acc_a[l] = SK_T_START;
        acc_b[l] = 0;
        far[l] = 0;
    }
    sk_index k = 0;
    for (; k + SK_ROW_LANES <= n_classes; k += SK_ROW_LANES)
        SK_NAME(sk_exp_chunk)(z + k, m, e + k, acc_a, acc_b, far, 0, extreme_rows_recomputed);
    if (k < n_classes) {
        const sk_index start = n_classes - SK_ROW_LANES;
        SK_NAME(sk_exp_chunk)(z + start, m, e + start, acc_a, acc_b, far, k - start, extreme_rows_recomputed);
    }
    SK_LANE_INT any_far = 0;
    for (sk_index l = 0; l < SK_ROW_LANES; ++l)
        any_far |= far[l];
#if !SK_IS_DOUBLE
    if (any_far) { /* a candidate: the exact test, over the row again */
        any_far = 0;
        for (sk_index j = 0; j < n_classes; ++j)
            any_far |= (z[j] != (SK_REAL)-INFINITY) & SK_NAME(sk_far_below)((double)z[j], (double)m);
    }
#endif
    *far_out = any_far != 0;
    /* The lanes are combined pairwise (a tree, not a chain): rows are short enough that
     * this latency counts. */
#if SK_IS_DOUBLE /* as a loop: see SK_LANE_TREE */
    for (sk_index width = SK_ROW_LANES / 2; width >= 1; width /= 2)
        SK_NAME(sk_sum_level)(acc_a, acc_b, width);
#else
#define SK_LEVEL(width) SK_NAME(sk_sum_level)(acc_a, acc_b, width);
    SK_LANE_TREE(SK_LEVEL)
#undef SK_LEVEL
#endif
    return SK_T_VALUE(acc_a[0], acc_b[0], SK_ROW_LANES);
}

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
 * below m); T < 0 means NaN in the row or no class at m.
 * Branch-free (m - m is 0 exactly for finite m), so the loop over a block vectorises. */
SK_INLINE unsigned char SK_NAME(sk_row_status)(double m, int far, double sum_excl, int detect_extreme)
{
    const int usable = (m - m == 0.0) & (sum_excl >= 0.0);
    const int extreme = detect_extreme & far;
    return usable ? (extreme ? SK_ROW_EXTREME : SK_ROW_VALID) : SK_ROW_INVALID;
}

/* Phases 1-3 row by row, for rows long enough to fill the SIMD lanes: one pass for m,
 * one pass for exp and T. */
SK_INLINE void SK_NAME(sk_block_stats_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, sk_block *blk,
                                            int detect_extreme)
{
    const sk_index n_classes = pb->n_classes;
    SK_REAL *strip = (SK_REAL *)blk->strip;
    SK_NAME(sk_mark_ignored_rows)(pb, row_begin, n_rows, blk->status);
    for (sk_index i = 0; i < n_rows; ++i) {
        if (SK_IS_DOUBLE) /* for float data it cost time: 8-12% at K = 40 and 100 */
            SK_NAME(sk_prefetch_next_rows)(pb, pb->z, row_begin, n_rows, i, n_rows, 0);
        SK_REAL *e = strip + i * n_classes;
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

/* Phases 1-3 for short rows (K <= SK_SMALL_CLASSES): row by row, a row would use a
 * fraction of a SIMD register and spend its time in horizontal reductions. Instead the
 * block is transposed to columns of classes, so that every step is an elementwise
 * operation across the block's rows (one SIMD lane per row). The exp values stay as
 * columns (columns[k * n_rows + i]); with want_strip they are also copied back to rows.
 * Facts that exp overwrites are kept for the outputs that need them: the first arg-max
 * (Hv) and, in the strip, whether z_k = m (the Hessian diagonal on its own). */
SK_INLINE void SK_NAME(sk_block_stats_columns)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                               sk_block *blk, int detect_extreme, int want_strip)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = (const SK_REAL *)pb->z + row_begin * n_classes;
    SK_REAL *strip = (SK_REAL *)blk->strip;
    SK_REAL *columns = (SK_REAL *)blk->columns;             /* columns[k * n_rows + i] */
    SK_REAL *row_max = columns + n_classes * n_rows;        /* n_rows each */
    SK_REAL *row_min = row_max + n_rows;
    double *acc_a = (double *)blk->columns_sums;
    SK_T_COUNT *acc_b = (SK_T_COUNT *)(acc_a + n_rows); /* float data: int32 counts, 16 to a vector */
    unsigned char *status = blk->status;
    SK_NAME(sk_mark_ignored_rows)(pb, row_begin, n_rows, status);
    /* An ignored row's logits (NaN, say) go through the steps below too: each row has a lane
     * of its own, so they touch nothing but that row's values, which are then discarded. */
    SK_NAME(sk_rows_to_columns)(z, columns, n_rows, n_classes);
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        row_max[i] = (SK_REAL)-INFINITY;
        row_min[i] = (SK_REAL)INFINITY;
        acc_a[i] = SK_T_START;
        acc_b[i] = 0;
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *col = columns + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            const SK_REAL finite_or_inf = col[i] == (SK_REAL)-INFINITY ? (SK_REAL)INFINITY : col[i];
            row_max[i] = col[i] > row_max[i] ? col[i] : row_max[i];
            row_min[i] = finite_or_inf < row_min[i] ? finite_or_inf : row_min[i];
        }
    }
    if ((pb->hessian_diagonal && !pb->hessian) || SK_NAME(sk_hessian_in_tiles)(pb)) { /* z_k = m, as 1 or 0 */
        SK_REAL *at_max = strip;
        for (sk_index k = 0; k < n_classes; ++k) {
            const SK_REAL *col = columns + k * n_rows;
            SK_SIMD
            for (sk_index i = 0; i < n_rows; ++i)
                at_max[k * n_rows + i] = col[i] == row_max[i] ? (SK_REAL)1 : (SK_REAL)0;
        }
    }
    if (pb->hessian_vector_product) { /* the first class at m; K - 1 where none is (all NaN) */
        double *first_argmax = blk->first_argmax;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            first_argmax[i] = (double)(n_classes - 1);
        for (sk_index k = n_classes - 1; k >= 0; --k) {
            const SK_REAL *col = columns + k * n_rows;
            SK_SIMD
            for (sk_index i = 0; i < n_rows; ++i)
                first_argmax[i] = col[i] == row_max[i] ? (double)k : first_argmax[i];
        }
    }
    for (sk_index k = 0; k < n_classes; ++k) { /* the accumulators of sk_exp_row, one per row */
        SK_REAL *col = columns + k * n_rows;
        SK_NAME(sk_prefetch_next_rows)(pb, pb->z, row_begin, n_rows, k, n_classes, 0);
        if (pb->labels)
            SK_NAME(sk_prefetch_next_part)(pb, pb->labels, 1, (sk_index)sizeof(int64_t), row_begin, n_rows, k,
                                           n_classes, 0);
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            const int at_max = col[i] == row_max[i];
            col[i] = SK_EXP_ROW(col[i] - row_max[i], detect_extreme);
            SK_T_ADD(acc_a[i], acc_b[i], col[i], at_max);
        }
    }
    double *block_max = blk->row_max, *block_sum_excl = blk->sum_excl;
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        const double m = (double)row_max[i];
        const double sum_excl = SK_T_VALUE(acc_a[i], acc_b[i], 1);
        const int far = SK_NAME(sk_far_below)((double)row_min[i], m);
        const unsigned char found = SK_NAME(sk_row_status)(m, far, sum_excl, detect_extreme);
        const unsigned char row_status = status[i] == SK_ROW_IGNORED ? SK_ROW_IGNORED : found;
        status[i] = row_status;
        block_max[i] = row_status == SK_ROW_IGNORED ? 0.0 : m;
        block_sum_excl[i] = ((row_status == SK_ROW_VALID) | (row_status == SK_ROW_EXTREME)) ? sum_excl : 0.0;
    }
    if (want_strip)
        SK_NAME(sk_columns_to_rows)(columns, strip, n_rows, n_classes);
}

/* Phases 1-4 for rows [row_begin, row_begin + n_rows). Afterwards the exp values are in the
 * strip, row by row; short rows also (without want_strip: only) keep them as columns. */
SK_INLINE void SK_NAME(sk_block_stats)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, sk_block *blk,
                                       int need_log1p, int detect_extreme, int want_strip)
{
    if (pb->n_classes <= SK_SMALL_CLASSES)
        SK_NAME(sk_block_stats_columns)(pb, row_begin, n_rows, blk, detect_extreme, want_strip);
    else
        SK_NAME(sk_block_stats_rows)(pb, row_begin, n_rows, blk, detect_extreme);
    double *log1p_sum = blk->log1p_sum;
    const double *sum_excl = blk->sum_excl;
    if (need_log1p) {
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            log1p_sum[i] = sk_log1p_d(sum_excl[i]);
    } else { /* defined either way: the vectorised output loops read it */
        memset(log1p_sum, 0, (size_t)n_rows * sizeof(double));
    }
}

#undef SK_T_ADD
#undef SK_T_VALUE
#undef SK_T_COUNT
#undef SK_T_START
#undef SK_LANE_INT
#undef SK_FAR_CANDIDATE

/* A row's loss, computed in double: kept in double for a reduction, else rounded once to the
 * data type (IEEE conversion: beyond float's range it is inf, as NumPy's cast). */
SK_INLINE void SK_NAME(sk_store_row_loss)(const sk_problem *pb, sk_index row, double value)
{
    if (pb->row_loss_is_double)
        ((double *)pb->row_loss)[row] = value;
    else
        ((SK_REAL *)pb->row_loss)[row] = (SK_REAL)value;
}

/* sk_store_row_loss for each valid row of a block (loss[i] for row row_begin + i); in loops
 * that vectorise when all are valid, as they usually are. */
SK_INLINE void SK_NAME(sk_store_block_loss)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                            const unsigned char *status, const double *loss)
{
    if (!SK_NAME(sk_all_valid)(status, n_rows)) {
        for (sk_index i = 0; i < n_rows; ++i)
            if (status[i] == SK_ROW_VALID)
                SK_NAME(sk_store_row_loss)(pb, row_begin + i, loss[i]);
    } else if (pb->row_loss_is_double) {
        memcpy((double *)pb->row_loss + row_begin, loss, (size_t)n_rows * sizeof(double));
    } else {
        SK_REAL *row_loss = (SK_REAL *)pb->row_loss + row_begin;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            row_loss[i] = (SK_REAL)loss[i];
    }
}

/* ---- softmax and log-softmax -------------------------------------------------------------- */

SK_DISPATCH static void SK_NAME(sk_softmax_block)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                  double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    sk_block blk = sk_block_layout(scratch, n_classes, n_rows);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, 0, 0, 1);
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
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, 1, 0, 1);
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
    const SK_WIDE sum_excl = (total.sum - 1) + total.err; /* as in sk_exp_row for double data */
    SK_WIDE_NAME(sk_target_outputs)(pb, row, row_max, sum_excl, SK_WIDE_LOG1P(sum_excl), e, s, minus_cs);
}

SK_INLINE void SK_NAME(sk_fill_target_row)(const sk_problem *pb, sk_index row, double fill)
{
    const sk_index n_classes = pb->n_classes;
    if (pb->row_loss)
        SK_NAME(sk_store_row_loss)(pb, row, fill);
    if (pb->gradient)
        SK_NAME(sk_fill)((SK_REAL *)pb->gradient + row * n_classes, n_classes, fill);
    if (pb->hessian)
        SK_NAME(sk_fill)((SK_REAL *)pb->hessian + row * pb->hessian_width, pb->hessian_width, fill);
    if (pb->hessian_diagonal)
        SK_NAME(sk_fill)((SK_REAL *)pb->hessian_diagonal + row * n_classes, n_classes, fill);
    if (pb->hessian_vector_product)
        SK_NAME(sk_fill)((SK_REAL *)pb->hessian_vector_product + row * n_classes, n_classes, fill);
}

/* ---- vectorised paths: no dense targets ----------------------------------------------------
 *
 * Without dense targets (labels without smoothing, or no targets), a row's coefficients are
 * a few numbers: a is w cw_y (1 - eps) at the label and zero elsewhere, so c = a_y (or c = w
 * without targets). The paths below compute such per-row values for the whole block in
 * loops vectorised across rows (no per-row set-up), then write each row in one pass. The
 * formulas, and their order, are those of row_outputs_impl.h, so both paths give the same
 * bits (as long as the compiler fuses multiply-adds alike in both, which it does for the
 * builds tested; no test relies on it). Rows other than valid ones (extreme, invalid,
 * ignored) are computed too (an ignored row's label, possibly out of range, is replaced
 * by 0) but not stored: the general path writes them afterwards. */

/* The label of each row, clamped into [0, K) for the rows that are not used. */
SK_INLINE sk_index SK_NAME(sk_usable_label)(const sk_problem *pb, sk_index row)
{
    const uint64_t label = (uint64_t)pb->labels[row];
    return label < (uint64_t)pb->n_classes ? (sk_index)label : 0;
}

/* c = c_excl + a_p for labels without smoothing, as sk_target_sums adds them: the label's
 * weight alpha is a_p when the label is a maximum, else c_excl (the other term is 0). */
SK_INLINE double SK_NAME(sk_label_c)(double alpha, int label_is_max)
{
    return (label_is_max ? 0.0 : alpha) + (label_is_max ? alpha : 0.0);
}

/* weight[i] = w / D, times cw_y with labels: st.row_weight, and with labels the factor of
 * st.label_coefficient before (1 - eps). The optional arrays are applied in loops of their
 * own, so that no loop has conditional loads (which would keep it from vectorising). */
SK_INLINE void SK_NAME(sk_row_weights)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, double *weight)
{
    const SK_REAL *sample_weight = (const SK_REAL *)pb->sample_weight;
    const SK_REAL *class_weight = (const SK_REAL *)pb->class_weight;
    if (sample_weight) {
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            weight[i] = (double)sample_weight[row_begin + i] / pb->denominator;
    } else {
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            weight[i] = 1.0 / pb->denominator;
    }
    if (class_weight && pb->target_kind == SK_TARGET_LABELS) {
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            weight[i] *= (double)class_weight[SK_NAME(sk_usable_label)(pb, row_begin + i)];
    }
}

/* ---- labels without smoothing, loss and gradient: the training call ----------------------- */

/* All a row's outputs follow from m, T, log1p(T), z_y and e_y; each row's gradient
 * g_k = (c / S) e_k is then written in one pass and its label's element replaced
 * (steps 3-6 as in sk_target_sums and sk_write_gradient). */
SK_INLINE int SK_NAME(sk_is_label_call)(const sk_problem *pb)
{
    return pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing == 0.0 && !pb->hessian &&
           !pb->hessian_diagonal && !pb->hessian_vector_product;
}

/* The exp values of row i, class k, are at e[i * row_stride + k * class_stride]. */
SK_INLINE void SK_NAME(sk_label_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                         const sk_block *blk, SK_REAL *e, sk_index row_stride,
                                         sk_index class_stride)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = (const SK_REAL *)pb->z;
    const int64_t *labels = pb->labels;
    const unsigned char *status = blk->status;
    const int want_loss = pb->row_loss != NULL;
    double *scale = blk->columns_sums, *label_gradient = scale + n_rows; /* free after the stats */
    double *loss = blk->log1p_sum;                                       /* log1p(T) becomes the loss */
    double *weight = scale, *label_logit = blk->row_values, *label_exp = label_logit + n_rows;
    SK_NAME(sk_row_weights)(pb, row_begin, n_rows, weight);
    /* z_y and e_y, gathered by a loop of their own: compilers tuned for CPUs with slow vector
     * gathers would otherwise build each vector from scalars inside the main loop. */
    for (sk_index i = 0; i < n_rows; ++i) {
        const sk_index y = SK_NAME(sk_usable_label)(pb, row_begin + i);
        label_logit[i] = (double)z[(row_begin + i) * n_classes + y];
        label_exp[i] = (double)e[i * row_stride + y * class_stride];
    }
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        const double alpha = weight[i] * pb->one_minus_eps;
        const double m = blk->row_max[i], sum_excl = blk->sum_excl[i], sum = 1.0 + sum_excl;
        const double z_y = label_logit[i], e_y = label_exp[i];
        const int label_is_max = z_y == m;
        const double c = SK_NAME(sk_label_c)(alpha, label_is_max);
        const double dot = alpha != 0.0 ? alpha * (m - z_y) : 0.0;
        loss[i] = want_loss ? dot + c * loss[i] : 0.0;
        scale[i] = c / sum;
        label_gradient[i] = label_is_max ? -(alpha * sum_excl / sum) : c * (e_y / sum) - alpha;
    }
    if (want_loss)
        SK_NAME(sk_store_block_loss)(pb, row_begin, n_rows, status, loss);
    if (!pb->gradient)
        return;
    /* A large gradient is assembled in the strip (long rows one by one, over the exp values
     * each row has just read; short rows by the transposition below) and streamed out in one
     * piece. Only blocks of valid rows are: the other rows are written later, and one
     * recomputed in a wider type reads its logits again, which an in-place call (gradient = z)
     * must not have overwritten. */
    const int all_valid = SK_NAME(sk_all_valid)(status, n_rows);
    const int stream = all_valid && SK_NAME(sk_streams)(pb, n_classes);
    SK_REAL *g_block = stream ? (SK_REAL *)blk->strip : SK_ROW(pb->gradient, row_begin, n_classes);
    /* Short rows (e as columns: class_stride = n_rows): g_k = (c / S) e_k in place, vectorised
     * across rows, so that writing the rows out is a transposition, of the whole block at once
     * when every row is valid (for the same reason as streaming). */
    const int scaled_in_place = class_stride != 1, transposed = scaled_in_place && all_valid;
    if (scaled_in_place) {
        for (sk_index k = 0; k < n_classes; ++k) {
            SK_REAL *col = e + k * class_stride;
            if (!stream) /* streaming stores do not read the lines they write */
                SK_NAME(sk_prefetch_next_rows)(pb, pb->gradient, row_begin, n_rows, k, n_classes, 1);
            SK_SIMD
            for (sk_index i = 0; i < n_rows; ++i)
                col[i] = (SK_REAL)((double)col[i] * scale[i]);
        }
    }
    if (transposed)
        SK_NAME(sk_columns_to_rows)(e, g_block, n_rows, n_classes);
    for (sk_index i = 0; i < n_rows; ++i) {
        if (status[i] != SK_ROW_VALID)
            continue;
        SK_REAL *g = g_block + i * n_classes;
        const SK_REAL *e_row = e + i * row_stride;
        if (scaled_in_place && !transposed) {
            for (sk_index k = 0; k < n_classes; ++k)
                g[k] = e_row[k * class_stride];
        } else if (!scaled_in_place) {
            const double row_scale = scale[i];
            SK_SIMD
            for (sk_index k = 0; k < n_classes; ++k)
                g[k] = (SK_REAL)((double)e_row[k * class_stride] * row_scale);
        }
        g[labels[row_begin + i]] = (SK_REAL)label_gradient[i];
    }
    if (stream)
        SK_NAME(sk_stream_copy)(SK_ROW(pb->gradient, row_begin, n_classes), g_block, n_rows * n_classes);
}

/* ---- short rows without dense targets: Hessians and Hessian-vector products ----------------- */

/* Hessians and Hv of rows of K <= SK_SMALL_CLASSES without dense targets, computed on the
 * block held as columns: every step of sk_write_hessian and sk_write_hessian_vector_product
 * runs across the block's rows. */
SK_INLINE int SK_NAME(sk_is_short_sparse_call)(const sk_problem *pb)
{
    return pb->n_classes <= SK_SMALL_CLASSES &&
           (pb->target_kind == SK_TARGET_NONE ||
            (pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing == 0.0));
}

/* c per row (st.c: w without targets, c_excl + a_p with labels) and, where argmax is not
 * NULL, the arg-max p of sk_target_outputs: the label where it is a maximum, else the first
 * (blk->first_argmax, which sk_block_stats_columns fills for calls with Hv). With labels it
 * uses blk->columns_sums as scratch, so no caller may keep anything there. */
SK_INLINE void SK_NAME(sk_short_coefficients)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                              const sk_block *blk, double *coef, double *argmax)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row_begin, n_classes);
    const double *row_max = blk->row_max;
    SK_NAME(sk_row_weights)(pb, row_begin, n_rows, coef);
    if (argmax)
        memcpy(argmax, blk->first_argmax, (size_t)n_rows * sizeof(double));
    if (pb->target_kind == SK_TARGET_LABELS) {
        /* y and z_y, gathered by a loop of their own (see sk_label_outputs) */
        double *label = blk->columns_sums, *label_logit = label + n_rows; /* free after the stats */
        for (sk_index i = 0; i < n_rows; ++i) {
            const sk_index y = SK_NAME(sk_usable_label)(pb, row_begin + i);
            label[i] = (double)y;
            label_logit[i] = (double)z[i * n_classes + y];
        }
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            const int label_is_max = label_logit[i] == row_max[i];
            const double alpha = coef[i] * pb->one_minus_eps;
            coef[i] = SK_NAME(sk_label_c)(alpha, label_is_max);
            if (argmax)
                argmax[i] = label_is_max ? label[i] : argmax[i];
        }
    }
}

/* s_k, -c s_k and the diagonal (c s_k)(1 - s_k) of one row and class, from e_k, whether
 * z_k = m, T and c: the formulas of sk_write_hessian, 1 - s_k as sk_one_minus_s (one
 * division: the same quotient either way). */
SK_INLINE void SK_NAME(sk_short_factors)(double e_k, int at_max, double sum_excl, double c, double *s,
                                         double *minus_cs, double *diag)
{
    const double sum = 1.0 + sum_excl;
    const double one_minus_s = (at_max ? sum_excl : sum - e_k) / sum;
    *s = e_k / sum;
    *minus_cs = -(c * *s);
    *diag = (c * *s) * one_minus_s;
}

/* s_k, -c s_k and the diagonal (c s_k)(1 - s_k) of one row for its first `count` classes,
 * from its e, z, m, T and c. */
SK_INLINE void SK_NAME(sk_hessian_factors)(const SK_REAL *e, const SK_REAL *z, sk_index count, double m,
                                           double sum_excl, double c, double *s, double *minus_cs, double *diag)
{
    SK_SIMD
    for (sk_index k = 0; k < count; ++k)
        SK_NAME(sk_short_factors)((double)e[k], (double)z[k] == m, sum_excl, c, &s[k], &minus_cs[k], &diag[k]);
}

/* One segment of a row's Hessian (see sk_short_hessian_rows): `lanes` values (a
 * constant) computed and stored from out on. */
SK_INLINE void SK_NAME(sk_short_hessian_segment)(SK_REAL *out, sk_index j, int layout, sk_index lanes,
                                                 const double *s, const double *minus_cs)
{
    const double minus_cs_j = minus_cs[j], s_j = s[j];
    /* H_ab = -(c s_max(a,b)) s_min(a,b): packed upper holds H[a][j] for a <= j, packed
     * lower H[a][j] for a >= j; the lanes past them are overwritten later. */
    if (layout == SK_LAYOUT_PACKED_UPPER) {
        SK_SIMD
        for (sk_index t = 0; t < lanes; ++t)
            out[t] = (SK_REAL)(minus_cs_j * s[t]);
    } else if (layout == SK_LAYOUT_PACKED_LOWER) {
        SK_SIMD
        for (sk_index t = 0; t < lanes; ++t)
            out[t] = (SK_REAL)(minus_cs[j + t] * s_j);
    } else {
        SK_SIMD
        for (sk_index t = 0; t < lanes; ++t)
            out[t] = (SK_REAL)(t > j ? minus_cs[t] * s_j : minus_cs_j * s[t]);
    }
}

/* One row's Hessian h (`width` values in the given layout) from its s, -c s (2
 * SK_SMALL_CLASSES lanes each; those past K hold values of no meaning) and diagonal,
 * segment by segment (see sk_short_hessian_rows); `lanes` holds a segment that would
 * pass the row's end.
 * Segments of up to half SK_SMALL_CLASSES values take vectors of that many lanes: in cache
 * (a C driver of the kernels, packed upper) 25% faster at K = 8, 8-12% at K = 10 (both
 * dtypes), 5-8% at K = 12, 13 and 16 (float32); 8% slower at K = 6 (float32) and 6% at
 * K = 16 (float64), which were not pursued. */
SK_INLINE void SK_NAME(sk_short_hessian_row)(SK_REAL *h, sk_index n_classes, sk_index width, int layout,
                                             const double *s, const double *minus_cs, const double *diag,
                                             SK_REAL *lanes)
{
    for (sk_index j = 0; j < n_classes; ++j) {
        /* The segment holds H[first + t][j], t < count, at offset + t. */
        sk_index first = 0, count = n_classes, offset = j * n_classes; /* full: row j */
        if (layout == SK_LAYOUT_PACKED_UPPER)
            count = j + 1, offset = sk_packed_upper_index(0, j);
        else if (layout == SK_LAYOUT_PACKED_LOWER)
            first = j, count = n_classes - j, offset = sk_packed_lower_index(j, j, n_classes);
        const sk_index vector = count <= SK_SMALL_CLASSES / 2 ? SK_SMALL_CLASSES / 2 : SK_SMALL_CLASSES;
        const int whole = offset + vector <= width;
        SK_REAL *out = whole ? h + offset : lanes;
        if (vector == SK_SMALL_CLASSES / 2)
            SK_NAME(sk_short_hessian_segment)(out, j, layout, SK_SMALL_CLASSES / 2, s, minus_cs);
        else
            SK_NAME(sk_short_hessian_segment)(out, j, layout, SK_SMALL_CLASSES, s, minus_cs);
        out[j - first] = (SK_REAL)diag[j];
        if (!whole)
            for (sk_index t = 0; t < count; ++t)
                h[offset + t] = lanes[t];
    }
}

/* The Hessian (any layout) and its diagonal, row by row (where the tiles of
 * sk_short_hessian_tiles do not run) with fixed-width vectors: the part
 * of a row's layout that holds matrix column j (a segment: see sk_write_hessian) is
 * computed as SK_SMALL_CLASSES lanes, or half as many where it fits, and stored whole.
 * The row's exp values come from the strip. Lanes past the segment's end land
 * on later segments of the same row, which are stored afterwards; only segments that would
 * reach past the row's end are stored element by element. */
SK_INLINE void SK_NAME(sk_short_hessian_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                              const sk_block *blk)
{
    const sk_index n_classes = pb->n_classes, width = pb->hessian_width;
    double *coef = blk->row_values;
    /* One row's s, -c s and diagonal. The lanes past K hold zeros or values of no meaning
     * (sk_hessian_factors below), which reach only output lanes that are overwritten or
     * dropped; past SK_SMALL_CLASSES they stay zero. */
    double *s = blk->short_work, *minus_cs = s + 2 * SK_SMALL_CLASSES, *diag = minus_cs + 2 * SK_SMALL_CLASSES;
    SK_REAL *lanes = (SK_REAL *)(diag + SK_SMALL_CLASSES);
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, coef, NULL);
    for (sk_index k = 0; k < 2 * SK_SMALL_CLASSES; ++k)
        s[k] = minus_cs[k] = 0.0;
    for (sk_index i = 0; i < n_rows; ++i) {
        if (blk->status[i] != SK_ROW_VALID)
            continue;
        const sk_index row = row_begin + i;
        const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
        const double sum_excl = blk->sum_excl[i], c = coef[i], m = blk->row_max[i];
        /* e as a row of the strip (sk_target_block asks for it), not K values a column
         * apart: those were gathered one by one, and the float32 Hessian took 3-10% longer
         * (K = 10 to 16). */
        const SK_REAL *e_row = (const SK_REAL *)blk->strip + i * n_classes;
        /* All SK_SMALL_CLASSES lanes at once where they stay inside the block's logits and
         * exp values (every row but its last one or few; not the next block's logits, which
         * another thread may be overwriting with its gradient): the lanes past K read the next
         * row's values and land in output lanes that are overwritten or dropped.
         * With K as the count, the classes past the last whole vector were written as
         * scalars, which the segments' vector loads then waited for (a store that does not
         * cover a load is not forwarded to it), and divisions ran as scalar code. In cache
         * (a C driver of the kernels), the Hessian took 35-70% longer at K = 4 to 7, 6-23%
         * at K = 9 to 15 (both dtypes); K = 8 and 16 (float32), with no class left over,
         * lost 7-10%, which was not pursued. The test is i K + 16 <= n_rows K, spelled with
         * the row: spelled with i, GCC 12 compiled float64 calls 15-20% slower. */
        if ((row + 1) * n_classes + (SK_SMALL_CLASSES - n_classes) <= (row_begin + n_rows) * n_classes)
            SK_NAME(sk_hessian_factors)(e_row, z, SK_SMALL_CLASSES, m, sum_excl, c, s, minus_cs, diag);
        else
            SK_NAME(sk_hessian_factors)(e_row, z, n_classes, m, sum_excl, c, s, minus_cs, diag);
        if (pb->hessian_diagonal) {
            SK_REAL *hd = SK_ROW(pb->hessian_diagonal, row, n_classes);
            for (sk_index k = 0; k < n_classes; ++k)
                hd[k] = (SK_REAL)diag[k];
        }
        if (!pb->hessian)
            continue;
        SK_REAL *h = SK_ROW(pb->hessian, row, width);
        /* With the layout a constant in each call, so that the segment loop has no branches
         * on it: 7-17% faster at K = 6 to 16 (float32, packed upper, in cache). */
        if (pb->layout == SK_LAYOUT_PACKED_UPPER)
            SK_NAME(sk_short_hessian_row)(h, n_classes, width, SK_LAYOUT_PACKED_UPPER, s, minus_cs, diag, lanes);
        else if (pb->layout == SK_LAYOUT_PACKED_LOWER)
            SK_NAME(sk_short_hessian_row)(h, n_classes, width, SK_LAYOUT_PACKED_LOWER, s, minus_cs, diag, lanes);
        else
            SK_NAME(sk_short_hessian_row)(h, n_classes, width, SK_LAYOUT_FULL, s, minus_cs, diag, lanes);
    }
}

#if SK_TILE_TRANSPOSE
/* How many groups ahead the tiles ask for the output's lines: the rows of a group are
 * stored as one copy, which otherwise waited on memory for the lines it wrote (a C driver
 * of the kernels, 100k x 10, output evicted between calls: float32 1.8 ms without the
 * requests, 1.5-1.6 ms with them; float64 3.3 and 2.4-2.7 ms). */
#define SK_HESSIAN_AHEAD 3

/* out[u * G + t] = fixed[t] * vectors[u * G + t], u < count: columns of a Hessian tile. */
SK_INLINE void SK_NAME(sk_tile_products)(SK_REAL *out, const double *fixed, const double *vectors, sk_index count)
{
    for (const double *end = vectors + count * SK_HESSIAN_GROUP; vectors < end;
         vectors += SK_HESSIAN_GROUP, out += SK_HESSIAN_GROUP) {
        SK_SIMD
        for (sk_index t = 0; t < SK_HESSIAN_GROUP; ++t)
            out[t] = (SK_REAL)(fixed[t] * vectors[t]);
    }
}

/* The Hessian (any layout) of a block of short rows, a group of G = SK_HESSIAN_GROUP rows
 * at a time, every step across the group's rows (one SIMD lane per row): the factors s,
 * -c s and the diagonal of each class as vectors of the group, from the exp columns and
 * the flags z_k = m that the statistics leave in the strip; then each position of the
 * layout (H_ab = -(c s_max(a,b)) s_min(a,b), or the diagonal) as one column of a tile; the
 * tile transposed into the group's rows (sk_hessian_tile_avx512_f/_d) and those copied out
 * in one piece. Row by row, lanes past K went to waste (6 of 16 at K = 10) and each part of
 * a row's layout was a store of its own. The whole block is written: rows other than valid
 * ones are written again afterwards. */
SK_INLINE void SK_NAME(sk_short_hessian_tiles)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                               const sk_block *blk)
{
    enum { G = SK_HESSIAN_GROUP };
    const sk_index n_classes = pb->n_classes, width = pb->hessian_width;
    const SK_REAL *e = (const SK_REAL *)blk->columns;    /* e[k * n_rows + i] */
    const SK_REAL *at_max = (const SK_REAL *)blk->strip; /* z_k = m, as 1 or 0, likewise */
    const double *sum_excl = blk->sum_excl;
    double *coef = blk->row_values;
    double *s = blk->short_work, *minus_cs = s + n_classes * G, *diag = minus_cs + n_classes * G;
    SK_REAL *tile = (SK_REAL *)(diag + n_classes * G);        /* tile[q * G + t], whole chunks of G */
    SK_REAL *group_rows = tile + (width + G - 1) / G * G * G; /* and G - 1 values of room */
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, coef, NULL);
    /* A last, partial group computes lanes past the block's rows from scratch values of no
     * meaning (inside the scratch: blocks of short rows have a multiple of G rows, and only
     * a call's last block has fewer); only its rows are copied out. */
    for (sk_index g0 = 0; g0 < n_rows; g0 += G) {
        for (sk_index k = 0; k < n_classes; ++k) {
            const sk_index col = k * n_rows + g0;
            SK_SIMD
            for (sk_index t = 0; t < G; ++t)
                SK_NAME(sk_short_factors)((double)e[col + t], at_max[col + t] != (SK_REAL)0, sum_excl[g0 + t],
                                          coef[g0 + t], &s[k * G + t], &minus_cs[k * G + t], &diag[k * G + t]);
        }
        /* The layout's part for matrix column j (a segment: see sk_write_hessian) holds
         * H[a][j] for a below j (upper and full), the diagonal, then for a above j (lower and
         * full); the segments follow one another. */
        SK_REAL *out = tile;
        for (sk_index j = 0; j < n_classes; ++j) {
            const sk_index below = pb->layout == SK_LAYOUT_PACKED_LOWER ? 0 : j;
            const sk_index above = pb->layout == SK_LAYOUT_PACKED_UPPER ? 0 : n_classes - 1 - j;
            SK_NAME(sk_tile_products)(out, minus_cs + j * G, s, below);
            out += below * G;
            SK_SIMD
            for (sk_index t = 0; t < G; ++t)
                out[t] = (SK_REAL)diag[j * G + t];
            out += G;
            SK_NAME(sk_tile_products)(out, s + j * G, minus_cs + (j + 1) * G, above);
            out += above * G;
        }
        const sk_index ahead = row_begin + g0 + SK_HESSIAN_AHEAD * G;
        if (ahead < pb->n_rows)
            sk_prefetch_lines((uintptr_t)SK_ROW(pb->hessian, ahead, width),
                              (uintptr_t)((pb->n_rows - ahead < G ? pb->n_rows - ahead : G) * width) *
                                  sizeof(SK_REAL),
                              1);
        const sk_index rows = n_rows - g0 < G ? n_rows - g0 : G;
        SK_NAME(sk_hessian_tile_avx512)(tile, group_rows, width);
        memcpy(SK_ROW(pb->hessian, row_begin + g0, width), group_rows, (size_t)(rows * width) * sizeof(SK_REAL));
    }
}
#endif

/* The Hessian diagonal without the Hessian, H_kk = (c s_k)(1 - s_k) with the formulas of
 * sk_short_hessian_outputs, computed across the block's rows one class at a time and
 * transposed out: the strip holds whether z_k = m (from sk_block_stats_columns), which it
 * then receives the diagonal in place of. */
SK_INLINE void SK_NAME(sk_short_diagonal_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                                  const sk_block *blk)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *e = (const SK_REAL *)blk->columns; /* e[k * n_rows + i] */
    SK_REAL *diag = (SK_REAL *)blk->strip;            /* z_k = m on entry, then H_kk, as columns */
    const double *sum_excl = blk->sum_excl;
    double *coef = blk->row_values;
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, coef, NULL);
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *e_col = e + k * n_rows;
        SK_REAL *diag_col = diag + k * n_rows;
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            double s_k, minus_cs_k, diag_k;
            SK_NAME(sk_short_factors)((double)e_col[i], diag_col[i] != (SK_REAL)0, sum_excl[i], coef[i], &s_k,
                                      &minus_cs_k, &diag_k);
            diag_col[i] = (SK_REAL)diag_k;
        }
    }
    /* The output never shares memory with z, and rows other than valid ones are written
     * again afterwards, so the whole block is transposed out. */
    SK_NAME(sk_columns_to_rows)(diag, SK_ROW(pb->hessian_diagonal, row_begin, n_classes), n_rows, n_classes);
}

/* The Hessian of short rows, and its diagonal with it where that is asked for too: in tiles
 * where the CPU has AVX-512, else row by row. */
SK_INLINE void SK_NAME(sk_short_hessian_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                                 const sk_block *blk)
{
#if SK_TILE_TRANSPOSE
    if (SK_NAME(sk_hessian_in_tiles)(pb)) {
        SK_NAME(sk_short_hessian_tiles)(pb, row_begin, n_rows, blk);
        if (pb->hessian_diagonal) /* after the Hessian: it overwrites the flags z_k = m */
            SK_NAME(sk_short_diagonal_outputs)(pb, row_begin, n_rows, blk);
        return;
    }
#endif
    SK_NAME(sk_short_hessian_rows)(pb, row_begin, n_rows, blk);
}

/* Hv, with v transposed like z. */
SK_INLINE void SK_NAME(sk_short_hvp_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                             const sk_block *blk, SK_REAL *assembly)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *v = SK_CROW(pb->v, row_begin, n_classes);
    const SK_REAL *e = (const SK_REAL *)blk->columns; /* e[k * n_rows + i] */
    SK_REAL *v_cols = (SK_REAL *)blk->strip;          /* v, then Hv, as columns */
    const double *sum_excl = blk->sum_excl;
    double *coef = blk->row_values, *argmax = coef + n_rows, *v_p = argmax + n_rows; /* p as a double */
    double *ev_sum = v_p + n_rows, *ev_err = ev_sum + n_rows, *ediff_sum = ev_err + n_rows;
    double *ediff_err = ediff_sum + n_rows, *finite_check = ediff_err + n_rows, *hv_argmax = finite_check + n_rows;
    double *sigma = ev_sum; /* once the sum is used */
    /* The block is transposed out whole: Hv never shares memory with z or v, and the rows
     * other than valid ones are written again afterwards. A large output is assembled in
     * `assembly` (room for the block, or NULL) and streamed out (see sk_label_outputs). */
    const int stream = assembly && SK_NAME(sk_all_valid)(blk->status, n_rows) && SK_NAME(sk_streams)(pb, n_classes);
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, coef, argmax);
    SK_NAME(sk_rows_to_columns)(v, v_cols, n_rows, n_classes);
    /* v_p and (below) e_p are gathered by loops of their own, as in sk_label_outputs: inside
     * the arithmetic loops, GCC's generic tuning (the portable build) made the whole loop
     * scalar, divisions included, and Hv ran 15% slower than in a -march=native build. */
    for (sk_index i = 0; i < n_rows; ++i)
        v_p[i] = (double)v[i * n_classes + (sk_index)argmax[i]];
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i)
        finite_check[i] = ev_sum[i] = ev_err[i] = ediff_sum[i] = ediff_err[i] = 0.0;
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *v_col = v_cols + k * n_rows, *e_col = e + k * n_rows;
        SK_NAME(sk_prefetch_next_rows)(pb, pb->v, row_begin, n_rows, k, n_classes, 0);
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            const double e_k = (double)k == argmax[i] ? 0.0 : (double)e_col[i];
            finite_check[i] += (double)v_col[i] * 0.0; /* NaN exactly when v has NaN or inf */
#if SK_IS_DOUBLE
            sk_two_sum_add(&ev_sum[i], &ev_err[i], e_k * (double)v_col[i]);
            sk_two_sum_add(&ediff_sum[i], &ediff_err[i], e_k * (v_p[i] - (double)v_col[i]));
#else
            /* float data: plain double sums (their errors stay 0). Their absolute error, at
             * most K 2^-53 times the sum of the terms' magnitudes, is far below float's
             * 2^-24 times the condition term that the accuracy bound allows (it includes
             * c s_k sum_j s_j |v_j| and the like), so compensation buys nothing here, and
             * dropping it made float32 Hv 5-13% faster (K = 4 to 16). */
            ev_sum[i] += e_k * (double)v_col[i];
            ediff_sum[i] += e_k * (v_p[i] - (double)v_col[i]);
#endif
        }
    }
    double *e_p = hv_argmax; /* until replaced by Hv_p */
    for (sk_index i = 0; i < n_rows; ++i)
        e_p[i] = (double)e[(sk_index)argmax[i] * n_rows + i];
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        const double sum = 1.0 + sum_excl[i];
        /* sk_macc_value: an infinite sum makes its error NaN; the sum is then the value */
        const double ev = ev_sum[i] - ev_sum[i] == 0.0 ? ev_sum[i] + ev_err[i] : ev_sum[i];
        const double ediff = ediff_sum[i] - ediff_sum[i] == 0.0 ? ediff_sum[i] + ediff_err[i] : ediff_sum[i];
        sigma[i] = (v_p[i] + ev) / sum;
        hv_argmax[i] = coef[i] * ((e_p[i] / sum) * (ediff / sum));
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        SK_REAL *v_col = v_cols + k * n_rows;
        const SK_REAL *e_col = e + k * n_rows;
        if (!stream)
            SK_NAME(sk_prefetch_next_rows)(pb, pb->hessian_vector_product, row_begin, n_rows, k, n_classes, 1);
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            v_col[i] = (SK_REAL)(coef[i] * (((double)e_col[i] / (1.0 + sum_excl[i])) * ((double)v_col[i] - sigma[i])));
    }
    SK_REAL *hv_block = stream ? assembly : SK_ROW(pb->hessian_vector_product, row_begin, n_classes);
    SK_NAME(sk_columns_to_rows)(v_cols, hv_block, n_rows, n_classes);
    for (sk_index i = 0; i < n_rows; ++i) {
        if (blk->status[i] != SK_ROW_VALID)
            continue;
        SK_REAL *hv = hv_block + i * n_classes;
        if (finite_check[i] != finite_check[i])
            SK_NAME(sk_fill)(hv, n_classes, NAN);
        else
            hv[(sk_index)argmax[i]] = (SK_REAL)hv_argmax[i];
    }
    if (stream)
        SK_NAME(sk_stream_copy)(SK_ROW(pb->hessian_vector_product, row_begin, n_classes), hv_block,
                                n_rows * n_classes);
}

/* Everything a target call asks for, for rows [row_begin, row_end); ignored rows are zero
 * whatever their logits hold, invalid rows NaN. */
SK_DISPATCH static void SK_NAME(sk_target_block)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                 double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    sk_block blk = sk_block_layout(scratch, n_classes, n_rows);
    /* Short rows without dense targets: every output from the columns (the gradient last: it
     * may overwrite z, and it scales the exp columns in place). Longer rows: the labels-only
     * training call row by row, anything else in the general loop below. */
    const int columns = SK_NAME(sk_is_short_sparse_call)(pb);
    const int label_rows = !columns && pb->n_classes > SK_SMALL_CLASSES && SK_NAME(sk_is_label_call)(pb);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, pb->row_loss != NULL, 1,
                            !columns || (pb->hessian && !SK_NAME(sk_hessian_in_tiles)(pb))); /* e as rows */
    if (columns) {
        if (pb->hessian)
            SK_NAME(sk_short_hessian_outputs)(pb, row_begin, n_rows, &blk);
        else if (pb->hessian_diagonal)
            SK_NAME(sk_short_diagonal_outputs)(pb, row_begin, n_rows, &blk);
        const int labels_follow = pb->target_kind == SK_TARGET_LABELS && (pb->row_loss || pb->gradient);
        if (pb->hessian_vector_product) /* the exp columns are free after it unless labels follow */
            SK_NAME(sk_short_hvp_outputs)(pb, row_begin, n_rows, &blk, labels_follow ? NULL : (SK_REAL *)blk.columns);
        if (labels_follow)
            SK_NAME(sk_label_outputs)(pb, row_begin, n_rows, &blk, (SK_REAL *)blk.columns, 1, n_rows);
    } else if (label_rows) {
        SK_NAME(sk_label_outputs)(pb, row_begin, n_rows, &blk, (SK_REAL *)blk.strip, n_classes, 1);
    }
    const int vectorised = columns || label_rows;
    if (vectorised && SK_NAME(sk_all_valid)(blk.status, n_rows))
        return; /* the common case: nothing left to do, and no per-row loop to run through */
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
            if (vectorised)
                break; /* done above */
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
#undef SK_HESSIAN_GROUP
#undef SK_HESSIAN_TILE_MAX_WIDTH
#undef SK_HESSIAN_AHEAD
#undef SK_CROW
#undef SK_EXP_ROW
#undef SK_EXTREME_GAP
#undef SK_ROW_LANES
