/* softmax_kernels: types and helpers shared by the float and double kernels.
 *
 * Plain C99, no Python, no allocation. Every size and offset is int64_t
 * (sk_index) so batches with more than 2^31 output elements index correctly.
 */
#ifndef SOFTMAX_KERNELS_COMMON_H
#define SOFTMAX_KERNELS_COMMON_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef int64_t sk_index;

enum { SK_TARGET_NONE = 0, SK_TARGET_LABELS = 1, SK_TARGET_SOFT = 2 };
enum { SK_LAYOUT_PACKED_UPPER = 0, SK_LAYOUT_PACKED_LOWER = 1, SK_LAYOUT_FULL = 2 };

/* Scratch doubles a row kernel needs per thread: e, s and -c*s, K each. */
#define SK_SCRATCH_PER_CLASS 3

/* One call: base pointers of the C-contiguous (N, K) inputs and outputs (NULL when
 * absent or not wanted) and the per-call constants. Pointers are void so that
 * one struct serves both dtypes; the row kernels cast them to their SK_REAL. */
typedef struct {
    sk_index n_classes;
    int target_kind;
    int layout;
    sk_index hessian_width;      /* K(K+1)/2 packed, K*K full */
    double label_smoothing;      /* eps */
    double eps_over_k;           /* eps / K */
    double one_minus_eps;        /* 1 - eps */
    double denominator;          /* the "mean" denominator D, else 1 */
    int has_ignore_index;
    int64_t ignore_index;
    const void *z;
    const int64_t *labels;
    const void *soft_targets;
    const void *sample_weight;
    const void *class_weight;
    const void *v;
    double *row_loss;            /* per-row loss, always double */
    void *softmax;
    void *log_softmax;
    void *gradient;
    void *hessian;
    void *hessian_diagonal;
    void *hessian_vector_product;
} sk_problem;

typedef void (*sk_row_fn)(const sk_problem *problem, sk_index row, double *scratch);

/* Compensated accumulation with Knuth's TwoSum: err collects the exact rounding
 * error of every addition, so a sum of n terms is accurate to about one rounding
 * of the result instead of n roundings (sums over K = 1e5 classes, over 1e6 rows). */
typedef struct {
    double sum;
    double err;
} sk_acc;

static inline void sk_acc_add(sk_acc *acc, double x)
{
    double t = acc->sum + x;
    double bp = t - acc->sum;
    acc->err += (acc->sum - (t - bp)) + (x - bp);
    acc->sum = t;
}

static inline double sk_acc_value(const sk_acc *acc)
{
    /* An infinite sum makes err NaN (inf - inf); the sum itself is then the answer. */
    return isfinite(acc->sum) ? acc->sum + acc->err : acc->sum;
}

/* Independent accumulators break the dependency chain of the additions; the
 * lane of a term depends only on its index, so results do not depend on threads. */
#define SK_LANES 4

typedef struct {
    sk_acc lane[SK_LANES];
} sk_lanes;

static inline void sk_lanes_init(sk_lanes *acc)
{
    memset(acc, 0, sizeof(*acc));
}

static inline void sk_lanes_add(sk_lanes *acc, sk_index k, double x)
{
    sk_acc_add(&acc->lane[k & (SK_LANES - 1)], x);
}

static inline double sk_lanes_value(const sk_lanes *acc)
{
    sk_acc total = {0.0, 0.0};
    for (int l = 0; l < SK_LANES; ++l) {
        sk_acc_add(&total, acc->lane[l].sum);
        total.err += acc->lane[l].err;
    }
    return sk_acc_value(&total);
}

static inline double sk_compensated_sum(const double *x, sk_index n)
{
    sk_lanes acc;
    sk_lanes_init(&acc);
    for (sk_index k = 0; k < n; ++k)
        sk_lanes_add(&acc, k, x[k]);
    return sk_lanes_value(&acc);
}

/* LAPACK packed storage (0-based): UPLO='U' keeps H[i][j], i <= j, at j(j+1)/2 + i;
 * UPLO='L' keeps H[i][j], i >= j, at i + j(2K-j-1)/2. Mirrored by _layout.py. */
static inline sk_index sk_packed_upper_index(sk_index i, sk_index j)
{
    return j * (j + 1) / 2 + i;
}

static inline sk_index sk_packed_lower_index(sk_index i, sk_index j, sk_index n_classes)
{
    return i + j * (2 * n_classes - j - 1) / 2;
}

/* The instruction set the compiler was allowed to use for this build. */
static inline const char *sk_simd_name(void)
{
#if defined(__AVX512F__)
    return "AVX512F";
#elif defined(__AVX2__)
    return "AVX2";
#elif defined(__AVX__)
    return "AVX";
#elif defined(__SSE2__) || defined(_M_X64)
    return "SSE2";
#elif defined(__ARM_NEON) || defined(__aarch64__)
    return "NEON";
#else
    return "none";
#endif
}

#endif /* SOFTMAX_KERNELS_COMMON_H */
