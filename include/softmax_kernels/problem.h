/* softmax_kernels: what one call asks of the kernels (sk_problem) and the type of a block kernel.
 *
 * Plain C99, no Python, no allocation. Every size and offset is int64_t (sk_index), so
 * batches with more than 2^31 output elements index correctly.
 */
#ifndef SOFTMAX_KERNELS_PROBLEM_H
#define SOFTMAX_KERNELS_PROBLEM_H

#include <stdint.h>

typedef int64_t sk_index;

typedef enum { SK_TARGET_NONE = 0, SK_TARGET_LABELS = 1, SK_TARGET_SOFT = 2 } sk_target_kind;
typedef enum { SK_LAYOUT_PACKED_UPPER = 0, SK_LAYOUT_PACKED_LOWER = 1, SK_LAYOUT_FULL = 2 } sk_layout;

/* One call: base pointers of the C-contiguous (N, K) inputs and outputs (NULL when absent or
 * not wanted) and the per-call constants. Pointers are void so that one struct serves both
 * dtypes; the kernels cast them to their real type. */
typedef struct {
    sk_index n_rows; /* of the whole call */
    sk_index n_classes;
    int target_kind;          /* sk_target_kind */
    int layout;               /* sk_layout */
    sk_index hessian_width;   /* K(K+1)/2 packed, K*K full */
    double label_smoothing;   /* eps */
    double eps_over_k;        /* eps / K */
    double one_minus_eps;     /* 1 - eps */
    double denominator;       /* the "mean" denominator D, else 1 */
    int has_ignore_index;
    int64_t ignore_index;
    const void *z;
    const int64_t *labels;
    const void *soft_targets;
    const void *sample_weight;
    const void *class_weight;
    const void *v;
    const int64_t *groups;    /* the summed Hessian's group of each row, or NULL: one group */
    void *row_loss;           /* per-row loss: double, or the data type (row_loss_is_double 0) */
    int row_loss_is_double;   /* always 1 for double data and for reductions */
    void *softmax;
    void *log_softmax;
    void *gradient;
    void *hessian;
    void *hessian_diagonal;
    void *hessian_vector_product;
} sk_problem;

/* A kernel over the rows [row_begin, row_end), at most sk_block_rows(K) of them, with one
 * thread's scratch of sk_scratch_doubles(K) doubles. */
typedef void (*sk_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end, double *scratch);

/* A kernel that adds rows [row_begin, row_end) to compensated sums (sum, error). */
typedef void (*sk_sum_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end, double *scratch,
                                double *sum, double *error);

#endif /* SOFTMAX_KERNELS_PROBLEM_H */
