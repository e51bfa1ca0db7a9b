/* softmax_kernels: compensated sums, so that sums over K = 10^5 classes or 10^6 rows stay
 * accurate to about one rounding of the result and do not depend on the number of threads.
 */
#ifndef SOFTMAX_KERNELS_SUMS_H
#define SOFTMAX_KERNELS_SUMS_H

#include <math.h>
#include <string.h>

#include "portability.h"
#include "problem.h"

/* A running sum and the exact rounding errors of its additions (Knuth's TwoSum). */
typedef struct {
    double sum;
    double err;
} sk_acc;

/* One TwoSum step on a (sum, err) pair: the form the vectorised lane loops use too. */
SK_INLINE void sk_two_sum_add(double *sum, double *err, double x)
{
    const double t = *sum + x;
    const double bp = t - *sum;
    *err += (*sum - (t - bp)) + (x - bp);
    *sum = t;
}

/* sk_two_sum_add of the product a b, written out in both expressions that use it, so that a
 * compiler that fuses only within an expression (clang) makes both FMAs where the CPU has them,
 * as GCC does (docs/performance-notes.md, "lane arrays"). */
SK_INLINE void sk_two_sum_add_product(double *sum, double *err, double a, double b)
{
    const double t = *sum + a * b;
    const double bp = t - *sum;
    *err += (*sum - (t - bp)) + (a * b - bp);
    *sum = t;
}

/* The same for |sum| >= |x| (Fast2Sum): three operations instead of six. */
SK_INLINE void sk_fast_two_sum_add(double *sum, double *err, double x)
{
    const double t = *sum + x;
    *err += x - (t - *sum);
    *sum = t;
}

SK_INLINE void sk_acc_add(sk_acc *acc, double x)
{
    sk_two_sum_add(&acc->sum, &acc->err, x);
}

SK_INLINE double sk_acc_value(const sk_acc *acc)
{
    /* An infinite sum makes err NaN (inf - inf); the sum itself is then the answer. */
    return isfinite(acc->sum) ? acc->sum + acc->err : acc->sum;
}

/* Independent accumulators break the dependency chain of the additions; the lane of a term
 * depends only on its index, so results do not depend on threads. */
#define SK_LANES 4

typedef struct {
    sk_acc lane[SK_LANES];
} sk_lanes;

SK_INLINE void sk_lanes_init(sk_lanes *acc)
{
    memset(acc, 0, sizeof(*acc));
}

SK_INLINE void sk_lanes_add(sk_lanes *acc, sk_index k, double x)
{
    sk_acc_add(&acc->lane[k & (SK_LANES - 1)], x);
}

SK_INLINE double sk_lanes_value(const sk_lanes *acc)
{
    sk_acc total = {0.0, 0.0};
    for (int l = 0; l < SK_LANES; ++l) {
        sk_acc_add(&total, acc->lane[l].sum);
        total.err += acc->lane[l].err;
    }
    return sk_acc_value(&total);
}

SK_INLINE double sk_compensated_sum(const double *x, sk_index n)
{
    sk_lanes acc;
    sk_lanes_init(&acc);
    for (sk_index k = 0; k < n; ++k)
        sk_lanes_add(&acc, k, x[k]);
    return sk_lanes_value(&acc);
}

#endif /* SOFTMAX_KERNELS_SUMS_H */
