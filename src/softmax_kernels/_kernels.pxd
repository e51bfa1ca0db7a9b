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
    ctypedef enum sk_kernel:
        SK_KERNEL_SOFTMAX
        SK_KERNEL_LOG_SOFTMAX
        SK_KERNEL_TARGETS

    sk_block_fn sk_block_function(sk_kernel kernel, int is_double)
    sk_index sk_block_rows(sk_index n_classes)
    sk_index sk_scratch_doubles(sk_index n_classes)
    void sk_stream_fence()
    double sk_mean_denominator(const sk_problem *problem, int is_double)
    double sk_compensated_sum(const double *x, sk_index n)
    const char *sk_simd_name()
    int sk_openmp_enabled()
    int sk_max_threads()
