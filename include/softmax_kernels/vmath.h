/* softmax_kernels: branch-free exp (float, double) and log1p (double) that compilers vectorise.
 *
 * libm's exp is a scalar call, so a loop over exp never uses SIMD lanes (glibc's
 * vector variants are only declared under -ffast-math, which we refuse: it flushes
 * subnormals to zero for the whole process). These are plain C with no branches,
 * no tables and no libm calls, so GCC/Clang vectorise loops over them.
 *
 * Method (both types): n = round(x log2 e) by the 1.5*2^p shifter trick;
 * r = x - n ln2 in two steps (Cody-Waite: ln2_hi has trailing zero bits, so
 * n*ln2_hi is exact and r keeps its low bits); exp(r) by its Taylor polynomial
 * on |r| <= ln2/2 (degree 13 for double, 7 for float: the truncation error is
 * below 0.05 ulp); then 2^n applied as 2^n1 * 2^n2 with n1 = floor(n/2), so that
 * both factors are normal numbers for every n in range: overflow gives +inf and
 * results in the subnormal range are rounded once, correctly (gradual underflow).
 * Special values: exp(-inf) = 0, exp(+inf) = +inf, exp(NaN) = NaN.
 *
 * log1p(t) for t >= 0 (the kernels need log1p of T = sum_{k != argmax} exp(z_k - m)):
 * u = fl(1 + t) and the exact rounding error t - (u - 1) give log1p(t) =
 * log(u) + (t - (u - 1)) / u to first order, so t below 2^-53 keeps all its digits.
 * log(u) = k ln2 + log(f) with f in [sqrt(1/2), sqrt(2)); with g = f - 1 (exact)
 * and s = g / (2 + g), log(f) = g - g^2/2 + s (g^2/2 + R(s^2)), R(w) = sum_n 2 w^n / (2n + 1)
 * (the atanh series: |s| <= 0.172 so 11 terms reach 2^-56).
 *
 * Accuracy (tests/test_vmath.py): exp_f exhaustively over every float, exp_d and
 * log1p_d by sampling; all stay within about one ulp of the exact result.
 */
#ifndef SOFTMAX_KERNELS_VMATH_H
#define SOFTMAX_KERNELS_VMATH_H

#include <stdint.h>
#include <string.h>

#include "portability.h"
#include "problem.h"

SK_INLINE double sk_bits_to_double(uint64_t bits)
{
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

SK_INLINE uint64_t sk_double_to_bits(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

SK_INLINE float sk_bits_to_float(uint32_t bits)
{
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

SK_INLINE uint32_t sk_float_to_bits(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

/* 2^n for an integer-valued double n in [-1022, 1023]: adding 1.5*2^52 leaves the
 * integer n + 1023 in the low mantissa bits, which are shifted into the exponent. */
SK_INLINE double sk_pow2_d(double n)
{
    return sk_bits_to_double(sk_double_to_bits(n + (1023.0 + 0x1.8p52)) << 52);
}

/* exp(r) on |r| <= ln2/2 for r = x - n ln2, n = round(x / ln2); n is returned too. */
SK_INLINE double sk_exp_reduced_d(double x, double *n_out)
{
    const double shifter = 0x1.8p52;
    double n = (x * 0x1.71547652b82fep0 + shifter) - shifter; /* round(x / ln 2) */
    double r = x - n * 0x1.62e42fee00000p-1;                  /* exact: ln2_hi has 21 zero bits */
    r = r - n * 0x1.a39ef35793c76p-33;                        /* ln2_lo */
    double p = 1.0 / 6227020800.0;                            /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * (r * r) + r; /* exp(r) - 1, small terms first */
    *n_out = n;
    return p + 1.0;
}

SK_INLINE double sk_exp_d(double x)
{
    /* Beyond these, exp over/underflows anyway; clamping keeps n small. NaN passes. */
    x = x < -746.0 ? -746.0 : x;
    x = x > 710.0 ? 710.0 : x;
    const double shifter = 0x1.8p52;
    double n;
    const double p = sk_exp_reduced_d(x, &n);
    double n1 = (n * 0.5 - 0.25 + shifter) - shifter; /* floor(n / 2) for integer n */
    return (p * sk_pow2_d(n1)) * sk_pow2_d(n - n1);
}

/* The arguments below which sk_exp_nonpositive_d/_f return 0 (named with the kernels'
 * data-type suffix, for SK_NAME). */
#define SK_EXP_NONPOSITIVE_MIN_d (-708.0)
#define SK_EXP_NONPOSITIVE_MIN_f (-87.0f)

/* exp(x) for x <= 0 where only normal results are needed: 0 below -708 (where exp(x)
 * is under 2^-1021), so that 2^n is always a normal number and one product applies it.
 * Six operations fewer than sk_exp_d, and the same result wherever that is at least 2^-1021.
 * The kernels use it for z - m in rows whose finite logits span at most 708 (stats_impl.h). */
SK_INLINE double sk_exp_nonpositive_d(double x)
{
    double n;
    const double p = sk_exp_reduced_d(x, &n);
    return x < SK_EXP_NONPOSITIVE_MIN_d ? 0.0 : p * sk_pow2_d(n); /* NaN fails the test and stays NaN */
}

SK_INLINE float sk_pow2_f(float n)
{
    return sk_bits_to_float(sk_float_to_bits(n + (127.0f + 0x1.8p23f)) << 23);
}

SK_INLINE float sk_exp_reduced_f(float x, float *n_out)
{
    const float shifter = 0x1.8p23f;
    float n = (x * 0x1.715476p0f + shifter) - shifter;
    float r = x - n * 0x1.62e400p-1f; /* ln2_hi with 9 zero bits: n * ln2_hi is exact */
    r = r - n * 0x1.7f7d1cp-20f;      /* ln2_lo */
    float p = 1.0f / 5040.0f;         /* 1/7! */
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * (r * r) + r;
    *n_out = n;
    return p + 1.0f;
}

SK_INLINE float sk_exp_f(float x)
{
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    const float shifter = 0x1.8p23f;
    float n;
    const float p = sk_exp_reduced_f(x, &n);
    float n1 = (n * 0.5f - 0.25f + shifter) - shifter;
    return (p * sk_pow2_f(n1)) * sk_pow2_f(n - n1);
}

/* As sk_exp_nonpositive_d, for float: 0 below -87 (exp(x) < 2^-125 there). */
SK_INLINE float sk_exp_nonpositive_f(float x)
{
    float n;
    const float p = sk_exp_reduced_f(x, &n);
    return x < SK_EXP_NONPOSITIVE_MIN_f ? 0.0f : p * sk_pow2_f(n);
}

/* The integer k as a double, for |k| < 2^51, without int64 -> double conversions
 * (AVX2 has none): the inverse of the shifter trick. */
SK_INLINE double sk_int_to_double(int64_t k)
{
    return sk_bits_to_double(sk_double_to_bits(0x1.8p52) + (uint64_t)k) - 0x1.8p52;
}

/* log(x) + tail for finite x >= 1/2 and |tail| <= ulp(x) (no zero, negative or
 * subnormal arguments here): tail carries what rounding removed from x. */
SK_INLINE double sk_log_plus_d(double x, double tail)
{
    /* Subtracting the bits of sqrt(1/2) puts k = floor(log2(x / sqrt(1/2))) in the exponent field. */
    const uint64_t sqrt_half_bits = 0x3fe6a09e667f3bcdULL;
    uint64_t offset = sk_double_to_bits(x) - sqrt_half_bits; /* no wrap-around for x >= 1/2 */
    int64_t k = (int64_t)(offset >> 52);
    double f = sk_bits_to_double(sk_double_to_bits(x) - ((uint64_t)k << 52)); /* in [sqrt(1/2), sqrt(2)) */
    double g = f - 1.0; /* exact (Sterbenz) */
    double s = g / (2.0 + g);
    double w = s * s;
    double r = 2.0 / 23.0;
    r = r * w + 2.0 / 21.0;
    r = r * w + 2.0 / 19.0;
    r = r * w + 2.0 / 17.0;
    r = r * w + 2.0 / 15.0;
    r = r * w + 2.0 / 13.0;
    r = r * w + 2.0 / 11.0;
    r = r * w + 2.0 / 9.0;
    r = r * w + 2.0 / 7.0;
    r = r * w + 2.0 / 5.0;
    r = r * w + 2.0 / 3.0;
    r = r * w;
    double half_g2 = 0.5 * g * g;
    double kd = sk_int_to_double(k);
    /* The small corrections are gathered first and g joins last, against k ln2_hi: when
     * k = 1 and f < 1 the two cancel partly, and this order keeps that subtraction exact-ish. */
    double small = half_g2 - (s * (half_g2 + r) + (kd * 0x1.a39ef35793c76p-33 + tail / x));
    return kd * 0x1.62e42fee00000p-1 - (small - g);
}

/* log1p(t) for 0 <= t < 2^1023; +inf and NaN are returned as they are. */
SK_INLINE double sk_log1p_d(double t)
{
    double u = 1.0 + t;
    double lost = t - (u - 1.0); /* the rounding error of 1 + t: exact for t <= 1, negligible above */
    double result = sk_log_plus_d(u, lost);
    return u < 0x1p1023 ? result : t;
}

#endif /* SOFTMAX_KERNELS_VMATH_H */
