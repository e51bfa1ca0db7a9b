# cython: language_level=3
"""The compiled driver: translates a validated plan into an ``sk_problem`` and runs the
block kernel over the rows.

Design: the C kernels (include/softmax_kernels/) own the arithmetic of one block of
rows; ``_validate.make_plan`` owns every check and the output shapes. This module only
translates between them: it fills the C struct from the plan (trusting it), picks the
block kernel for the dtype, releases the GIL and spreads blocks of rows over OpenMP
threads with a static schedule and one scratch area per thread.
"""

cimport numpy as cnp
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int64_t
from libc.string cimport memset

import numpy as np

from ._reduction import reduced_loss

cnp.import_array()

# Calls touching fewer elements than this run on one thread: waking a team costs
# more than it saves (the same idea as PyTorch's grain size).
SERIAL_GRAIN = 32768

_TARGET_KINDS = {"none": SK_TARGET_NONE, "labels": SK_TARGET_LABELS, "soft": SK_TARGET_SOFT}
_LAYOUTS = {"packed_upper": SK_LAYOUT_PACKED_UPPER, "packed_lower": SK_LAYOUT_PACKED_LOWER,
            "full": SK_LAYOUT_FULL}
_KERNELS = {"softmax": SK_KERNEL_SOFTMAX, "log_softmax": SK_KERNEL_LOG_SOFTMAX}


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


cdef void _run_blocks(const sk_problem *pb, sk_block_fn block_fn, sk_index block_rows, sk_index n_blocks,
                      double *scratch, sk_index scratch_width, int n_threads) noexcept nogil:
    cdef sk_index b
    cdef double *mine
    # Each thread fences its streaming stores (large outputs) once, after its last block.
    if n_threads == 1:
        for b in range(n_blocks):
            block_fn(pb, b * block_rows, min(pb.n_rows, (b + 1) * block_rows), scratch)
        sk_stream_fence()
        return
    with parallel(num_threads=n_threads):
        mine = scratch + threadid() * scratch_width
        for b in prange(n_blocks, schedule="static"):
            block_fn(pb, b * block_rows, min(pb.n_rows, (b + 1) * block_rows), mine)
        sk_stream_fence()


cdef void _describe_targets(sk_problem *pb, object plan) except *:
    cdef double eps = plan.label_smoothing
    pb.target_kind = _TARGET_KINDS[plan.target_kind]
    pb.layout = _LAYOUTS[plan.layout]
    pb.hessian_width = plan.hessian_width
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


def run(plan):
    """Compute every output of ``plan`` into its output arrays."""
    cdef sk_problem pb
    memset(&pb, 0, sizeof(pb))
    cdef int is_double = plan.dtype == np.float64
    cdef sk_kernel kernel = _KERNELS.get(plan.operation, SK_KERNEL_TARGETS)
    outputs = plan.outputs
    pb.n_rows = plan.n_rows
    pb.n_classes = plan.n_classes
    pb.z = _data(plan.z)
    pb.denominator = 1.0
    pb.softmax = _data(outputs.get("softmax"))
    pb.log_softmax = _data(outputs.get("log_softmax"))
    if kernel == SK_KERNEL_TARGETS:
        _describe_targets(&pb, plan)
    # Per-row losses go straight into the output, rounded once from double; a reduction
    # sums the rows' double values.
    loss_rows = None
    if "loss" in outputs:
        loss_rows = outputs["loss"] if plan.reduction == "none" else np.empty(plan.n_rows, dtype=np.float64)
        pb.row_loss = _data(loss_rows)
        pb.row_loss_is_double = loss_rows.dtype == np.float64
    pb.gradient = _data(outputs.get("gradient"))
    pb.hessian = _data(outputs.get("hessian"))
    pb.hessian_diagonal = _data(outputs.get("hessian_diagonal"))
    pb.hessian_vector_product = _data(outputs.get("hessian_vector_product"))

    # No more threads than blocks of rows: an extra thread would only own scratch.
    cdef sk_index block_rows = sk_block_rows(pb.n_classes)
    cdef sk_index n_blocks = (pb.n_rows + block_rows - 1) // block_rows
    cdef int n_threads = min(thread_count(plan.num_threads, pb.n_rows * max(pb.n_classes, pb.hessian_width)),
                             max(1, n_blocks))
    # Each thread's scratch starts on a 128-byte pair of lines and spans whole pairs, so that
    # no two threads write the same lines (docs/performance-notes.md, "scratch alignment").
    cdef sk_index scratch_width = (sk_scratch_doubles(pb.n_classes) + 15) // 16 * 16
    scratch = np.empty(n_threads * scratch_width + 16, dtype=np.float64)
    cdef double *scratch_data = <double *>_data(scratch)
    scratch_data += (128 - <size_t>scratch_data % 128) % 128 // sizeof(double)
    cdef sk_block_fn block_fn = sk_block_function(kernel, is_double)
    cdef bint mean = plan.reduction == "mean"
    cdef double total
    with nogil:
        if mean:
            pb.denominator = sk_mean_denominator(&pb, is_double)
        _run_blocks(&pb, block_fn, block_rows, n_blocks, scratch_data, scratch_width, n_threads)

    if loss_rows is not None and plan.reduction != "none":
        total = sk_compensated_sum(<double *>pb.row_loss, pb.n_rows)  # "mean": rows carry their 1/D
        with np.errstate(over="ignore"):  # a float32 loss beyond its range is +inf, silently
            outputs["loss"][...] = reduced_loss(total, pb.denominator, plan.reduction)
