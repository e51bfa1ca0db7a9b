/* softmax_kernels: blocks of rows and the per-thread scratch a block kernel works in.
 *
 * Rows are processed in blocks of about SK_STRIP_ELEMENTS values, so that the block's exp
 * values (the strip) stay in L1 and per-row work runs vectorised across the block's rows.
 * Each thread owns one scratch array of sk_scratch_doubles(K) doubles; sk_block_layout cuts
 * it into the regions below, and each execution path names the regions it uses through a
 * view of its own (the *_scratch structs of the *_impl.h files).
 */
#ifndef SOFTMAX_KERNELS_BLOCK_H
#define SOFTMAX_KERNELS_BLOCK_H

#include "portability.h"
#include "problem.h"

#define SK_STRIP_ELEMENTS 2048
#define SK_MAX_BLOCK_ROWS 256
/* Rows of up to this many classes are short rows: processed as columns, one SIMD lane per row. */
#define SK_SMALL_CLASSES 16
/* CASE(K) for each K up to SK_SMALL_CLASSES, to compile a loop once per constant K. */
#define SK_EACH_SHORT_K(CASE) \
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) \
    CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15) CASE(16)

/* Large outputs written by threads of a team are written block by block with streaming
 * (non-temporal) stores from an L1-resident copy, from this many bytes on: a plain store
 * first reads the line it writes, so an output far larger than the caches costs its bytes
 * twice in memory traffic where threads share the bandwidth; on one thread, and below this
 * size, plain stores are faster (docs/performance-notes.md, "SK_STREAM_MIN_BYTES").
 * tools/isa_builds.sh sets it to 0, to test the path. */
#ifndef SK_STREAM_MIN_BYTES
#define SK_STREAM_MIN_BYTES ((sk_index)16 << 20)
#endif

/* What the statistics found in a row: VALID and EXTREME rows are computed (EXTREME in a
 * wider type), INVALID rows are NaN, IGNORED rows zero. */
typedef enum { SK_ROW_VALID = 0, SK_ROW_INVALID = 1, SK_ROW_IGNORED = 2, SK_ROW_EXTREME = 3 } sk_row_status;

/* Rows per block. Short rows come in a multiple of 16 rows, so that each column of a block
 * is whole 64-byte vectors with no scalar remainder and starts on a line
 * (docs/performance-notes.md, "sk_block_rows"). */
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

/* Per-row arrays of doubles that the output paths name through their views. */
#define SK_ROW_VALUES 9

/* The short-row Hessian's work area: the factors of up to 16 rows (3 K values each) and a
 * tile of up to K^2 + 15 output columns of 64 bytes with room for the group's rows
 * (short_outputs_impl.h). */
static inline sk_index sk_short_work_doubles(sk_index n_classes)
{
    return n_classes <= SK_SMALL_CLASSES ? 3 * 16 * n_classes + 2 * 8 * (n_classes * n_classes + 16) : 0;
}

/* The summed Hessian's factors of short rows: 3 K values per row, rows padded to 8
 * (hessian_sum_impl.h). */
static inline sk_index sk_sum_work_doubles(sk_index n_classes)
{
    return n_classes <= SK_SMALL_CLASSES ? 3 * (SK_STRIP_ELEMENTS + 8 * SK_SMALL_CLASSES) : 0;
}

/* Unused doubles between the strip and the regions after it: a measured layout, not a
 * derived one (docs/performance-notes.md, "SK_STRIP_GAP"). */
#define SK_STRIP_GAP 16

/* Doubles per row of long double, and one more: the row-by-row work of extreme rows. */
static inline sk_index sk_wide_doubles(void)
{
    return (sk_index)(sizeof(long double) / sizeof(double)) + 1;
}

static inline sk_index sk_scratch_doubles(sk_index n_classes)
{
    const sk_index rows = sk_block_rows(n_classes);
    return 2 * sk_round8(rows * n_classes) + SK_STRIP_GAP + sk_round8(3 * sk_wide_doubles() * n_classes) +
           (9 + SK_ROW_VALUES) * sk_round8(rows) + sk_short_work_doubles(n_classes) +
           sk_sum_work_doubles(n_classes);
}

/* The regions of one thread's scratch (R = sk_block_rows(K) rows of K classes). */
typedef struct {
    void *strip;            /* R K values of the data type: exp values by rows, or a block's
                               flags, v columns or assembled output (short rows) */
    void *row_work;         /* 3 K values of up to long double: one row's e, s and -c s */
    void *columns;          /* short rows: R K values of the data type as columns, then 2 R more */
    double *row_sums;       /* 2 R doubles: short rows' sum accumulators, later the output
                               paths' per-row coefficients */
    double *row_max;        /* R each: m, */
    double *first_argmax;   /* the first class at m (short rows with Hv), */
    double *sum_excl;       /* T, */
    double *log1p_sum;      /* log1p(T) */
    double *row_values;     /* SK_ROW_VALUES arrays of R doubles for the output paths */
    double *short_work;     /* sk_short_work_doubles(K) */
    double *sum_work;       /* sk_sum_work_doubles(K) */
    unsigned char *status;  /* R sk_row_status values */
} sk_block;

SK_INLINE sk_block sk_block_layout(double *scratch, sk_index n_classes)
{
    const sk_index rows = sk_block_rows(n_classes);
    sk_block blk;
    blk.strip = scratch;
    blk.row_work = scratch + sk_round8(rows * n_classes) + SK_STRIP_GAP;
    blk.columns = (double *)blk.row_work + sk_round8(3 * sk_wide_doubles() * n_classes);
    blk.row_sums = (double *)blk.columns + sk_round8(rows * n_classes) + 2 * sk_round8(rows);
    blk.row_max = blk.row_sums + 2 * sk_round8(rows);
    blk.first_argmax = blk.row_max + sk_round8(rows);
    blk.sum_excl = blk.first_argmax + sk_round8(rows);
    blk.log1p_sum = blk.sum_excl + sk_round8(rows);
    blk.row_values = blk.log1p_sum + sk_round8(rows);
    blk.short_work = blk.row_values + SK_ROW_VALUES * sk_round8(rows);
    blk.sum_work = blk.short_work + sk_short_work_doubles(n_classes);
    blk.status = (unsigned char *)(blk.sum_work + sk_sum_work_doubles(n_classes));
    return blk;
}

/* What the statistics of a block (stats_impl.h) compute besides m, T and the status, and
 * where they leave the exp values. exp_rows and max_flags both fill the strip, so a call
 * asks for one of them at most. Exp values written straight into an output block spare a
 * pass: a loop of little arithmetic that stores to memory waits on each line it writes
 * (docs/performance-notes.md, "exp values into the output"). */
typedef struct {
    int log1p_sum;      /* log1p(T) per row (losses, log-softmax); zero otherwise */
    int detect_extreme; /* mark extreme rows, which target calls recompute in a wider type */
    int exp_rows;       /* short rows: the exp values in the strip as rows too (long rows: always) */
    int max_flags;      /* short rows: whether z_k = m, as columns of 1 and 0 in the strip */
    int first_argmax;   /* short rows: the first class at m per row, in blk->first_argmax */
    void *exp_rows_to;  /* long rows: where the exp values go, the block's rows of K values
                           (an output that the caller then finishes in place); NULL: the strip */
} sk_stats_options;

/* Row array `index` (< SK_ROW_VALUES) of the block's row values, for a block of n_rows rows. */
SK_INLINE double *sk_row_values(const sk_block *blk, int index, sk_index n_rows)
{
    return blk->row_values + index * n_rows;
}

#endif /* SOFTMAX_KERNELS_BLOCK_H */
