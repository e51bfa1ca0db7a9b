/* softmax_kernels, stamped per data type: the products of feature pairs that the parameter
 * Hessian of the linear model (src/softmax_kernels/linear.py) multiplies the rows' Hessians
 * with: out[i][t - t0] = x[i][a] x[i][b] for the packed upper positions t in [t0, t1) of the
 * pairs a <= b (t = b (b + 1) / 2 + a).
 */

#ifndef SK_REAL
#error "feature_pairs_impl.h is stamped by kernels.h only"
#endif

static void SK_NAME(sk_feature_pairs)(const SK_REAL *x, sk_index n_rows, sk_index n_features, sk_index t0,
                                      sk_index t1, SK_REAL *out)
{
    const sk_index width = t1 - t0;
    sk_index first_b = 0;
    while ((first_b + 1) * (first_b + 2) / 2 <= t0) /* the column b holding position t0 */
        ++first_b;
    for (sk_index i = 0; i < n_rows; ++i) {
        const SK_REAL *row = x + i * n_features;
        SK_REAL *out_row = out + i * width;
        sk_index t = t0;
        for (sk_index b = first_b; t < t1; ++b) {
            const sk_index first_a = t - b * (b + 1) / 2, end_a = b + 1 < first_a + (t1 - t) ? b + 1 : first_a + (t1 - t);
            const SK_REAL x_b = row[b];
            SK_REAL *target = out_row + (t - t0) - first_a;
            SK_SIMD
            for (sk_index a = first_a; a < end_a; ++a)
                target[a] = row[a] * x_b;
            t += end_a - first_a;
        }
    }
}
