/* softmax_kernels: the per-row kernels for float and double, and their lookup.
 *
 * row_kernels_impl.h is the single source of the arithmetic; it is stamped out
 * here once per real type. The Cython driver only runs the loop over blocks of rows.
 */
#ifndef SOFTMAX_KERNELS_KERNELS_H
#define SOFTMAX_KERNELS_KERNELS_H

#include "common.h"
#include "transpose_x86.h"
#include "vmath.h"

#define SK_REAL float
#define SK_IS_DOUBLE 0
#define SK_NAME(name) name##_f
#include "row_kernels_impl.h"
#undef SK_REAL
#undef SK_IS_DOUBLE
#undef SK_NAME

#define SK_REAL double
#define SK_IS_DOUBLE 1
#define SK_NAME(name) name##_d
#include "row_kernels_impl.h"
#undef SK_REAL
#undef SK_IS_DOUBLE
#undef SK_NAME

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
    return is_double ? sk_mean_denominator_d(pb, pb->n_rows) : sk_mean_denominator_f(pb, pb->n_rows);
}

#endif /* SOFTMAX_KERNELS_KERNELS_H */
