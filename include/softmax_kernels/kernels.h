/* softmax_kernels: the per-row kernels for float and double, and their lookup.
 *
 * row_kernels_impl.h is the single source of the arithmetic; it is stamped out
 * here once per real type. The Cython driver only runs the row loop.
 */
#ifndef SOFTMAX_KERNELS_KERNELS_H
#define SOFTMAX_KERNELS_KERNELS_H

#include "common.h"

#define SK_REAL float
#define SK_NAME(name) name##_f
#include "row_kernels_impl.h"
#undef SK_REAL
#undef SK_NAME

#define SK_REAL double
#define SK_NAME(name) name##_d
#include "row_kernels_impl.h"
#undef SK_REAL
#undef SK_NAME

enum { SK_OP_SOFTMAX = 0, SK_OP_LOG_SOFTMAX = 1, SK_OP_TARGET = 2 };

static inline sk_row_fn sk_row_function(int op, int is_double)
{
    switch (op) {
    case SK_OP_SOFTMAX:
        return is_double ? sk_softmax_row_d : sk_softmax_row_f;
    case SK_OP_LOG_SOFTMAX:
        return is_double ? sk_log_softmax_row_d : sk_log_softmax_row_f;
    default:
        return is_double ? sk_target_row_d : sk_target_row_f;
    }
}

static inline double sk_mean_denominator(const sk_problem *pb, sk_index n_rows, int is_double)
{
    return is_double ? sk_mean_denominator_d(pb, n_rows) : sk_mean_denominator_f(pb, n_rows);
}

#endif /* SOFTMAX_KERNELS_KERNELS_H */
