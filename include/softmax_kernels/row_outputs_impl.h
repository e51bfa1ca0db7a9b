/* softmax_kernels, stamped per data type and arithmetic: a target call's outputs for one row
 * with any targets (steps 3 to 9 of the recipe in kernels.h), the general path and the one
 * for rows the vectorised paths leave.
 *
 * Stamped by stamp_data_type.h with SK_REAL (the data type), SK_MATH (the arithmetic: double,
 * or long double for the extreme rows of double data) and SK_MNAME(x) (a name unique to the
 * pair). The row arrives as e_k = exp(z_k - m) in SK_MATH with T, S = 1 + T and log1p(T).
 */

#ifndef SK_MATH
#error "row_outputs_impl.h is stamped by stamp_data_type.h only"
#endif

/* TwoSum accumulation in SK_MATH (see sk_acc in common.h). */
typedef struct {
    SK_MATH sum, err;
} SK_MNAME(sk_macc);

SK_INLINE void SK_MNAME(sk_macc_add)(SK_MNAME(sk_macc) *acc, SK_MATH x)
{
    SK_MATH t = acc->sum + x;
    SK_MATH bp = t - acc->sum;
    acc->err += (acc->sum - (t - bp)) + (x - bp);
    acc->sum = t;
}

SK_INLINE SK_MATH SK_MNAME(sk_macc_value)(const SK_MNAME(sk_macc) *acc)
{
    /* sum - sum is 0 exactly when sum is finite; an infinite sum makes err NaN. */
    return acc->sum - acc->sum == 0 ? acc->sum + acc->err : acc->sum;
}

/* a_k for one row: labels a = w (eps/K) cw + w cw_y (1 - eps) onehot(y);
 * soft targets a = w cw ((1 - eps) y + eps/K). */
SK_INLINE SK_MATH SK_MNAME(sk_target_weight)(const sk_problem *pb, sk_index row, SK_MATH row_weight,
                                             SK_MATH label_coefficient, sk_index k)
{
    const SK_REAL *cw = (const SK_REAL *)pb->class_weight;
    if (pb->target_kind == SK_TARGET_SOFT) {
        SK_MATH t = SK_CROW(pb->soft_targets, row, pb->n_classes)[k];
        if (pb->label_smoothing != 0.0)
            t = t * (SK_MATH)pb->one_minus_eps + (SK_MATH)pb->eps_over_k;
        if (cw)
            t = t * (SK_MATH)cw[k];
        return t * row_weight;
    }
    SK_MATH a = 0;
    if (pb->label_smoothing != 0.0)
        a = (row_weight * (SK_MATH)pb->eps_over_k) * (cw ? (SK_MATH)cw[k] : 1);
    if (k == pb->labels[row])
        a += label_coefficient;
    return a;
}

typedef struct {
    SK_REAL row_max;
    sk_index argmax;           /* an arg-max; only searched when needed */
    SK_MATH sum_excl_argmax;   /* T */
    SK_MATH sum;               /* S = 1 + T */
    SK_MATH row_weight;        /* w */
    SK_MATH label_coefficient; /* w cw_y (1 - eps), labels only */
    SK_MATH a_argmax;          /* a_p */
    SK_MATH c_excl;            /* sum_{k != p} a_k */
    SK_MATH c;                 /* sum_k a_k (w without targets) */
    SK_MATH dot;               /* sum_{a_k != 0} a_k (m - z_k) */
    int sparse_labels;         /* labels without smoothing: a is zero but at y */
    sk_index label;
    int label_is_max; /* z_y = m: y can play the arg-max class */
} SK_MNAME(sk_row_state);

/* Step 3: the target sums; labels without smoothing touch one class and need no arg-max. */
SK_INLINE void SK_MNAME(sk_target_sums)(const sk_problem *pb, sk_index row, const SK_REAL *z,
                                        SK_MNAME(sk_row_state) *st)
{
    if (pb->target_kind == SK_TARGET_NONE) {
        st->c = st->row_weight;
        return;
    }
    if (st->sparse_labels) {
        const SK_MATH alpha = st->label_coefficient;
        st->a_argmax = st->label_is_max ? alpha : 0;
        st->c_excl = st->label_is_max ? 0 : alpha;
        st->dot = alpha != 0 ? alpha * ((SK_MATH)st->row_max - (SK_MATH)z[st->label]) : 0;
    } else {
        const sk_index p = st->argmax;
        SK_MNAME(sk_macc) c_excl = {0, 0}, dot = {0, 0};
        for (sk_index k = 0; k < pb->n_classes; ++k) {
            SK_MATH a = SK_MNAME(sk_target_weight)(pb, row, st->row_weight, st->label_coefficient, k);
            SK_MNAME(sk_macc_add)(&c_excl, k == p ? 0 : a);
            /* a zero weight on a -inf logit contributes 0, not 0 * inf = NaN */
            SK_MNAME(sk_macc_add)(&dot, a != 0 ? a * ((SK_MATH)st->row_max - (SK_MATH)z[k]) : 0);
        }
        st->a_argmax = SK_MNAME(sk_target_weight)(pb, row, st->row_weight, st->label_coefficient, p);
        st->c_excl = SK_MNAME(sk_macc_value)(&c_excl);
        st->dot = SK_MNAME(sk_macc_value)(&dot);
    }
    st->c = st->c_excl + st->a_argmax;
}

/* 1 - s_k without cancellation (step 5). */
SK_INLINE SK_MATH SK_MNAME(sk_one_minus_s)(const SK_MNAME(sk_row_state) *st, SK_REAL z_k, SK_MATH e_k)
{
    return z_k == st->row_max ? st->sum_excl_argmax / st->sum : (st->sum - e_k) / st->sum;
}

/* e_in_data_type: each e_k is a value of the data type (a valid row's, not a wide row's). */
SK_INLINE void SK_MNAME(sk_write_gradient)(const sk_problem *pb, sk_index row, const SK_MNAME(sk_row_state) *st,
                                           const SK_MATH *e, int e_in_data_type, const SK_MATH *s, SK_REAL *g)
{
    const sk_index n_classes = pb->n_classes;
    const SK_MATH c = st->c;
    if (st->sparse_labels) {
        /* g_k = c s_k, one multiply per class (as the labels path multiplies); then the
         * label's class. */
        const SK_MATH scale = c / st->sum;
        if (e_in_data_type && SK_NAME(sk_gradient_scale_in_data_type)((double)scale)) {
            const SK_REAL scale_rounded = (SK_REAL)scale;
            SK_SIMD
            for (sk_index k = 0; k < n_classes; ++k)
                g[k] = (SK_REAL)e[k] * scale_rounded;
        } else {
            SK_SIMD
            for (sk_index k = 0; k < n_classes; ++k)
                g[k] = (SK_REAL)(e[k] * scale);
        }
        const sk_index y = st->label;
        if (st->label_is_max) /* g_y = -a_y (1 - s_y) = -a_y T / S */
            g[y] = (SK_REAL)(-(st->label_coefficient * st->sum_excl_argmax / st->sum));
        else /* s_y <= 1/2 here: c s_y - a_y loses at most one bit */
            g[y] = (SK_REAL)(c * s[y] - st->label_coefficient);
        return;
    }
    for (sk_index k = 0; k < n_classes; ++k) {
        SK_MATH a = SK_MNAME(sk_target_weight)(pb, row, st->row_weight, st->label_coefficient, k);
        g[k] = (SK_REAL)(c * s[k] - a);
    }
    const sk_index p = st->argmax;
    g[p] = (SK_REAL)(st->c_excl / st->sum - st->a_argmax * st->sum_excl_argmax / st->sum);
}

SK_INLINE void SK_MNAME(sk_write_hessian)(const sk_problem *pb, const SK_MNAME(sk_row_state) *st, const SK_REAL *z,
                                          const SK_MATH *e, const SK_MATH *s, SK_MATH *minus_cs, SK_MATH coef,
                                          SK_REAL *h)
{
    const sk_index n_classes = pb->n_classes;
    for (sk_index k = 0; k < n_classes; ++k)
        minus_cs[k] = -(coef * s[k]);
    /* H_ij = minus_cs[max(i, j)] * s[min(i, j)]: every layout stores bitwise the same numbers. */
    for (sk_index j = 0; j < n_classes; ++j) {
        const SK_MATH diag = (coef * s[j]) * SK_MNAME(sk_one_minus_s)(st, z[j], e[j]);
        if (pb->layout == SK_LAYOUT_PACKED_UPPER) {
            SK_REAL *col = h + sk_packed_upper_index(0, j); /* H[0..j][j] */
            /* The default layout's columns run long at large K: under clang whole chunks go
             * unmasked before the masked remainder (SK_MASKED_TAIL_CHUNK). */
            sk_index i = 0;
#if SK_MASKED_TAIL_CHUNK
            for (; i + SK_MASKED_TAIL_CHUNK <= j; i += SK_MASKED_TAIL_CHUNK) {
                SK_SIMD
                for (sk_index l = 0; l < SK_MASKED_TAIL_CHUNK; ++l)
                    col[i + l] = (SK_REAL)(minus_cs[j] * s[i + l]);
            }
#endif
            SK_MASKED_TAIL
            for (; i < j; ++i)
                col[i] = (SK_REAL)(minus_cs[j] * s[i]);
            col[j] = (SK_REAL)diag;
        } else if (pb->layout == SK_LAYOUT_PACKED_LOWER) {
            SK_REAL *col = h + sk_packed_lower_index(j, j, n_classes); /* H[j..K-1][j] */
            col[0] = (SK_REAL)diag;
            SK_MASKED_TAIL
            for (sk_index i = j + 1; i < n_classes; ++i)
                col[i - j] = (SK_REAL)(minus_cs[i] * s[j]);
        } else {
            SK_REAL *full_row = h + j * n_classes; /* H[j][0..K-1] */
            SK_MASKED_TAIL
            for (sk_index i = 0; i < j; ++i)
                full_row[i] = (SK_REAL)(minus_cs[j] * s[i]);
            full_row[j] = (SK_REAL)diag;
            SK_MASKED_TAIL
            for (sk_index i = j + 1; i < n_classes; ++i)
                full_row[i] = (SK_REAL)(minus_cs[i] * s[j]);
        }
    }
}

SK_INLINE void SK_MNAME(sk_write_hessian_vector_product)(const sk_problem *pb, sk_index row,
                                                         const SK_MNAME(sk_row_state) *st, const SK_MATH *e,
                                                         const SK_MATH *s, SK_MATH coef, SK_REAL *hv)
{
    const sk_index n_classes = pb->n_classes, p = st->argmax;
    const SK_REAL *v = SK_CROW(pb->v, row, n_classes);
    const SK_MATH v_p = v[p];
    /* A NaN or infinity in v makes the row NaN (inf - inf has no meaning here); v * 0 is
     * NaN exactly for those. */
    SK_MATH finite_check = 0;
    for (sk_index j = 0; j < n_classes; ++j)
        finite_check += (SK_MATH)v[j] * 0;
    if (finite_check != finite_check) {
        for (sk_index k = 0; k < n_classes; ++k)
            hv[k] = (SK_REAL)NAN;
        return;
    }
    SK_MNAME(sk_macc) ev = {0, 0}, ediff = {0, 0};
    for (sk_index j = 0; j < n_classes; ++j) {
        SK_MATH ej = j == p ? 0 : e[j];
        SK_MNAME(sk_macc_add)(&ev, ej * (SK_MATH)v[j]);
        SK_MNAME(sk_macc_add)(&ediff, ej * (v_p - (SK_MATH)v[j]));
    }
    const SK_MATH sigma = (v_p + SK_MNAME(sk_macc_value)(&ev)) / st->sum;
    /* c multiplies last: a tiny c must not round s_k (v_k - sigma) into the subnormals early. */
    for (sk_index k = 0; k < n_classes; ++k)
        hv[k] = (SK_REAL)(coef * (s[k] * ((SK_MATH)v[k] - sigma)));
    hv[p] = (SK_REAL)(coef * (s[p] * (SK_MNAME(sk_macc_value)(&ediff) / st->sum)));
}

/* Step 3 for one row: its state, from m and T, with the target sums (c, and what the loss
 * and gradient need). */
SK_INLINE void SK_MNAME(sk_row_state_init)(const sk_problem *pb, sk_index row, const SK_REAL *z, SK_REAL row_max,
                                           SK_MATH sum_excl, SK_MNAME(sk_row_state) *st)
{
    st->row_max = row_max;
    st->sum_excl_argmax = sum_excl;
    st->sum = 1 + sum_excl;
    /* "mean" folds 1/D into the row weight, before any product can underflow (a tiny w
     * with D = w must give the same digits as w = D = 1). */
    st->row_weight = (pb->sample_weight ? (SK_MATH)((const SK_REAL *)pb->sample_weight)[row] : 1) /
                     (SK_MATH)pb->denominator;
    st->sparse_labels = pb->target_kind == SK_TARGET_LABELS && pb->label_smoothing == 0.0;
    st->label_coefficient = 0;
    st->label = 0;
    st->label_is_max = 0;
    st->a_argmax = st->c_excl = st->dot = 0; /* set by sk_target_sums where targets are given */
    if (pb->target_kind == SK_TARGET_LABELS) {
        const SK_REAL *cw = (const SK_REAL *)pb->class_weight;
        st->label = pb->labels[row];
        st->label_is_max = z[st->label] == row_max;
        st->label_coefficient = (st->row_weight * (cw ? (SK_MATH)cw[st->label] : 1)) * (SK_MATH)pb->one_minus_eps;
    }
    /* Any arg-max can play p; with labels on a maximum, the label's keeps the sums consistent. */
    st->argmax = 0;
    if (st->sparse_labels && st->label_is_max)
        st->argmax = st->label;
    else if (!st->sparse_labels || pb->hessian_vector_product)
        st->argmax = SK_NAME(sk_first_argmax)(z, pb->n_classes, row_max);
    SK_MNAME(sk_target_sums)(pb, row, z, st);
}

/* Steps 3-9 for one valid row; e holds exp(z_k - m), T = sum_excl_argmax (e_in_data_type: as
 * sk_write_gradient). */
SK_INLINE void SK_MNAME(sk_target_outputs)(const sk_problem *pb, sk_index row, SK_REAL row_max, SK_MATH sum_excl,
                                           SK_MATH log1p_sum, const SK_MATH *e, int e_in_data_type, SK_MATH *s,
                                           SK_MATH *minus_cs)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    SK_MNAME(sk_row_state) st;
    SK_MNAME(sk_row_state_init)(pb, row, z, row_max, sum_excl, &st);
    if (pb->row_loss)
        SK_NAME(sk_store_row_loss)(pb, row, (double)(st.dot + st.c * log1p_sum));
    /* The softmax vector is needed by everything but the labels-only gradient. */
    if (pb->hessian || pb->hessian_diagonal || pb->hessian_vector_product || !st.sparse_labels) {
        SK_SIMD
        for (sk_index k = 0; k < n_classes; ++k)
            s[k] = e[k] / st.sum;
    } else {
        s[st.label] = e[st.label] / st.sum;
    }
    const SK_MATH coef = st.c;
    if (pb->hessian)
        SK_MNAME(sk_write_hessian)(pb, &st, z, e, s, minus_cs, coef, SK_ROW(pb->hessian, row, pb->hessian_width));
    if (pb->hessian_diagonal) {
        SK_REAL *hd = SK_ROW(pb->hessian_diagonal, row, n_classes);
        for (sk_index k = 0; k < n_classes; ++k)
            hd[k] = (SK_REAL)((coef * s[k]) * SK_MNAME(sk_one_minus_s)(&st, z[k], e[k]));
    }
    if (pb->hessian_vector_product)
        SK_MNAME(sk_write_hessian_vector_product)(pb, row, &st, e, s, coef,
                                                  SK_ROW(pb->hessian_vector_product, row, n_classes));
    /* Last: the gradient may overwrite z (in place), which the outputs above still read. */
    if (pb->gradient)
        SK_MNAME(sk_write_gradient)(pb, row, &st, e, e_in_data_type, s, SK_ROW(pb->gradient, row, n_classes));
}

/* Adds one valid row's Hessian, in packed upper order, to the compensated sums (sum, error)
 * of its group: the terms of sk_write_hessian, each rounded once to double. */
SK_INLINE void SK_MNAME(sk_add_row_hessian)(const sk_problem *pb, sk_index row, SK_REAL row_max, SK_MATH sum_excl,
                                            const SK_MATH *e, SK_MATH *s, SK_MATH *minus_cs, double *sum,
                                            double *error)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    SK_MNAME(sk_row_state) st;
    SK_MNAME(sk_row_state_init)(pb, row, z, row_max, sum_excl, &st);
    const SK_MATH coef = st.c;
    SK_SIMD
    for (sk_index k = 0; k < n_classes; ++k) {
        s[k] = e[k] / st.sum;
        minus_cs[k] = -(coef * s[k]);
    }
    for (sk_index j = 0; j < n_classes; ++j) {
        double *column_sum = sum + sk_packed_upper_index(0, j), *column_error = error + sk_packed_upper_index(0, j);
        const SK_MATH minus_cs_j = minus_cs[j];
        SK_SIMD
        for (sk_index i = 0; i < j; ++i)
            sk_two_sum_add(&column_sum[i], &column_error[i], (double)(minus_cs_j * s[i]));
        sk_two_sum_add(&column_sum[j], &column_error[j],
                       (double)((coef * s[j]) * SK_MNAME(sk_one_minus_s)(&st, z[j], e[j])));
    }
}

/* One valid row's factors of the Hessian, in double: s_k, the diagonal (c s_k)(1 - s_k), and
 * returns c (H_kl = -c s_k s_l off the diagonal). */
SK_INLINE double SK_MNAME(sk_row_factors)(const sk_problem *pb, sk_index row, SK_REAL row_max, SK_MATH sum_excl,
                                          const SK_MATH *e, double *s_out, double *diag_out)
{
    const sk_index n_classes = pb->n_classes;
    const SK_REAL *z = SK_CROW(pb->z, row, n_classes);
    SK_MNAME(sk_row_state) st;
    SK_MNAME(sk_row_state_init)(pb, row, z, row_max, sum_excl, &st);
    const SK_MATH coef = st.c;
    for (sk_index k = 0; k < n_classes; ++k) {
        const SK_MATH s_k = e[k] / st.sum;
        s_out[k] = (double)s_k;
        diag_out[k] = (double)((coef * s_k) * SK_MNAME(sk_one_minus_s)(&st, z[k], e[k]));
    }
    return (double)coef;
}
