# cython: language_level=3
"""The compiled driver: turns a validated plan into an ``sk_problem`` and runs the row loop.

It trusts its argument (``_validate.make_plan`` checked everything). The
arithmetic lives in ``include/softmax_kernels/row_kernels_impl.h``; here we only
pick the block kernel for the dtype, release the GIL, and spread blocks of rows
over OpenMP threads with a static schedule and one scratch area per thread.
"""

cimport numpy as cnp
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int64_t
from libc.math cimport NAN
from libc.string cimport memset

import numpy as np

cnp.import_array()

cdef extern from "softmax_kernels/kernels.h" nogil:
    ctypedef int64_t sk_index
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
    ctypedef void (*sk_block_fn)(const sk_problem *problem, sk_index row_begin, sk_index row_end,
                                 double *scratch) noexcept nogil
    enum:
        SK_TARGET_NONE
        SK_TARGET_LABELS
        SK_TARGET_SOFT
        SK_LAYOUT_PACKED_UPPER
        SK_LAYOUT_PACKED_LOWER
        SK_LAYOUT_FULL
        SK_OP_SOFTMAX
        SK_OP_LOG_SOFTMAX
        SK_OP_TARGET
    sk_block_fn sk_block_function(int op, int is_double)
    sk_index sk_block_rows(sk_index n_classes)
    void sk_stream_fence()
    sk_index sk_scratch_doubles(sk_index n_classes)
    double sk_mean_denominator(const sk_problem *pb, sk_index n_rows, int is_double)
    double sk_compensated_sum(const double *x, sk_index n)
    const char *sk_simd_name()

cdef extern from "softmax_kernels/vmath_accuracy.h" nogil:
    ctypedef unsigned long long uint64_t
    double sk_exp_f_max_ulp_error(uint64_t begin, uint64_t end)
    double sk_exp_d_max_ulp_error(const double *x, sk_index n)
    double sk_log1p_d_max_ulp_error(const double *x, sk_index n)
    uint64_t sk_exp_nonpositive_f_mismatches(uint64_t begin, uint64_t end)
    double sk_exp_nonpositive_d_mismatches(const double *x, sk_index n)

cdef extern from "softmax_kernels/openmp_shim.h" nogil:
    int sk_openmp_enabled()
    int sk_max_threads()

# Calls touching fewer elements than this run on one thread: waking a team costs
# more than it saves (the same idea as PyTorch's grain size).
SERIAL_GRAIN = 32768

_TARGET_KINDS = {"none": SK_TARGET_NONE, "labels": SK_TARGET_LABELS, "soft": SK_TARGET_SOFT}
_LAYOUTS = {"packed_upper": SK_LAYOUT_PACKED_UPPER, "packed_lower": SK_LAYOUT_PACKED_LOWER,
            "full": SK_LAYOUT_FULL}


def build_info():
    """Facts about this build for ``show_config()``."""
    return {
        "openmp": bool(sk_openmp_enabled()),
        "simd": sk_simd_name().decode("ascii"),
        "max_threads": int(sk_max_threads()),
    }


def thread_count(requested, sk_index work):
    """Threads for a call touching ``work`` elements; None reads the OpenMP default now."""
    if work < SERIAL_GRAIN:
        return 1
    return max(1, int(sk_max_threads()) if requested is None else int(requested))


cdef inline void *_data(object arr):
    return NULL if arr is None else cnp.PyArray_DATA(<cnp.ndarray>arr)


cdef void _run_blocks(const sk_problem *pb, sk_block_fn block_fn, sk_index n_rows, sk_index block_rows,
                      sk_index n_blocks, double *scratch, sk_index scratch_width, int n_threads) noexcept nogil:
    cdef sk_index b
    cdef double *mine
    # Each thread fences its streaming stores (large outputs) once, after its last block.
    if n_threads == 1:
        for b in range(n_blocks):
            block_fn(pb, b * block_rows, min(n_rows, (b + 1) * block_rows), scratch)
        sk_stream_fence()
        return
    with parallel(num_threads=n_threads):
        mine = scratch + threadid() * scratch_width
        for b in prange(n_blocks, schedule="static"):
            block_fn(pb, b * block_rows, min(n_rows, (b + 1) * block_rows), mine)
        sk_stream_fence()


def run(plan):
    """Compute every output of ``plan`` into its output arrays."""
    cdef sk_problem pb
    memset(&pb, 0, sizeof(pb))
    cdef int is_double = plan.dtype == np.float64
    cdef sk_index n_rows = plan.n_rows
    cdef sk_index n_classes = plan.n_classes
    cdef double total, denominator = 1.0
    cdef int op
    outputs = plan.outputs

    pb.n_rows = n_rows
    pb.n_classes = n_classes
    pb.z = _data(plan.z)
    pb.denominator = 1.0
    if plan.operation == "softmax":
        op, pb.softmax = SK_OP_SOFTMAX, _data(outputs["softmax"])
    elif plan.operation == "log_softmax":
        op, pb.log_softmax = SK_OP_LOG_SOFTMAX, _data(outputs["log_softmax"])
    else:
        op = SK_OP_TARGET
        _describe_targets(&pb, plan)
    loss_buffer = None
    if "loss" in outputs:
        # Per-row losses go straight into the output, rounded once from double; a reduction
        # sums the rows' double values.
        direct = (plan.reduction == "none" and outputs["loss"].dtype == plan.dtype
                  and outputs["loss"].flags.c_contiguous)
        loss_buffer = outputs["loss"] if direct else np.empty(n_rows, dtype=np.float64)
        pb.row_loss = _data(loss_buffer)
        pb.row_loss_is_double = loss_buffer.dtype == np.float64
    pb.gradient = _data(outputs.get("gradient"))
    pb.hessian = _data(outputs.get("hessian"))
    pb.hessian_diagonal = _data(outputs.get("hessian_diagonal"))
    pb.hessian_vector_product = _data(outputs.get("hessian_vector_product"))

    # No more threads than blocks of rows: an extra thread would only own scratch.
    cdef sk_index block_rows = sk_block_rows(n_classes)
    cdef sk_index n_blocks = (n_rows + block_rows - 1) // block_rows
    cdef int n_threads = min(thread_count(plan.num_threads, n_rows * max(n_classes, pb.hessian_width)),
                             max(1, n_blocks))
    # Each thread's scratch starts on a pair of 64-byte lines (the kernels' SIMD loads then
    # stay within lines: up to 5% faster at K = 10) and spans whole pairs (128 bytes, what
    # the adjacent-line prefetcher fetches), so that no two threads write the same lines.
    cdef sk_index scratch_width = (sk_scratch_doubles(n_classes) + 15) // 16 * 16
    scratch = np.empty(n_threads * scratch_width + 16, dtype=np.float64)
    cdef double *scratch_data = <double *>_data(scratch)
    scratch_data += (128 - <size_t>scratch_data % 128) % 128 // sizeof(double)
    cdef sk_block_fn block_fn = sk_block_function(op, is_double)
    cdef bint mean = plan.reduction == "mean"
    with nogil:
        if mean:
            denominator = sk_mean_denominator(&pb, n_rows, is_double)
            pb.denominator = denominator
        _run_blocks(&pb, block_fn, n_rows, block_rows, n_blocks, scratch_data, scratch_width, n_threads)

    if loss_buffer is not None and loss_buffer is not outputs["loss"]:
        if plan.reduction != "none":
            total = sk_compensated_sum(<double *>pb.row_loss, n_rows)  # "mean": rows carry their 1/D
            if plan.reduction == "mean" and denominator == 0:
                total = NAN  # no counted rows: NaN, as torch
            loss_buffer = total
        with np.errstate(over="ignore"):  # a float32 loss beyond its range is +inf, silently
            outputs["loss"][...] = loss_buffer


cdef void _describe_targets(sk_problem *pb, object plan) except *:
    cdef double eps = plan.label_smoothing
    pb.target_kind = _TARGET_KINDS[plan.target_kind]
    pb.layout = _LAYOUTS[plan.layout]
    if plan.layout == "full":
        pb.hessian_width = pb.n_classes * pb.n_classes
    else:
        pb.hessian_width = pb.n_classes * (pb.n_classes + 1) // 2
    pb.label_smoothing = eps
    pb.eps_over_k = eps / pb.n_classes
    pb.one_minus_eps = 1.0 - eps
    if plan.ignore_index is not None:  # validation mapped it into int64
        pb.has_ignore_index = 1
        pb.ignore_index = plan.ignore_index
    pb.labels = <const int64_t *>_data(plan.labels)
    pb.soft_targets = _data(plan.soft_targets)
    pb.sample_weight = _data(plan.sample_weight)
    pb.class_weight = _data(plan.class_weight)
    pb.v = _data(plan.v)


# ---- accuracy sweeps of the vectorisable exp and log1p, for tests/test_vmath.py ----------

def exp_float32_max_ulp_error(begin, end):
    """Largest ulp error of the kernels' float exp over float bit patterns in [begin, end)."""
    cdef uint64_t b = begin, e = end
    cdef double worst
    with nogil:
        worst = sk_exp_f_max_ulp_error(b, e)
    return worst


ctypedef double (*_sweep_fn)(const double *x, sk_index n) noexcept nogil


cdef double _sweep(_sweep_fn sweep, x) except? -1:
    cdef const double[::1] values = np.ascontiguousarray(x, dtype=np.float64)
    cdef double result = 0.0
    if values.shape[0]:
        with nogil:
            result = sweep(&values[0], values.shape[0])
    return result


def exp_float64_max_ulp_error(x):
    """Largest ulp error of the kernels' double exp over the float64 array x."""
    return _sweep(sk_exp_d_max_ulp_error, x)


def log1p_float64_max_ulp_error(x):
    """Largest ulp error of the kernels' double log1p over the float64 array x (x >= 0)."""
    return _sweep(sk_log1p_d_max_ulp_error, x)


def exp_nonpositive_float32_mismatches(begin, end):
    """Float bit patterns in [begin, end) where the kernels' flushing exp breaks its promise."""
    cdef uint64_t b = begin, e = end, count
    with nogil:
        count = sk_exp_nonpositive_f_mismatches(b, e)
    return count


def exp_nonpositive_float64_mismatches(x):
    """Values of the float64 array x where the kernels' flushing exp breaks its promise."""
    return int(_sweep(sk_exp_nonpositive_d_mismatches, x))
