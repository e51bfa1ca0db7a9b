/* softmax_kernels: accuracy sweeps of vmath.h for the tests (tests/test_vmath.py).
 *
 * Each returns the largest error, in units in the last place of the exact result,
 * of sk_exp_f, sk_exp_d or sk_log1p_d over a set of arguments. The references are
 * libm's exp in double (for float) and expl/log1pl in long double (for double, where
 * the platform's long double is wider). They are dispatched like the kernels
 * (SK_DISPATCHED_RETURNING), so the code measured is the code the kernels run on this CPU.
 */
#ifndef SOFTMAX_KERNELS_VMATH_ACCURACY_H
#define SOFTMAX_KERNELS_VMATH_ACCURACY_H

#include <float.h>
#include <math.h>

#include "portability.h"
#include "problem.h"
#include "vmath.h"

/* Error of `computed` in ulps of `exact` for a format with `digits` mantissa bits and
 * smallest subnormal 2^min_exponent; 0 for matching infinities and NaNs. */
static inline double sk_ulp_error(long double computed, long double exact, int digits, int min_exponent)
{
    if (isnan(exact))
        return isnan(computed) ? 0.0 : INFINITY;
    if (isinf(exact) || isinf(computed))
        return computed == exact ? 0.0 : INFINITY;
    int exponent;
    frexpl(fabsl(exact), &exponent);
    int ulp_exponent = exponent - digits;
    if (ulp_exponent < min_exponent)
        ulp_exponent = min_exponent;
    return (double)(fabsl(computed - exact) / ldexpl(1.0L, ulp_exponent));
}

/* The same for float against a double reference, in double: the sweep covers 2^32 values. */
static inline double sk_float_ulp_error(float computed, double exact)
{
    if (isnan(exact))
        return isnan(computed) ? 0.0 : INFINITY;
    if (isinf(exact) || isinf(computed))
        return (double)computed == exact ? 0.0 : INFINITY;
    int ulp_exponent = (int)((sk_double_to_bits(exact) >> 52) & 0x7ff) - 1023 - 23; /* 2^(e - 23) */
    if (ulp_exponent < -149)
        ulp_exponent = -149;
    return fabs((double)computed - exact) / sk_bits_to_double((uint64_t)(ulp_exponent + 1023) << 52);
}

/* Every float whose bit pattern lies in [begin, end). */
SK_INLINE double sk_exp_f_max_ulp_error_body(uint64_t begin, uint64_t end)
{
    double worst = 0.0;
    for (uint64_t bits = begin; bits < end; ++bits) {
        const float x = sk_bits_to_float((uint32_t)bits);
        double exact = exp((double)x);
        if (exact > FLT_MAX) /* the correctly rounded float result is +inf */
            exact = INFINITY;
        const double error = sk_float_ulp_error(sk_exp_f(x), exact);
        worst = error > worst ? error : worst;
    }
    return worst;
}
SK_DISPATCHED_RETURNING(double, sk_exp_f_max_ulp_error, sk_exp_f_max_ulp_error_body,
                        (uint64_t begin, uint64_t end), (begin, end))

SK_INLINE double sk_exp_d_max_ulp_error_body(const double *x, sk_index n)
{
    double worst = 0.0;
    for (sk_index i = 0; i < n; ++i) {
        long double exact = expl((long double)x[i]);
        if (exact > (long double)DBL_MAX)
            exact = INFINITY;
        const double error = sk_ulp_error(sk_exp_d(x[i]), exact, 53, -1074);
        worst = error > worst ? error : worst;
    }
    return worst;
}
SK_DISPATCHED_RETURNING(double, sk_exp_d_max_ulp_error, sk_exp_d_max_ulp_error_body,
                        (const double *x, sk_index n), (x, n))

SK_INLINE double sk_log1p_d_max_ulp_error_body(const double *x, sk_index n)
{
    double worst = 0.0;
    for (sk_index i = 0; i < n; ++i) {
        const double error = sk_ulp_error(sk_log1p_d(x[i]), log1pl((long double)x[i]), 53, -1074);
        worst = error > worst ? error : worst;
    }
    return worst;
}
SK_DISPATCHED_RETURNING(double, sk_log1p_d_max_ulp_error, sk_log1p_d_max_ulp_error_body,
                        (const double *x, sk_index n), (x, n))

/* The flushing exps (sk_exp_nonpositive_*) must equal the full ones bit for bit where they
 * promise normal results, 0 below their threshold, NaN for NaN: the count of arguments
 * (x <= 0) where they do not. */
SK_INLINE int sk_exp_nonpositive_f_agrees(float x)
{
    const float got = sk_exp_nonpositive_f(x);
    if (x != x)
        return got != got;
    const float want = x < -87.0f ? 0.0f : sk_exp_f(x);
    return sk_float_to_bits(got) == sk_float_to_bits(want);
}

/* Float bit patterns in [begin, end). */
SK_INLINE uint64_t sk_exp_nonpositive_f_mismatches_body(uint64_t begin, uint64_t end)
{
    uint64_t mismatches = 0;
    for (uint64_t bits = begin; bits < end; ++bits)
        mismatches += !sk_exp_nonpositive_f_agrees(sk_bits_to_float((uint32_t)bits));
    return mismatches;
}
SK_DISPATCHED_RETURNING(uint64_t, sk_exp_nonpositive_f_mismatches, sk_exp_nonpositive_f_mismatches_body,
                        (uint64_t begin, uint64_t end), (begin, end))

/* As a double, so that it shares the sweep signature of the functions above. */
SK_INLINE double sk_exp_nonpositive_d_mismatches_body(const double *x, sk_index n)
{
    double mismatches = 0;
    for (sk_index i = 0; i < n; ++i) {
        const double got = sk_exp_nonpositive_d(x[i]);
        const double want = x[i] < -708.0 ? 0.0 : sk_exp_d(x[i]);
        mismatches += x[i] != x[i] ? got == got : sk_double_to_bits(got) != sk_double_to_bits(want);
    }
    return mismatches;
}
SK_DISPATCHED_RETURNING(double, sk_exp_nonpositive_d_mismatches, sk_exp_nonpositive_d_mismatches_body,
                        (const double *x, sk_index n), (x, n))

#endif /* SOFTMAX_KERNELS_VMATH_ACCURACY_H */
