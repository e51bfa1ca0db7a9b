/* softmax_kernels, stamped per data type: the block kernels the driver calls — softmax,
 * log-softmax, and every output of a target call (sk_target_block, which picks the path for
 * the block) — and the "mean" denominator of a call.
 */

#ifndef SK_REAL
#error "entry_points_impl.h is stamped by kernels.h only"
#endif

/* ---- softmax and log-softmax ---------------------------------------------------------------- */

SK_INLINE void SK_NAME(sk_softmax_block_body)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                              double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    const sk_block blk = sk_block_layout(scratch, n_classes);
    SK_REAL *out_block = SK_ROW(pb->softmax, row_begin, n_classes);
    const int short_rows = n_classes <= SK_SMALL_CLASSES;
    /* Long rows scale e where it is, in the output where sk_exp_output_block allows; short
     * rows scale the exp columns and write them out by one transposition. */
    sk_stats_options options = {0};
    options.exp_rows_to = SK_NAME(sk_exp_output_block)(pb, pb->softmax, row_begin);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, options);
    double *inv_sum = sk_row_values(&blk, 0, n_rows);
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i)
        inv_sum[i] = 1.0 / (1.0 + blk.sum_excl[i]);
    if (short_rows) {
        SK_REAL *columns = (SK_REAL *)blk.columns;
        for (sk_index k = 0; k < n_classes; ++k) {
            SK_REAL *col = columns + k * n_rows;
            SK_SIMD
            for (sk_index i = 0; i < n_rows; ++i)
                col[i] *= (SK_REAL)inv_sum[i];
        }
        SK_NAME(sk_columns_to_rows)(columns, out_block, n_rows, n_classes);
    } else {
        const SK_REAL *e_rows = SK_NAME(sk_exp_rows_of)(&blk, options);
        for (sk_index i = 0; i < n_rows; ++i) {
            const SK_REAL *e = e_rows + i * n_classes;
            SK_REAL *out = out_block + i * n_classes;
            const SK_REAL row_inv_sum = (SK_REAL)inv_sum[i];
            SK_SIMD
            for (sk_index k = 0; k < n_classes; ++k)
                out[k] = e[k] * row_inv_sum;
        }
    }
    for (sk_index i = 0; i < n_rows; ++i)
        if (blk.status[i] == SK_ROW_INVALID)
            SK_NAME(sk_fill)(out_block + i * n_classes, n_classes, NAN);
}
SK_DISPATCHED(SK_NAME(sk_softmax_block), SK_NAME(sk_softmax_block_body),
              (const sk_problem *pb, sk_index row_begin, sk_index row_end, double *scratch),
              (pb, row_begin, row_end, scratch))

SK_INLINE void SK_NAME(sk_log_softmax_block_body)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                                  double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    const sk_block blk = sk_block_layout(scratch, n_classes);
    SK_REAL *out_block = SK_ROW(pb->log_softmax, row_begin, n_classes);
    /* T is all it needs of the exp values. Long rows still write them into the output where
     * they can: the lines are then in cache when the result overwrites them. */
    sk_stats_options options = {.log1p_sum = 1};
    options.exp_rows_to = SK_NAME(sk_exp_output_block)(pb, pb->log_softmax, row_begin);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, options);
    for (sk_index i = 0; i < n_rows; ++i) {
        const SK_REAL *z = SK_CROW(pb->z, row_begin + i, n_classes);
        SK_REAL *out = out_block + i * n_classes;
        if (blk.status[i] == SK_ROW_INVALID) {
            SK_NAME(sk_fill)(out, n_classes, NAN);
            continue;
        }
        /* (z_k - m) <= 0 and -log_sum <= 0 add without cancelling, so the three roundings in
         * SK_REAL (log_sum, z_k - m, the sum) add at most 2u of the result's magnitude to the
         * error log_sum carries from T (m is one of the z). out may alias z. Short rows end in
         * one masked vector (SK_MASKED_TAIL); long rows run faster unmasked. */
        const SK_REAL m = (SK_REAL)blk.row_max[i], log_sum = (SK_REAL)blk.log1p_sum[i];
#define SK_LOG_SOFTMAX_VALUE(k) ((z[k] - m) - log_sum)
        if (n_classes <= SK_SMALL_CLASSES) {
            SK_SIMD SK_MASKED_TAIL
            for (sk_index k = 0; k < n_classes; ++k)
                out[k] = SK_LOG_SOFTMAX_VALUE(k);
        } else {
            SK_SIMD
            for (sk_index k = 0; k < n_classes; ++k)
                out[k] = SK_LOG_SOFTMAX_VALUE(k);
        }
#undef SK_LOG_SOFTMAX_VALUE
    }
}
SK_DISPATCHED(SK_NAME(sk_log_softmax_block), SK_NAME(sk_log_softmax_block_body),
              (const sk_problem *pb, sk_index row_begin, sk_index row_end, double *scratch),
              (pb, row_begin, row_end, scratch))

/* ---- targets ------------------------------------------------------------------------------ */

/* e_k = exp(z_k - m) of a row in SK_WIDE, and T (computed as sk_excl_value does for double data). */
SK_INLINE SK_WIDE SK_NAME(sk_wide_exp_row)(const sk_problem *pb, sk_index row, SK_REAL row_max, SK_WIDE *e)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = (const SK_REAL *)pb->z + row * n_classes;
    SK_SIMD
    for (sk_index k = 0; k < n_classes; ++k)
        e[k] = SK_WIDE_EXP((SK_WIDE)z[k] - (SK_WIDE)row_max);
    SK_WIDE_NAME(sk_macc) total = {0, 0};
    for (sk_index k = 0; k < n_classes; ++k)
        SK_WIDE_NAME(sk_macc_add)(&total, e[k]);
    return (total.sum - 1) + total.err;
}

/* A row computed all in SK_WIDE: the extreme rows, and for float data the rows whose gradient
 * subtracts dense targets (where float's exp would cost digits the contract promises). */
SK_INLINE void SK_NAME(sk_target_row_wide)(const sk_problem *pb, sk_index row, SK_REAL row_max, void *row_work)
{
    const sk_index n_classes = pb->n_classes;
    SK_WIDE *e = (SK_WIDE *)row_work, *s = e + n_classes, *minus_cs = s + n_classes;
    const SK_WIDE sum_excl = SK_NAME(sk_wide_exp_row)(pb, row, row_max, e);
    SK_WIDE_NAME(sk_target_outputs)(pb, row, row_max, sum_excl, SK_WIDE_LOG1P(sum_excl), e, 0, s, minus_cs);
}

/* Every output of a row set to `fill`: 0 for ignored rows, NaN for invalid ones. */
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

/* Short rows without dense targets: every output from the columns, the labels' loss and
 * gradient last (the gradient may overwrite z, and it scales the exp columns in place). */
SK_INLINE void SK_NAME(sk_short_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                         const sk_block *blk)
{
    if (pb->hessian)
        SK_NAME(sk_short_hessian_outputs)(pb, row_begin, n_rows, blk);
    else if (pb->hessian_diagonal)
        SK_NAME(sk_short_diagonal_outputs)(pb, row_begin, n_rows, blk);
    const int labels_follow = pb->target_kind == SK_TARGET_LABELS && (pb->row_loss || pb->gradient);
    if (pb->hessian_vector_product) /* the exp columns are free after it unless labels follow */
        SK_NAME(sk_short_hvp_outputs)(pb, row_begin, n_rows, blk, labels_follow ? NULL : (SK_REAL *)blk->columns);
    if (labels_follow)
        SK_NAME(sk_label_outputs)(pb, row_begin, n_rows, blk, (SK_REAL *)blk->columns, 1, n_rows);
}

/* A row's exp values from the strip as doubles: the strip's own for double data, else
 * converted into `work`. */
SK_INLINE const double *SK_NAME(sk_exp_in_double)(const SK_REAL *e_strip, double *work, sk_index n_classes)
{
#if SK_IS_DOUBLE
    (void)work, (void)n_classes;
    return e_strip;
#else
    SK_SIMD
    for (sk_index k = 0; k < n_classes; ++k)
        work[k] = (double)e_strip[k];
    return work;
#endif
}

/* The rows the vectorised paths left (or all, where none ran): valid rows one by one in
 * double (row_outputs_impl.h), extreme rows in SK_WIDE, the others filled. */
SK_INLINE void SK_NAME(sk_target_rows)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                       const sk_block *blk, int valid_rows_done)
{
    const sk_index n_classes = pb->n_classes;
    double *e_work = (double *)blk->row_work, *s = e_work + n_classes, *minus_cs = s + n_classes;
    /* float data: a gradient c s_k - a_k with dense targets needs s_k to double precision. */
    const int dense_gradient = !SK_IS_DOUBLE && pb->gradient &&
                               (pb->target_kind == SK_TARGET_SOFT ||
                                (pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing != 0.0));
    for (sk_index i = 0; i < n_rows; ++i) {
        const sk_index row = row_begin + i;
        const SK_REAL m = (SK_REAL)blk->row_max[i];
        const SK_REAL *e_strip = (const SK_REAL *)blk->strip + i * n_classes;
        const int status = blk->status[i] == SK_ROW_VALID && dense_gradient ? SK_ROW_EXTREME : blk->status[i];
        switch (status) {
        case SK_ROW_VALID:
            if (!valid_rows_done)
                SK_NAME(sk_target_outputs_md)(pb, row, m, blk->sum_excl[i], blk->log1p_sum[i],
                                              SK_NAME(sk_exp_in_double)(e_strip, e_work, n_classes), 1, s,
                                              minus_cs);
            break;
        case SK_ROW_EXTREME:
            SK_NAME(sk_target_row_wide)(pb, row, m, blk->row_work);
            break;
        default:
            SK_NAME(sk_fill_target_row)(pb, row, status == SK_ROW_IGNORED ? 0.0 : NAN);
        }
    }
}

/* Everything a target call asks for, for rows [row_begin, row_end); ignored rows are zero
 * whatever their logits hold, invalid rows NaN. Short rows without dense targets take the
 * columns; longer rows of the labels-only training call the labels path; anything else, and
 * the rows those leave, go row by row. */
SK_INLINE void SK_NAME(sk_target_block_body)(const sk_problem *pb, sk_index row_begin, sk_index row_end,
                                             double *scratch)
{
    const sk_index n_classes = pb->n_classes, n_rows = row_end - row_begin;
    const sk_block blk = sk_block_layout(scratch, n_classes);
    const int columns = SK_NAME(sk_is_short_sparse_call)(pb);
    const int label_rows = !columns && n_classes > SK_SMALL_CLASSES && SK_NAME(sk_is_label_call)(pb);
    const int hessian_tiles = SK_NAME(sk_hessian_in_tiles)(pb);
    sk_stats_options options = {.log1p_sum = pb->row_loss != NULL, .detect_extreme = 1};
    options.exp_rows = !columns || (pb->hessian && !hessian_tiles);
    options.max_flags = columns && ((pb->hessian_diagonal && !pb->hessian) || hessian_tiles);
    options.first_argmax = columns && pb->hessian_vector_product;
    /* The labels path scales e into the gradient in place where it can, unless the gradient
     * is streamed out of the strip. */
    if (label_rows && !SK_NAME(sk_streams)(pb, n_classes))
        options.exp_rows_to = SK_NAME(sk_exp_output_block)(pb, pb->gradient, row_begin);
    SK_NAME(sk_block_stats)(pb, row_begin, n_rows, &blk, options);
    if (columns)
        SK_NAME(sk_short_outputs)(pb, row_begin, n_rows, &blk);
    else if (label_rows)
        SK_NAME(sk_label_outputs)(pb, row_begin, n_rows, &blk, SK_NAME(sk_exp_rows_of)(&blk, options), n_classes, 1);
    const int vectorised = columns || label_rows;
    if (vectorised && SK_NAME(sk_all_valid)(blk.status, n_rows))
        return; /* the common case: nothing left to do, and no per-row loop to run through */
    SK_NAME(sk_target_rows)(pb, row_begin, n_rows, &blk, vectorised);
}
SK_DISPATCHED(SK_NAME(sk_target_block), SK_NAME(sk_target_block_body),
              (const sk_problem *pb, sk_index row_begin, sk_index row_end, double *scratch),
              (pb, row_begin, row_end, scratch))

/* ---- the "mean" denominator ------------------------------------------------------------------ */

/* D = sum of w cw_y over non-ignored rows (labels), else sum of w or N: the rule of
 * src/softmax_kernels/_reduction.py, in one compensated pass over the rows. */
static double SK_NAME(sk_mean_denominator)(const sk_problem *pb)
{
    const SK_REAL *w = (const SK_REAL *)pb->sample_weight;
    const SK_REAL *cw = (const SK_REAL *)pb->class_weight;
    sk_lanes acc;
    sk_lanes_init(&acc);
    for (sk_index i = 0; i < pb->n_rows; ++i) {
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
