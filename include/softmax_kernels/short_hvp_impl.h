/* softmax_kernels, stamped per data type: the Hessian-vector product of short rows
 * (K <= SK_SMALL_CLASSES) without dense targets, with v transposed like z and every step of
 * sk_write_hessian_vector_product (row_outputs_impl.h) run across the block's rows:
 *   sigma = (v_p + sum_{j != p} e_j v_j) / S;  (Hv)_k = c (s_k (v_k - sigma)) for k != p;
 *   (Hv)_p = c s_p sum_{j != p} e_j (v_p - v_j) / S  (v_p - sigma without cancellation).
 */

#ifndef SK_REAL
#error "short_hvp_impl.h is stamped by kernels.h only"
#endif

/* Where Hv works: per-row arrays of the block's scratch. */
typedef struct {
    double *coef;         /* c */
    double *argmax;       /* p, as a double */
    double *v_argmax;     /* v_p */
    double *ev_sum;       /* sum_{j != p} e_j v_j, */
    double *ev_error;     /* and its TwoSum error (double data) */
    double *ediff_sum;    /* sum_{j != p} e_j (v_p - v_j), */
    double *ediff_error;  /* and its TwoSum error (double data) */
    double *finite_check; /* NaN exactly where v has a NaN or an infinity */
    double *hv_argmax;    /* (Hv)_p */
    double *e_argmax;     /* e_p */
    double *sigma;        /* (v_p + sum_{j != p} e_j v_j) / S */
} SK_NAME(sk_hvp_scratch);

/* e_argmax and sigma share blk->row_sums with sk_short_coefficients' y and z_y, which are
 * used up before them. */
SK_INLINE SK_NAME(sk_hvp_scratch) SK_NAME(sk_hvp_view)(const sk_block *blk, sk_index n_rows)
{
    SK_NAME(sk_hvp_scratch) view;
    view.coef = sk_row_values(blk, 0, n_rows);
    view.argmax = sk_row_values(blk, 1, n_rows);
    view.v_argmax = sk_row_values(blk, 2, n_rows);
    view.ev_sum = sk_row_values(blk, 3, n_rows);
    view.ev_error = sk_row_values(blk, 4, n_rows);
    view.ediff_sum = sk_row_values(blk, 5, n_rows);
    view.ediff_error = sk_row_values(blk, 6, n_rows);
    view.finite_check = sk_row_values(blk, 7, n_rows);
    view.hv_argmax = sk_row_values(blk, 8, n_rows);
    view.e_argmax = blk->row_sums;
    view.sigma = blk->row_sums + n_rows;
    return view;
}

/* v_p, and the two sums over j != p for each row, class by class across the rows (the columns
 * of v in v_cols). */
SK_INLINE void SK_NAME(sk_hvp_sums)(const sk_problem *pb, sk_index row_begin, sk_index n_rows, const sk_block *blk,
                                    const SK_REAL *v_cols, const SK_NAME(sk_hvp_scratch) *work)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *v = SK_CROW(pb->v, row_begin, n_classes), *e = (const SK_REAL *)blk->columns;
    /* v_p gathered by a loop of its own (see sk_label_coefficients): inside the arithmetic
     * loops, generic tuning made the whole loop scalar. */
    for (sk_index i = 0; i < n_rows; ++i)
        work->v_argmax[i] = (double)v[i * n_classes + (sk_index)work->argmax[i]];
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i)
        work->finite_check[i] = work->ev_sum[i] = work->ev_error[i] = work->ediff_sum[i] = work->ediff_error[i] = 0.0;
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_REAL *v_col = v_cols + k * n_rows, *e_col = e + k * n_rows;
        SK_NAME(sk_prefetch_next_rows)(pb, pb->v, row_begin, n_rows, k, n_classes, 0);
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i) {
            const double e_k = (double)k == work->argmax[i] ? 0.0 : (double)e_col[i];
            work->finite_check[i] += (double)v_col[i] * 0.0;
#if SK_IS_DOUBLE
            sk_two_sum_add(&work->ev_sum[i], &work->ev_error[i], e_k * (double)v_col[i]);
            sk_two_sum_add(&work->ediff_sum[i], &work->ediff_error[i], e_k * (work->v_argmax[i] - (double)v_col[i]));
#else
            /* float data: plain double sums (their errors stay 0), within float's accuracy
             * bound by far (docs/performance-notes.md, "short-row Hv of float data"). */
            work->ev_sum[i] += e_k * (double)v_col[i];
            work->ediff_sum[i] += e_k * (work->v_argmax[i] - (double)v_col[i]);
#endif
        }
    }
}

/* sigma and (Hv)_p per row, then (Hv)_k = c (s_k (v_k - sigma)) in place of v's columns. */
SK_INLINE void SK_NAME(sk_hvp_columns)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                       const sk_block *blk, SK_REAL *v_cols, int stream,
                                       const SK_NAME(sk_hvp_scratch) *work)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *e = (const SK_REAL *)blk->columns;
    const double *sum_excl = blk->sum_excl;
    for (sk_index i = 0; i < n_rows; ++i)
        work->e_argmax[i] = (double)e[(sk_index)work->argmax[i] * n_rows + i];
    SK_SIMD
    for (sk_index i = 0; i < n_rows; ++i) {
        const double sum = 1.0 + sum_excl[i];
        /* sk_macc_value: an infinite sum makes its error NaN; the sum is then the value */
        const double ev_sum = work->ev_sum[i], ediff_sum = work->ediff_sum[i];
        const double ev = ev_sum - ev_sum == 0.0 ? ev_sum + work->ev_error[i] : ev_sum;
        const double ediff = ediff_sum - ediff_sum == 0.0 ? ediff_sum + work->ediff_error[i] : ediff_sum;
        work->sigma[i] = (work->v_argmax[i] + ev) / sum;
        work->hv_argmax[i] = work->coef[i] * ((work->e_argmax[i] / sum) * (ediff / sum));
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        SK_REAL *v_col = v_cols + k * n_rows;
        const SK_REAL *e_col = e + k * n_rows;
        if (!stream)
            SK_NAME(sk_prefetch_next_rows)(pb, pb->hessian_vector_product, row_begin, n_rows, k, n_classes, 1);
        SK_SIMD
        for (sk_index i = 0; i < n_rows; ++i)
            v_col[i] = (SK_REAL)(work->coef[i] *
                                 (((double)e_col[i] / (1.0 + sum_excl[i])) * ((double)v_col[i] - work->sigma[i])));
    }
}

/* Hv of the block's valid rows. The block is transposed out whole: Hv never shares memory
 * with z or v, and the rows other than valid ones are written again afterwards. A large output
 * is assembled in `assembly` (room for the block, or NULL) and streamed out (see
 * sk_label_gradient). */
SK_INLINE void SK_NAME(sk_short_hvp_outputs)(const sk_problem *pb, sk_index row_begin, sk_index n_rows,
                                             const sk_block *blk, SK_REAL *assembly)
{
    const sk_index n_classes = pb->n_classes;
    const SK_NAME(sk_hvp_scratch) work = SK_NAME(sk_hvp_view)(blk, n_rows);
    SK_REAL *v_then_hv = (SK_REAL *)blk->strip; /* v, then Hv, as columns */
    const int stream = assembly && SK_NAME(sk_all_valid)(blk->status, n_rows) && SK_NAME(sk_streams)(pb, n_classes);
    SK_NAME(sk_short_coefficients)(pb, row_begin, n_rows, blk, work.coef, work.argmax);
    SK_NAME(sk_rows_to_columns)(SK_CROW(pb->v, row_begin, n_classes), v_then_hv, n_rows, n_classes);
    SK_NAME(sk_hvp_sums)(pb, row_begin, n_rows, blk, v_then_hv, &work);
    SK_NAME(sk_hvp_columns)(pb, row_begin, n_rows, blk, v_then_hv, stream, &work);
    SK_REAL *hv_block = stream ? assembly : SK_ROW(pb->hessian_vector_product, row_begin, n_classes);
    SK_NAME(sk_columns_to_rows)(v_then_hv, hv_block, n_rows, n_classes);
    for (sk_index i = 0; i < n_rows; ++i) {
        if (blk->status[i] != SK_ROW_VALID)
            continue;
        SK_REAL *hv = hv_block + i * n_classes;
        if (work.finite_check[i] != work.finite_check[i])
            SK_NAME(sk_fill)(hv, n_classes, NAN);
        else
            hv[(sk_index)work.argmax[i]] = (SK_REAL)work.hv_argmax[i];
    }
    if (stream)
        SK_NAME(sk_stream_copy)(SK_ROW(pb->hessian_vector_product, row_begin, n_classes), hv_block,
                                n_rows * n_classes);
}
