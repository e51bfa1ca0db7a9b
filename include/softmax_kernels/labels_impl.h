/* softmax_kernels, stamped per data type: the per-row coefficients of calls without dense
 * targets (labels without smoothing, or no targets), and the labels path: loss and gradient
 * of such calls computed in loops across a block's rows.
 *
 * Without dense targets a row's target vector is zero but at the label, a_y = w cw_y (1 - eps)
 * (or there are no targets and c = w), so a row's coefficients are a few numbers. They are
 * computed here for a whole block in loops vectorised across rows (no per-row set-up), with
 * the formulas of row_outputs_impl.h in the same order, so that both paths give the same bits
 * where the compiler fuses multiply-adds alike in both. Rows other than valid ones are
 * computed too (an ignored row's label, possibly out of range, is replaced by 0) but never
 * stored: the entry point writes them afterwards.
 */

#ifndef SK_REAL
#error "labels_impl.h is stamped by kernels.h only"
#endif

/* The label of a row, clamped into [0, K) for the rows that are not used. */
SK_INLINE sk_index SK_NAME(sk_usable_label)(const sk_problem *pb, sk_index row)
{
    const uint64_t label = (uint64_t)pb->labels[row];
    return label < (uint64_t)pb->n_classes ? (sk_index)label : 0;
}

/* Whether a valid row's gradient g_k = scale e_k (k != y) is one product in the data type,
 * e_k times scale rounded to it: float data whose scale rounds to a finite float. A valid
 * row's e_k is a float that is 0 or normal, and |g_k| <= |scale|, so the two roundings leave
 * g_k within 2u |g_k| + 2^-149 of the exact product (one rounding: u |g_k| + 2^-150), and the
 * loop runs without conversions. Otherwise the product is taken in double and rounded once.
 * The labels path and the row path both decide by it, so that they give the same bits. */
SK_INLINE int SK_NAME(sk_gradient_scale_in_data_type)(double scale)
{
#if SK_IS_DOUBLE
    (void)scale;
    return 0;
#else
    return fabs((double)(SK_REAL)scale) <= (double)FLT_MAX;
#endif
}

/* c = c_excl + a_p for labels without smoothing, as sk_target_sums adds them: the label's
 * weight alpha is a_p when the label is a maximum, else c_excl (the other term is 0). */
SK_INLINE double SK_NAME(sk_label_c)(double alpha, int label_is_max)
{
    return (label_is_max ? 0.0 : alpha) + (label_is_max ? alpha : 0.0);
}

/* weight[i] = w / D, times cw_y with labels (the factor of a_y before 1 - eps). The optional
 * arrays are applied in loops of their own, so that no loop has conditional loads (which
 * would keep it from vectorising). */
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

/* ---- labels without smoothing, loss and gradient: the training call --------------------------
 * All a row's outputs follow from m, T, log1p(T), z_y and e_y; each row's gradient
 * g_k = (c / S) e_k is then written in one pass and its label's element replaced. */

SK_INLINE int SK_NAME(sk_is_label_call)(const sk_problem *pb)
{
    return pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing == 0.0 && !pb->hessian &&
           !pb->hessian_diagonal && !pb->hessian_vector_product;
}

/* The labels path's per-row values, in the block's scratch (free after the statistics). */
typedef struct {
    double *weight;         /* w cw_y / D */
    double *label_logit;    /* z_y */
    double *label_exp;      /* e_y */
    double *loss;           /* the row's loss */
    double *scale;          /* c / S: g_k = scale e_k for k != y */
    double *label_gradient; /* g_y */
} SK_NAME(sk_label_scratch);

SK_INLINE SK_NAME(sk_label_scratch) SK_NAME(sk_label_view)(const sk_block *blk, sk_index n_rows)
{
    SK_NAME(sk_label_scratch) view;
    view.label_logit = sk_row_values(blk, 0, n_rows);
    view.label_exp = sk_row_values(blk, 1, n_rows);
    view.weight = sk_row_values(blk, 2, n_rows);
    view.loss = sk_row_values(blk, 3, n_rows);
    view.scale = blk->row_sums;
    view.label_gradient = blk->row_sums + n_rows;
    return view;
}

/* Steps 3-6 of the recipe for a block: each row's loss, gradient scale and label gradient
 * (sk_target_sums and sk_write_gradient, across rows). The exp values of row i, class k, are
 * at e[i * row_stride + k * class_stride]. */
SK_INLINE void SK_NAME(sk_label_coefficients)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                              const sk_block *blk, const SK_REAL *e, sk_index row_stride,
                                              sk_index class_stride, const SK_NAME(sk_label_scratch) *work)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = (const SK_REAL *)pb->z;
    const int want_loss = pb->row_loss != NULL;
    /* The view's arrays as locals: loops then keep the pointers in registers. */
    double *weight = work->weight, *label_logit = work->label_logit, *label_exp = work->label_exp;
    double *loss = work->loss, *scale = work->scale, *label_gradient = work->label_gradient;
    const double *row_max = blk->row_max, *sum_excl = blk->sum_excl, *log1p_sum = blk->log1p_sum;
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
        const double m = row_max[i], sum = 1.0 + sum_excl[i];
        const double z_y = label_logit[i], e_y = label_exp[i];
        const int label_is_max = z_y == m;
        const double c = SK_NAME(sk_label_c)(alpha, label_is_max);
        const double dot = alpha != 0.0 ? alpha * (m - z_y) : 0.0;
        loss[i] = want_loss ? dot + c * log1p_sum[i] : 0.0;
        scale[i] = c / sum;
        label_gradient[i] = label_is_max ? -(alpha * sum_excl[i] / sum) : c * (e_y / sum) - alpha;
    }
}

/* The gradient of each valid row: g_k = scale e_k, then g_y. A large gradient is assembled in
 * the strip and streamed out in one piece (long rows one by one, over the exp values each row
 * has just read; short rows by a transposition). Only blocks of valid rows are streamed: the
 * other rows are written later, and one recomputed in a wider type reads its logits again,
 * which an in-place call (gradient = z) must not have overwritten. */
SK_INLINE void SK_NAME(sk_label_gradient)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                          const sk_block *blk, SK_REAL *e, sk_index row_stride,
                                          sk_index class_stride, const SK_NAME(sk_label_scratch) *work)
{
    const sk_index n_classes = pb->n_classes;
    const unsigned char *status = blk->status;
    const double *scale = work->scale, *label_gradient = work->label_gradient;
    const int64_t *labels = pb->labels;
    const int all_valid = SK_NAME(sk_all_valid)(status, n_rows);
    const int stream = all_valid && SK_NAME(sk_streams)(pb, n_classes);
    SK_REAL *g_block = stream ? (SK_REAL *)blk->strip : SK_ROW(pb->gradient, row_begin, n_classes);
    if (class_stride != 1) {
        /* Short rows (e as columns: class_stride = n_rows): the whole gradient in place, g_k =
         * scale e_k and g_y selected across rows, so that writing the rows out is a
         * transposition, of the whole block at once when every row is valid. Only valid rows
         * are written out, so what the other rows' labels select does not matter. Each row
         * multiplies as sk_gradient_scale_in_data_type says; the loop for a block where every
         * row multiplies in the data type leaves out the products in double. */
        const int64_t *row_labels = labels + row_begin;
        int scales_in_data_type = !SK_IS_DOUBLE;
        for (sk_index i = 0; i < n_rows; ++i)
            scales_in_data_type &= SK_NAME(sk_gradient_scale_in_data_type)(scale[i]);
        for (sk_index k = 0; k < n_classes; ++k) {
            SK_REAL *col = e + k * class_stride;
            if (!stream) /* streaming stores do not read the lines they write */
                SK_NAME(sk_prefetch_next_rows)(pb, pb->gradient, row_begin, n_rows, k, n_classes, 1);
            if (scales_in_data_type) {
                SK_SIMD
                for (sk_index i = 0; i < n_rows; ++i) {
                    const SK_REAL scaled = col[i] * (SK_REAL)scale[i];
                    col[i] = row_labels[i] == (int64_t)k ? (SK_REAL)label_gradient[i] : scaled;
                }
            } else {
                SK_SIMD
                for (sk_index i = 0; i < n_rows; ++i) {
                    const SK_REAL scaled = SK_NAME(sk_gradient_scale_in_data_type)(scale[i])
                                               ? col[i] * (SK_REAL)scale[i]
                                               : (SK_REAL)((double)col[i] * scale[i]);
                    col[i] = row_labels[i] == (int64_t)k ? (SK_REAL)label_gradient[i] : scaled;
                }
            }
        }
        if (all_valid) {
            SK_NAME(sk_columns_to_rows)(e, g_block, n_rows, n_classes);
        } else {
            for (sk_index i = 0; i < n_rows; ++i)
                if (status[i] == SK_ROW_VALID)
                    for (sk_index k = 0; k < n_classes; ++k)
                        g_block[i * n_classes + k] = e[i + k * class_stride];
        }
    } else {
        for (sk_index i = 0; i < n_rows; ++i) {
            if (status[i] != SK_ROW_VALID)
                continue;
            SK_REAL *g = g_block + i * n_classes;
            const SK_REAL *e_row = e + i * row_stride;
            const double row_scale = scale[i];
            if (SK_NAME(sk_gradient_scale_in_data_type)(row_scale)) {
                const SK_REAL row_scale_rounded = (SK_REAL)row_scale;
                SK_SIMD
                for (sk_index k = 0; k < n_classes; ++k)
                    g[k] = e_row[k] * row_scale_rounded;
            } else {
                SK_SIMD
                for (sk_index k = 0; k < n_classes; ++k)
                    g[k] = (SK_REAL)((double)e_row[k] * row_scale);
            }
            g[labels[row_begin + i]] = (SK_REAL)label_gradient[i];
        }
    }
    if (stream)
        SK_NAME(sk_stream_copy)(SK_ROW(pb->gradient, row_begin, n_classes), g_block, n_rows * n_classes);
}

/* The loss and gradient of a labels call, for the valid rows of a block. */
SK_INLINE void SK_NAME(sk_label_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                         const sk_block *blk, SK_REAL *e, sk_index row_stride,
                                         sk_index class_stride)
{
    const SK_NAME(sk_label_scratch) work = SK_NAME(sk_label_view)(blk, n_rows);
    SK_NAME(sk_label_coefficients)(pb, row_begin, n_rows, blk, e, row_stride, class_stride, &work);
    if (pb->row_loss)
        SK_NAME(sk_store_block_loss)(pb, row_begin, n_rows, blk->status, work.loss);
    if (pb->gradient)
        SK_NAME(sk_label_gradient)(pb, row_begin, n_rows, blk, e, row_stride, class_stride, &work);
}
