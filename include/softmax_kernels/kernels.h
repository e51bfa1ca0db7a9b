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
 * float data computes exp in float and everything else in double. Rows whose finite logits
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
 * (entry_points_impl.h), looked up by sk_block_function below.
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
        return is_double ? sk_softmax_block_d : sk_softmax_block_f;
    case SK_KERNEL_LOG_SOFTMAX:
        return is_double ? sk_log_softmax_block_d : sk_log_softmax_block_f;
    default:
        return is_double ? sk_target_block_d : sk_target_block_f;
    }
}

static inline double sk_mean_denominator(const sk_problem *pb, int is_double)
{
    return is_double ? sk_mean_denominator_d(pb) : sk_mean_denominator_f(pb);
}

#endif /* SOFTMAX_KERNELS_KERNELS_H */
