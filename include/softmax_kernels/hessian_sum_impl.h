/* softmax_kernels, stamped per data type: the Hessian summed over a block's rows, by group,
 * into compensated sums: sum_i H_i in packed upper order, never forming the rows' Hessians.
 *
 * Every term is computed as the per-row Hessian computes it (the recipe's step 7, with
 * 1 - s_k without cancellation), rounded once to double, and added with TwoSum to its
 * element's (sum, error) pair (where the CPU has FMA, GCC may fuse a term's last product into the
 * addition instead, and the path across rows is written so that clang does too:
 * sk_two_sum_add_product); the diagonal thus sums accurately computed terms c s_k (1 - s_k),
 * and the off-diagonal elements terms of one sign where c >= 0. Short rows without dense
 * targets and without groups take a path across rows (one SIMD lane per row, 8 lanes of
 * compensated accumulators per element, folded into the pair in a fixed order); all other
 * rows are added one at a time (row_outputs_impl.h, sk_add_row_hessian). The order of the
 * additions depends only on the rows, never on the threads.
 */

#ifndef SK_REAL
#error "hessian_sum_impl.h is stamped by kernels.h only"
#endif

/* Lanes of the accumulators of the path across rows: one vector of doubles. */
#define SK_SUM_LANES 8

/* Where the path across rows works: each row's factors, as columns of SK_SUM_LANES-padded rows. */
typedef struct {
    double *coef;     /* c per row */
    double *s;        /* s[k * padded_rows + i] */
    double *minus_cs; /* likewise */
    double *diag;     /* likewise */
    sk_index padded_rows;
} SK_NAME(sk_sum_scratch);

SK_INLINE SK_NAME(sk_sum_scratch) SK_NAME(sk_sum_view)(const sk_block *blk, sk_index n_rows, sk_index n_classes)
{
    SK_NAME(sk_sum_scratch) view;
    view.padded_rows = (n_rows + SK_SUM_LANES - 1) / SK_SUM_LANES * SK_SUM_LANES;
    view.coef = sk_row_values(blk, 0, n_rows);
    view.s = blk->sum_work;
    view.minus_cs = view.s + n_classes * view.padded_rows;
    view.diag = view.minus_cs + n_classes * view.padded_rows;
    return view;
}

/* The factors of every row of the block as columns; zero for the rows past n_rows and for the
 * rows the path does not add (ignored ones contribute nothing, the others are added later). */
SK_INLINE void SK_NAME(sk_sum_factors)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                       const sk_block *blk, const SK_NAME(sk_sum_scratch) *work)
{
    const sk_index n_classes = pb->n_classes, padded = work->padded_rows;
    const SK_REAL *e = (const SK_REAL *)blk->columns;         /* e[k * n_rows + i] */
    const SK_REAL *max_flags = (const SK_REAL *)blk->strip;   /* z_k = m, as 1 or 0, likewise */
    const double *sum_excl = blk->sum_excl, *coef = work->coef;
    double *s = work->s, *minus_cs = work->minus_cs, *diag = work->diag;
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, work->coef, NULL);
    for (sk_index k = 0; k < n_classes; ++k) {
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            SK_NAME(sk_short_factors)((double)e[k * n_rows + i], max_flags[k * n_rows + i] != (SK_REAL)0,
                                      sum_excl[i], coef[i], &s[k * padded + i], &minus_cs[k * padded + i],
                                      &diag[k * padded + i]);
        for (sk_index i = n_rows; i < padded; ++i)
            s[k * padded + i] = minus_cs[k * padded + i] = diag[k * padded + i] = 0.0;
    }
    if (!SK_NAME(sk_all_valid)(blk->status, n_rows))
        for (sk_index i = 0; i < n_rows; ++i)
            if (blk->status[i] != SK_ROW_VALID)
                for (sk_index k = 0; k < n_classes; ++k)
                    s[k * padded + i] = minus_cs[k * padded + i] = diag[k * padded + i] = 0.0;
}

/* Chunks of SK_SUM_LANES rows that one loop over the lanes adds in sk_sum_products. A lane adds
 * its rows in order whatever the count, so the sums do not depend on it; with several chunks per
 * loop clang keeps the lanes in registers between chunks, where one chunk per loop stores and
 * loads them for each (docs/performance-notes.md, "lane arrays"). */
#define SK_SUM_CHUNKS 4

/* Adds a[i] (times b[i] where b is not NULL) for the n_chunks * SK_SUM_LANES rows from 0 to the
 * lanes: row i to lane i % SK_SUM_LANES. Compilers vectorise it where n_chunks and whether b is
 * NULL are constants, so each call passes them. The lanes never overlap the rows (SK_RESTRICT):
 * told so, clang keeps them in registers across calls instead of checking for overlap at each. */
SK_INLINE void SK_NAME(sk_add_lane_chunks)(const double *SK_RESTRICT a, const double *SK_RESTRICT b,
                                           sk_index n_chunks, double *SK_RESTRICT lane_sum,
                                           double *SK_RESTRICT lane_error)
{
    if (b) {
        SK_SIMD_LANES
        for (sk_index l = 0; l < SK_SUM_LANES; ++l)
            for (sk_index c = 0; c < n_chunks; ++c)
                sk_two_sum_add_product(&lane_sum[l], &lane_error[l], a[c * SK_SUM_LANES + l],
                                       b[c * SK_SUM_LANES + l]);
    } else {
        SK_SIMD_LANES
        for (sk_index l = 0; l < SK_SUM_LANES; ++l)
            for (sk_index c = 0; c < n_chunks; ++c)
                sk_two_sum_add(&lane_sum[l], &lane_error[l], a[c * SK_SUM_LANES + l]);
    }
}

/* Adds sum_i a[i] (times b[i] where b is not NULL) over the padded rows to (*sum, *error):
 * SK_SUM_LANES compensated lanes, folded in lane order. */
SK_INLINE void SK_NAME(sk_sum_products)(const double *a, const double *b, sk_index padded_rows, double *sum,
                                        double *error)
{
    SK_LANE_ALIGNED double lane_sum[SK_SUM_LANES] = {0}, lane_error[SK_SUM_LANES] = {0};
    const sk_index step = SK_SUM_CHUNKS * SK_SUM_LANES;
    sk_index r0 = 0;
    for (; r0 + step <= padded_rows; r0 += step)
        SK_NAME(sk_add_lane_chunks)(a + r0, b ? b + r0 : NULL, SK_SUM_CHUNKS, lane_sum, lane_error);
    for (; r0 < padded_rows; r0 += SK_SUM_LANES)
        SK_NAME(sk_add_lane_chunks)(a + r0, b ? b + r0 : NULL, 1, lane_sum, lane_error);
    double total = *sum, total_error = *error; /* locals: registers, not the caller's memory */
    for (sk_index l = 0; l < SK_SUM_LANES; ++l) {
        sk_two_sum_add(&total, &total_error, lane_sum[l]);
        total_error += lane_error[l];
    }
    *sum = total;
    *error = total_error;
}

/* The path across rows: every element of the packed upper Hessian of the block's rows. */
SK_INLINE void SK_NAME(sk_sum_short_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                          const sk_block *blk, double *sum, double *error)
{
    const sk_index n_classes = pb->n_classes;
    const SK_NAME(sk_sum_scratch) work = SK_NAME(sk_sum_view)(blk, n_rows, n_classes);
    const sk_index padded = work.padded_rows;
    SK_NAME(sk_sum_factors)(pb, row_begin, n_rows, blk, &work);
    for (sk_index j = 0; j < n_classes; ++j) {
        const sk_index column = sk_packed_upper_index(0, j);
        for (sk_index i = 0; i < j; ++i) /* H_ij = -(c s_j) s_i */
            SK_NAME(sk_sum_products)(work.minus_cs + j * padded, work.s + i * padded, padded, &sum[column + i],
                                     &error[column + i]);
        SK_NAME(sk_sum_products)(work.diag + j * padded, NULL, padded, &sum[column + j], &error[column + j]);
    }
}

/* Adds the rows the path across rows did not (all rows, where it did not run) to their
 * groups: valid rows in double, extreme rows in SK_WIDE, invalid rows as NaN. */
SK_INLINE void SK_NAME(sk_sum_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, const sk_block *blk,
                                    int valid_rows_done, double *sum, double *error)
{
    const sk_index n_classes = pb->n_classes, width = n_classes * (n_classes + 1) / 2;
    double *e_work = (double *)blk->row_work, *s = e_work + n_classes, *minus_cs = s + n_classes;
    for (sk_index i = 0; i < n_rows; ++i) {
        const sk_index row = row_begin + i, group = pb->groups ? pb->groups[row] : 0;
        double *group_sum = sum + group * width, *group_error = error + group * width;
        const SK_REAL m = (SK_REAL)blk->row_max[i];
        if (blk->status[i] == SK_ROW_VALID && !valid_rows_done) {
            const SK_REAL *e_strip = (const SK_REAL *)blk->strip + i * n_classes;
            SK_NAME(sk_add_row_hessian_md)(pb, row, m, blk->sum_excl[i],
                                           SK_NAME(sk_exp_in_double)(e_strip, e_work, n_classes), s, minus_cs,
                                           group_sum, group_error);
        } else if (blk->status[i] == SK_ROW_EXTREME) {
            SK_WIDE *e = (SK_WIDE *)blk->row_work, *s_wide = e + n_classes, *minus_cs_wide = s_wide + n_classes;
            const SK_WIDE sum_excl = SK_NAME(sk_wide_exp_row)(pb, row, m, e);
            SK_WIDE_NAME(sk_add_row_hessian)(pb, row, m, sum_excl, e, s_wide, minus_cs_wide, group_sum, group_error);
        } else if (blk->status[i] == SK_ROW_INVALID) {
            for (sk_index q = 0; q < width; ++q)
                group_sum[q] = group_error[q] = NAN;
        }
    }
}

/* The Hessians of rows [row_begin, row_end) added to the compensated sums (sum, error) of
 * n_groups * K(K+1)/2 elements (packed upper, group by group): the rows' group from
 * pb->groups, or group 0 where it is NULL. */
SK_INLINE void SK_NAME(sk_hessian_sum_block_body)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                  double *scratch, double *sum, double *error)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    const sk_block blk = sk_block_layout(scratch, n_classes);
    const int across_rows = SK_NAME(sk_is_short_sparse_call)(pb) && !pb->groups;
    sk_stats_options options = {.detect_extreme = 1};
    options.exp_rows = !across_rows;
    options.max_flags = across_rows;
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, options);
    if (across_rows)
        SK_NAME(sk_sum_short_rows)(pb, row_begin, n_rows, &blk, sum, error);
    if (!across_rows || !SK_NAME(sk_all_valid)(blk.status, n_rows))
        SK_NAME(sk_sum_rows)(pb, row_begin, n_rows, &blk, across_rows, sum, error);
}
SK_DISPATCHED(SK_NAME(sk_hessian_sum_block), SK_NAME(sk_hessian_sum_block_body),
              (const sk_problem *pb, sk_index row_begin, sk_index row_end, double *scratch, double *sum,
               double *error),
              (pb, row_begin, row_end, scratch, sum, error))

/* The factors of rows [row_begin, row_end) for a summed Hessian assembled by matrix
 * products: per row (at index row - row_begin) s (K values), c and the diagonal terms
 * (c s_k)(1 - s_k) (K values), in double. Ignored rows are zero, invalid rows NaN. */
SK_INLINE void SK_NAME(sk_hessian_factors_block_body)(const sk_problem *pb, sk_index row_begin,
                                                      sk_index row_end, double *scratch, double *s_out,
                                                      double *c_out, double *diag_out)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    const sk_block blk = sk_block_layout(scratch, n_classes);
    const sk_stats_options options = {.detect_extreme = 1, .exp_rows = 1};
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, options);
    double *e_work = (double *)blk.row_work;
    for (sk_index i = 0; i < n_rows; ++i) {
        const sk_index row = row_begin + i;
        const SK_REAL m = (SK_REAL)blk.row_max[i];
        double *s_row = s_out + i * n_classes, *diag_row = diag_out + i * n_classes;
        if (blk.status[i] == SK_ROW_VALID) {
            const SK_REAL *e_strip = (const SK_REAL *)blk.strip + i * n_classes;
            c_out[i] = SK_NAME(sk_row_factors_md)(pb, row, m, blk.sum_excl[i],
                                                  SK_NAME(sk_exp_in_double)(e_strip, e_work, n_classes), s_row,
                                                  diag_row);
        } else if (blk.status[i] == SK_ROW_EXTREME) {
            SK_WIDE *e = (SK_WIDE *)blk.row_work;
            const SK_WIDE sum_excl = SK_NAME(sk_wide_exp_row)(pb, row, m, e);
            c_out[i] = SK_WIDE_NAME(sk_row_factors)(pb, row, m, sum_excl, e, s_row, diag_row);
        } else {
            const double fill = blk.status[i] == SK_ROW_IGNORED ? 0.0 : NAN;
            c_out[i] = fill;
            for (sk_index k = 0; k < n_classes; ++k)
                s_row[k] = diag_row[k] = fill;
        }
    }
}
SK_DISPATCHED(SK_NAME(sk_hessian_factors_block), SK_NAME(sk_hessian_factors_block_body),
              (const sk_problem *pb, sk_index row_begin, sk_index row_end, double *scratch,
               double *s_out, double *c_out, double *diag_out),
              (pb, row_begin, row_end, scratch, s_out, c_out, diag_out))

#undef SK_SUM_LANES
#undef SK_SUM_CHUNKS
