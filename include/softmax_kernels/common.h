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

#include "openmp_shim.h"

typedef int64_t sk_index;

typedef enum { SK_TARGET_NONE = 0, SK_TARGET_LABELS = 1, SK_TARGET_SOFT = 2 } sk_target_kind;
typedef enum { SK_LAYOUT_PACKED_UPPER = 0, SK_LAYOUT_PACKED_LOWER = 1, SK_LAYOUT_FULL = 2 } sk_layout;

/* Helpers are forced inline into the dispatched kernels: a helper left out of line
 * would be compiled for the baseline ISA only, whatever clone calls it. */
#if defined(__GNUC__) || defined(__clang__)
#define SK_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define SK_INLINE static __forceinline
#else
#define SK_INLINE static inline
#endif

/* Runtime dispatch: GCC builds each block kernel for x86-64-v4 (AVX-512), x86-64-v3
 * (AVX2 + FMA) and the baseline, and picks one at load time from the CPU (an ifunc);
 * a portable wheel thus runs the widest SIMD the machine has. Elsewhere: one build. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && defined(__linux__) && \
    defined(__GLIBC__) && !defined(SK_NO_DISPATCH) /* ifuncs need glibc: not on musl */
#define SK_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define SK_HAS_DISPATCH 1
#else
#define SK_DISPATCH
#define SK_HAS_DISPATCH 0
#endif

/* A hint to fetch memory into the cache ahead of use; it never faults, whatever the address. */
#if defined(__GNUC__) || defined(__clang__)
#define SK_PREFETCH_READ(address) __builtin_prefetch((address), 0)
#define SK_PREFETCH_WRITE(address) __builtin_prefetch((address), 1)
#else
#define SK_PREFETCH_READ(address) ((void)(address))
#define SK_PREFETCH_WRITE(address) ((void)(address))
#endif

/* Asks for the 64-byte lines of [from, from + bytes), to read or to write. */
SK_INLINE void sk_prefetch_lines(uintptr_t from, uintptr_t bytes, int for_writing)
{
    for (uintptr_t line = from / 64 * 64; line < from + bytes; line += 64) {
        if (for_writing)
            SK_PREFETCH_WRITE((const char *)line);
        else
            SK_PREFETCH_READ((const char *)line);
    }
}

/* Large outputs written by threads of a team are written block by block with non-temporal
 * (streaming) stores from an L1-resident copy: the gradient of a labels call (without
 * smoothing) and the Hv of short rows, from blocks whose rows are all valid, when the
 * output has at least SK_STREAM_MIN_BYTES and the call runs on more than one thread. A
 * plain store first reads the line it writes (write-allocate), so an output far larger
 * than the caches costs its bytes twice in memory traffic; streaming stores write whole
 * lines without reading them. That matters where threads share the memory bandwidth: on
 * a 16-core Xeon, 1M x 10 float64 loss and gradient ran 16% faster at 16 threads. One
 * thread does not saturate it, and there streaming cost time on the AVX-512 development
 * machine (float32 loss and gradient 10-30% slower), so single-threaded calls store
 * plainly. Below the threshold the output may still be in cache when the caller reads it.
 * SSE2's 16-byte streaming stores are in every x86-64 CPU, so every dispatched clone can
 * use them; elsewhere the copy is a plain one. */
#ifndef SK_STREAM_MIN_BYTES /* a build may set it (tools/isa_builds.sh: 0, to test the path) */
#define SK_STREAM_MIN_BYTES ((sk_index)16 << 20)
#endif
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define SK_HAVE_STREAM 1
#else
#define SK_HAVE_STREAM 0
#endif

/* Makes a thread's streaming stores visible, in order, before it reports its work done. */
static inline void sk_stream_fence(void)
{
#if SK_HAVE_STREAM
    _mm_sfence();
#endif
}

/* OpenMP SIMD directives (active with -fopenmp or -fopenmp-simd, also in the serial
 * build): they tell the compiler that a loop's iterations are independent, so that it
 * vectorises loops it could not prove safe or would judge unprofitable. Reductions are
 * written out as lane arrays instead of reduction clauses, so their order is fixed by the
 * code (see row_kernels_impl.h). Ignored elsewhere. */
#if defined(_MSC_VER) && !defined(__clang__)
#define SK_PRAGMA(text) __pragma(text)
#else
#define SK_PRAGMA(text) _Pragma(#text)
#endif
#define SK_SIMD SK_PRAGMA(omp simd)

/* Rows are processed in blocks of about this many elements: the strip of exp values
 * stays in L1 and per-row work (log1p) runs vectorised over the block's rows. */
#define SK_STRIP_ELEMENTS 2048
#define SK_MAX_BLOCK_ROWS 256
/* Rows up to this many classes are processed as columns (see sk_block_stats_columns). */
#define SK_SMALL_CLASSES 16
/* CASE(K) for each K up to SK_SMALL_CLASSES, to compile a loop once per constant K. */
#define SK_EACH_SHORT_K(CASE) \
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) \
    CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15) CASE(16)

/* VALID and EXTREME rows are computed (EXTREME in a wider type), INVALID rows are NaN,
 * IGNORED rows zero. */
enum { SK_ROW_VALID = 0, SK_ROW_INVALID = 1, SK_ROW_IGNORED = 2, SK_ROW_EXTREME = 3 };

/* Per-thread scratch of a block, carved out of one array of doubles. */
typedef struct {
    void *strip;           /* rows * K values of the kernel's real type: exp (long rows, softmax,
                              the Hessian of short rows); short rows: flags, v columns or the
                              assembled output */
    void *row_work;        /* 3 K values of up to long double: e, s and -c s of one row */
    void *columns;         /* short rows: the block as columns, then the row max and min */
    double *columns_sums;  /* short rows: TwoSum accumulators, 2 per row */
    double *row_values;    /* SK_ROW_VALUES arrays of one value per row, for the outputs */
    double *short_work;    /* short rows: the Hessian's factors (sk_short_hessian_outputs) */
    double *row_max;       /* per row of the block */
    double *first_argmax;  /* short rows with Hv: the first class at the row max, as a double */
    double *sum_excl;      /* T per row */
    double *log1p_sum;     /* log1p(T) per row */
    unsigned char *status; /* SK_ROW_* per row */
} sk_block;

#define SK_ROW_VALUES 9

/* Short rows come in blocks of a multiple of 16 rows: each column of the block is then a
 * whole number of 64-byte vectors (16 floats, 2 x 8 doubles), with no scalar remainder in
 * the many per-column loops, and every column starts on a line. Measured at 10^6 rows on
 * the development machine: 5-13% faster at K = 9, 10 and 13 than blocks of 2048 / K rows. */
static inline sk_index sk_block_rows(sk_index n_classes)
{
    sk_index rows = SK_STRIP_ELEMENTS / n_classes;
    if (n_classes <= SK_SMALL_CLASSES)
        rows -= rows % 16;
    return rows < 1 ? 1 : rows > SK_MAX_BLOCK_ROWS ? SK_MAX_BLOCK_ROWS : rows;
}

/* Offsets rounded up to 8 doubles keep every region 64-byte aligned relative to the base. */
static inline sk_index sk_round8(sk_index n)
{
    return (n + 7) / 8 * 8;
}

/* The short-row Hessian's factors (3 K values of up to 16 rows), tile (up to K^2 + 15
 * output columns of 64 bytes: 16 floats or 8 doubles) and the group's rows (as many
 * values, and one vector more); see sk_short_hessian_outputs and sk_short_hessian_tiles. */
static inline sk_index sk_short_work_doubles(sk_index n_classes)
{
    return n_classes <= SK_SMALL_CLASSES ? 3 * 16 * n_classes + 2 * 8 * (n_classes * n_classes + 16) : 0;
}

/* Unused doubles between the strip and the regions after it. Found by measurement, not
 * derived: without them, the row-by-row short-row Hessian (which reads exp values from the strip and
 * stores each row's factors into short_work) ran 7-20% slower in cache at K = 10 and 13,
 * likely from loads that falsely alias earlier stores (addresses equal modulo 4096). */
#define SK_STRIP_GAP 16

static inline sk_index sk_scratch_doubles(sk_index n_classes)
{
    sk_index rows = sk_block_rows(n_classes);
    const sk_index wide = (sk_index)(sizeof(long double) / sizeof(double)) + 1;
    return 2 * sk_round8(rows * n_classes) + SK_STRIP_GAP + sk_round8(3 * wide * n_classes) +
           (9 + SK_ROW_VALUES) * sk_round8(rows) + sk_short_work_doubles(n_classes);
}

SK_INLINE sk_block sk_block_layout(double *scratch, sk_index n_classes, sk_index n_rows)
{
    (void)n_rows;
    sk_index rows = sk_block_rows(n_classes);
    const sk_index wide = (sk_index)(sizeof(long double) / sizeof(double)) + 1;
    sk_block blk;
    blk.strip = scratch;
    blk.row_work = scratch + sk_round8(rows * n_classes) + SK_STRIP_GAP;
    blk.columns = (double *)blk.row_work + sk_round8(3 * wide * n_classes);
    blk.columns_sums = (double *)blk.columns + sk_round8(rows * n_classes) + 2 * sk_round8(rows);
    blk.row_max = blk.columns_sums + 2 * sk_round8(rows);
    blk.first_argmax = blk.row_max + sk_round8(rows);
    blk.sum_excl = blk.first_argmax + sk_round8(rows);
    blk.log1p_sum = blk.sum_excl + sk_round8(rows);
    blk.row_values = blk.log1p_sum + sk_round8(rows);
    blk.short_work = blk.row_values + SK_ROW_VALUES * sk_round8(rows);
    blk.status = (unsigned char *)(blk.short_work + sk_short_work_doubles(n_classes));
    return blk;
}

/* One call: base pointers of the C-contiguous (N, K) inputs and outputs (NULL when
 * absent or not wanted) and the per-call constants. Pointers are void so that
 * one struct serves both dtypes; the row kernels cast them to their SK_REAL. */
typedef struct {
    sk_index n_rows;             /* of the whole call */
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
    void *row_loss;              /* per-row loss: double, or the data type (row_loss_is_double 0) */
    int row_loss_is_double;      /* always 1 for double data and for reductions */
    void *softmax;
    void *log_softmax;
    void *gradient;
    void *hessian;
    void *hessian_diagonal;
    void *hessian_vector_product;
} sk_problem;

/* A kernel over the rows [row_begin, row_end), at most sk_block_rows(K) of them. */
typedef void (*sk_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end, double *scratch);

/* Compensated accumulation with Knuth's TwoSum: err collects the exact rounding
 * error of every addition, so a sum of n terms is accurate to about one rounding
 * of the result instead of n roundings (sums over K = 1e5 classes, over 1e6 rows). */
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

/* Independent accumulators break the dependency chain of the additions; the
 * lane of a term depends only on its index, so results do not depend on threads. */
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

/* LAPACK packed storage (0-based): UPLO='U' keeps H[i][j], i <= j, at j(j+1)/2 + i;
 * UPLO='L' keeps H[i][j], i >= j, at i + j(2K-j-1)/2. Mirrored by _layout.py. */
SK_INLINE sk_index sk_packed_upper_index(sk_index i, sk_index j)
{
    return j * (j + 1) / 2 + i;
}

SK_INLINE sk_index sk_packed_lower_index(sk_index i, sk_index j, sk_index n_classes)
{
    return i + j * (2 * n_classes - j - 1) / 2;
}

/* The instruction set the block kernels run with on this CPU. */
static inline const char *sk_simd_name(void)
{
#if SK_HAS_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return "AVX512 (x86-64-v4)";
    if (__builtin_cpu_supports("x86-64-v3"))
        return "AVX2 (x86-64-v3)";
#endif
#if defined(__AVX512F__)
    return "AVX512";
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
