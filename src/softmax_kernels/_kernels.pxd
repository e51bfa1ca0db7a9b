# The C interface of the kernels (include/softmax_kernels/kernels.h), declared once.
from libc.stdint cimport int64_t


cdef extern from "softmax_kernels/kernels.h" nogil:
    ctypedef int64_t sk_index

    # One call: the inputs, the outputs and the per-call constants (see problem.h).
    ctypedef struct sk_problem:
        sk_index n_rows
        sk_index n_classes
        int target_kind
        int layout
        sk_index hessian_width
        double label_smoothing
        double eps_over_k
        double one_minus_eps
        double denominator
        int has_ignore_index
        int64_t ignore_index
        const void *z
        const int64_t *labels
        const void *soft_targets
        const void *sample_weight
        const void *class_weight
        const void *v
        const int64_t *groups
        void *row_loss
        int row_loss_is_double
        void *softmax
        void *log_softmax
        void *gradient
        void *hessian
        void *hessian_diagonal
        void *hessian_vector_product

    # A kernel over the rows [row_begin, row_end) with one thread's scratch.
    ctypedef void (*sk_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end,
                                 double *scratch) noexcept nogil

    ctypedef enum sk_target_kind:
        SK_TARGET_NONE
        SK_TARGET_LABELS
        SK_TARGET_SOFT
    ctypedef enum sk_layout:
        SK_LAYOUT_PACKED_UPPER
        SK_LAYOUT_PACKED_LOWER
        SK_LAYOUT_FULL
    enum:
        SK_SMALL_CLASSES  # rows of up to this many classes are short rows

    ctypedef enum sk_kernel:
        SK_KERNEL_SOFTMAX
        SK_KERNEL_LOG_SOFTMAX
        SK_KERNEL_TARGETS

    # A kernel that adds rows [row_begin, row_end) to compensated sums (sum, error).
    ctypedef void (*sk_sum_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end,
                                     double *scratch, double *sum, double *error) noexcept nogil

    # A kernel writing the factors of rows [row_begin, row_end): s, c and the diagonal terms.
    ctypedef void (*sk_factor_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end,
                                        double *scratch, double *s, double *c, double *diag) noexcept nogil

    sk_block_fn sk_block_function(sk_kernel kernel, int is_double)
    sk_factor_block_fn sk_hessian_factors_function(int is_double)
    void sk_add_compensated(double *sum, double *error, const double *x, sk_index n)
    void sk_add_rows_compensated(double *sum, double *error, const double *x, sk_index n_rows, sk_index width)
    sk_sum_block_fn sk_hessian_sum_function(int is_double)
    void sk_merge_partial_sums(const double *partials, sk_index n_chunks, sk_index width, double *out)
    sk_index sk_block_rows(sk_index n_classes)
    sk_index sk_scratch_doubles(sk_index n_classes)
    void sk_stream_fence()
    double sk_mean_denominator(const sk_problem *problem, int is_double)
    void sk_feature_pairs(const void *x, sk_index n_rows, sk_index n_features, sk_index t0, sk_index t1, void *out,
                          int is_double)
    double sk_compensated_sum(const double *x, sk_index n)
    const char *sk_simd_name()
    int sk_openmp_enabled()
    int sk_max_threads()
