/* softmax_kernels: the block kernels for float and double, and their lookup.
 *
 * The recipe for a row z (K classes) with target weights a (c = sum a), followed by every
 * path of the kernels and, step by step, by the NumPy reference (reference.py):
 *   1. m = max z; NaN anywhere, +inf, or all -inf makes the whole row NaN.
 *   2. e_k = exp(z_k - m); e = 1 at the arg-max p; T = sum_{k != p} e_k; S = 1 + T.
 *      log S = log1p(T) keeps every digit of a tiny T (confident rows), where log(S) would
 *      round S to 1 and return 0.
 *   3. c_excl = sum_{k != p} a_k, c = c_excl + a_p, dot = sum_{a_k != 0} a_k (m - z_k).
 *   4. loss = dot + c log1p(T): non-negative terms for a >= 0, no cancellation.
 *   5. s_k = e_k / S; 1 - s_k = T / S where z_k = m (then e_k = 1, so this is exact algebra)
 *      and (S - e_k) / S elsewhere (S - e_k >= S / 2 there), never 1 - s_k.
 *   6. g_k = c s_k - a_k (k != p); g_p = c_excl / S - a_p T / S: the dominant parts of c s_p
 *      and a_p cancel exactly on paper, not in floating point.
 *   7. H_ij = -(c s_max(i,j)) s_min(i,j) (bitwise symmetric), H_ii = (c s_i)(1 - s_i).
 *   8. sigma = (v_p + sum_{j != p} e_j v_j) / S; (Hv)_k = c (s_k (v_k - sigma)) for k != p,
 *      and v_p - sigma = sum_{j != p} e_j (v_p - v_j) / S for the arg-max class.
 *   9. "mean": the row weight w becomes w / D before anything else, so every output (and each
 *      row's share of the loss) is already divided by D.
 * float data computes exp in float and everything else in double, except two last steps that
 * end in float and cannot cancel: log-softmax's (z - m) - log1p(T), and the labels gradient's
 * e_k (c / S) with c / S rounded to float (labels_impl.h). Rows whose finite logits
 * span more than SK_EXTREME_GAP (extreme rows) would have e_k near the subnormal range, where
 * a product like c s_k (v_k - sigma) loses digits the contract promises; they are computed in
 * a wider type (double for float data, long double for double data where it is wider), as are
 * float data's gradients with dense targets, where c s_k - a_k may cancel. Masked classes
 * (-inf) have s = 0 exactly and do not count.
 *
 * Each *_impl.h file below is written once with SK_REAL as its data type and stamped here
 * for float and for double; SK_NAME(sk_x) names the stamped copy. Generated names:
 *   SK_NAME(sk_x)            sk_x_f (float data), sk_x_d (double data)   every stamped function
 *   SK_MNAME(sk_x) in row_outputs_impl.h, the row-by-row outputs, stamped again per arithmetic:
 *                            sk_x_md_f, sk_x_md_d (double arithmetic), sk_x_ml_d (long double,
 *                            extreme rows of double data where long double is wider)
 *   SK_NAME(sk_hessian_tile_avx512), SK_NAME(sk_rows_to_columns_tiles) and the like name the
 *   per-type functions of transpose_x86.h (sk_..._f, sk_..._d), written out there.
 * The entry points are sk_softmax_block_f/_d, sk_log_softmax_block_f/_d, sk_target_block_f/_d
 * (entry_points_impl.h), looked up by sk_block_function below, and sk_hessian_sum_block_f/_d
 * (hessian_sum_impl.h), looked up by sk_hessian_sum_function.
 */
#ifndef SOFTMAX_KERNELS_KERNELS_H
#define SOFTMAX_KERNELS_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "block.h"
#include "openmp_shim.h"
#include "packed.h"
#include "portability.h"
#include "problem.h"
#include "sums.h"
#include "transpose_x86.h"
#include "vmath.h"

/* Row `row` of an (N, width) array of the data type. */
#define SK_ROW(ptr, row, width) ((SK_REAL *)(ptr) + (sk_index)(row) * (width))
#define SK_CROW(ptr, row, width) ((const SK_REAL *)(ptr) + (sk_index)(row) * (width))

#define SK_REAL float
#define SK_IS_DOUBLE 0
#define SK_NAME(name) name##_f
#include "stamp_data_type.h"
#undef SK_REAL
#undef SK_IS_DOUBLE
#undef SK_NAME

#define SK_REAL double
#define SK_IS_DOUBLE 1
#define SK_NAME(name) name##_d
#include "stamp_data_type.h"
#undef SK_REAL
#undef SK_IS_DOUBLE
#undef SK_NAME

#undef SK_ROW
#undef SK_CROW

typedef enum { SK_KERNEL_SOFTMAX = 0, SK_KERNEL_LOG_SOFTMAX = 1, SK_KERNEL_TARGETS = 2 } sk_kernel;

static inline sk_block_fn sk_block_function(sk_kernel kernel, int is_double)
{
    switch (kernel) {
    case SK_KERNEL_SOFTMAX:
        return is_double ? sk_softmax_block_d_for_cpu() : sk_softmax_block_f_for_cpu();
    case SK_KERNEL_LOG_SOFTMAX:
        return is_double ? sk_log_softmax_block_d_for_cpu() : sk_log_softmax_block_f_for_cpu();
    default:
        return is_double ? sk_target_block_d_for_cpu() : sk_target_block_f_for_cpu();
    }
}

static inline sk_sum_block_fn sk_hessian_sum_function(int is_double)
{
    return is_double ? sk_hessian_sum_block_d_for_cpu() : sk_hessian_sum_block_f_for_cpu();
}

/* A kernel writing the factors of rows [row_begin, row_end): s and the diagonal terms (K
 * values per row) and c (one per row). */
typedef void (*sk_factor_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end,
                                   double *scratch, double *s, double *c, double *diag);

static inline sk_factor_block_fn sk_hessian_factors_function(int is_double)
{
    return is_double ? sk_hessian_factors_block_d_for_cpu() : sk_hessian_factors_block_f_for_cpu();
}

/* (sum, error) += x, element by element, compensated (TwoSum). */
static inline void sk_add_compensated(double *sum, double *error, const double *x, sk_index n)
{
    SK_SIMD
    for (sk_index j = 0; j < n; ++j)
        sk_two_sum_add(&sum[j], &error[j], x[j]);
}

/* (sum, error)[k] += x[i][k] for every row i of the (n_rows, width) array x, compensated, in
 * row order. */
static inline void sk_add_rows_compensated(double *sum, double *error, const double *x, sk_index n_rows,
                                           sk_index width)
{
    for (sk_index i = 0; i < n_rows; ++i)
        sk_add_compensated(sum, error, x + i * width, width);
}

/* out[j] = sum over the chunks of partials[chunk][0][j] + partials[chunk][1][j] (a sum and its
 * error per element), compensated, in chunk order: the chunks' partial sums of a summed
 * output, combined the same way whatever the threads that computed them. */
static inline void sk_merge_partial_sums(const double *partials, sk_index n_chunks, sk_index width, double *out)
{
    for (sk_index j = 0; j < width; ++j) {
        sk_acc total = {0.0, 0.0};
        for (sk_index c = 0; c < n_chunks; ++c) {
            sk_acc_add(&total, partials[(2 * c) * width + j]);
            total.err += partials[(2 * c + 1) * width + j];
        }
        out[j] = sk_acc_value(&total);
    }
}

/* Products of feature pairs for the linear model's parameter Hessian (feature_pairs_impl.h). */
static inline void sk_feature_pairs(const void *x, sk_index n_rows, sk_index n_features, sk_index t0, sk_index t1,
                                    void *out, int is_double)
{
    if (is_double)
        sk_feature_pairs_d((const double *)x, n_rows, n_features, t0, t1, (double *)out);
    else
        sk_feature_pairs_f((const float *)x, n_rows, n_features, t0, t1, (float *)out);
}

static inline double sk_mean_denominator(const sk_problem *pb, int is_double)
{
    return is_double ? sk_mean_denominator_d(pb) : sk_mean_denominator_f(pb);
}

#endif /* SOFTMAX_KERNELS_KERNELS_H */
