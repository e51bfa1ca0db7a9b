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

from . import _threads
from ._layout import packed_rows_cols, packed_size, packed_upper_positions
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


cdef class _Scratch:
    """One scratch area per thread: each starts on a 128-byte pair of lines and spans whole
    pairs, so that no two threads write the same lines (docs/performance-notes.md, "Scratch
    alignment")."""
    cdef object buffer
    cdef double *data
    cdef sk_index width

    def __cinit__(self, sk_index n_classes, int n_threads):
        self.width = (sk_scratch_doubles(n_classes) + 15) // 16 * 16
        self.buffer = np.empty(n_threads * self.width + 16, dtype=np.float64)
        self.data = <double *>_data(self.buffer)
        self.data += (128 - <size_t>self.data % 128) % 128 // sizeof(double)


# The output kinds this driver writes (a kind added to the registry must be added here).
_OUTPUT_KINDS = frozenset({"softmax", "log_softmax", "loss", "gradient", "hessian", "hessian_vector_product",
                           "hessian_diagonal", "hessian_sum"})


cdef object _describe(sk_problem *pb, object plan):
    """Fill pb from the plan; returns the per-row loss buffer (or None) it points into."""
    memset(pb, 0, sizeof(pb[0]))
    outputs = plan.outputs
    if not _OUTPUT_KINDS.issuperset(outputs):
        raise NotImplementedError(f"the compiled driver cannot write {sorted(set(outputs) - _OUTPUT_KINDS)}")
    pb.n_rows = plan.n_rows
    pb.n_classes = plan.n_classes
    pb.z = _data(plan.z)
    pb.denominator = 1.0
    pb.softmax = _data(outputs.get("softmax"))
    pb.log_softmax = _data(outputs.get("log_softmax"))
    if plan.operation not in _KERNELS:
        _describe_targets(pb, plan)
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
    pb.groups = <const int64_t *>_data(plan.groups)
    return loss_rows


def run(plan):
    """Compute every output of ``plan`` into its output arrays."""
    if "hessian_sum" in plan.outputs:
        return _run_sum(plan)
    cdef sk_problem pb
    loss_rows = _describe(&pb, plan)
    cdef int is_double = plan.dtype == np.float64
    # No more threads than blocks of rows: an extra thread would only own scratch.
    cdef sk_index block_rows = sk_block_rows(pb.n_classes)
    cdef sk_index n_blocks = (pb.n_rows + block_rows - 1) // block_rows
    cdef int n_threads = min(thread_count(plan.num_threads, pb.n_rows * max(pb.n_classes, pb.hessian_width)),
                             max(1, n_blocks))
    cdef _Scratch scratch = _Scratch(pb.n_classes, n_threads)
    cdef sk_block_fn block_fn = sk_block_function(_KERNELS.get(plan.operation, SK_KERNEL_TARGETS), is_double)
    cdef bint mean = plan.reduction == "mean"
    cdef double total
    with nogil:
        if mean:
            pb.denominator = sk_mean_denominator(&pb, is_double)
        _run_blocks(&pb, block_fn, block_rows, n_blocks, scratch.data, scratch.width, n_threads)

    if loss_rows is not None and plan.reduction != "none":
        total = sk_compensated_sum(<double *>pb.row_loss, pb.n_rows)  # "mean": rows carry their 1/D
        with np.errstate(over="ignore"):  # a float32 loss beyond its range is +inf, silently
            plan.outputs["loss"][...] = reduced_loss(total, pb.denominator, plan.reduction)


def feature_pairs(block, t0, t1, out):
    """out[i, t - t0] = block[i, a] * block[i, b] for the packed upper positions t in [t0, t1) of
    the pairs a <= b: C-contiguous float32 or float64 arrays of one dtype (linear.py checks)."""
    cdef sk_index rows = block.shape[0], features = block.shape[1], first = t0, last = t1
    cdef int is_double = block.dtype == np.float64
    cdef const void *x = _data(block)
    cdef void *target = _data(out)
    with nogil:
        sk_feature_pairs(x, rows, features, first, last, target, is_double)


# ---- summed outputs -------------------------------------------------------------------------

# A summed output is accumulated in chunks of blocks, each into partial sums of its own, and the
# chunks' partials are combined in chunk order: the chunks depend only on the call's size, never
# on the threads, so neither does the result. At most this many chunks, and at most this many
# doubles of partials in all.
MAX_CHUNKS = 256
PARTIALS_BUDGET = 1 << 22


cdef void _sum_chunks(const sk_problem *pb, sk_sum_block_fn block_fn, sk_index block_rows, sk_index n_blocks,
                      sk_index n_chunks, double *partials, sk_index width, double *scratch,
                      sk_index scratch_width, int n_threads) noexcept nogil:
    cdef sk_index c
    if n_threads == 1:
        for c in range(n_chunks):
            _sum_chunk(pb, block_fn, block_rows, n_blocks, n_chunks, c, partials, width, scratch)
        return
    with parallel(num_threads=n_threads):
        for c in prange(n_chunks, schedule="static"):
            _sum_chunk(pb, block_fn, block_rows, n_blocks, n_chunks, c, partials, width,
                       scratch + threadid() * scratch_width)


cdef inline void _sum_chunk(const sk_problem *pb, sk_sum_block_fn block_fn, sk_index block_rows,
                            sk_index n_blocks, sk_index n_chunks, sk_index chunk, double *partials,
                            sk_index width, double *scratch) noexcept nogil:
    cdef sk_index b
    for b in range(chunk * n_blocks // n_chunks, (chunk + 1) * n_blocks // n_chunks):
        block_fn(pb, b * block_rows, min(pb.n_rows, (b + 1) * block_rows), scratch,
                 partials + 2 * chunk * width, partials + (2 * chunk + 1) * width)


def _run_sum(plan):
    """The summed Hessian: packed upper sums per group, then in the plan's layout."""
    if plan.n_classes > SK_SMALL_CLASSES and plan.groups is None:
        sums = _sum_by_products(plan)
    else:
        sums = _sum_by_rows(plan)
    out = plan.outputs["hessian_sum"]
    with np.errstate(over="ignore"):
        out[...] = sums.reshape(plan.group_count, packed_size(plan.n_classes))[
            :, packed_upper_positions(plan.n_classes, plan.layout).ravel()].reshape(out.shape)


def _sum_by_rows(plan):
    """Packed upper sums per group, every row's terms added one by one (compensated)."""
    cdef sk_problem pb
    _describe(&pb, plan)
    cdef int is_double = plan.dtype == np.float64
    cdef sk_index width = plan.group_count * packed_size(plan.n_classes)
    cdef sk_index block_rows = sk_block_rows(pb.n_classes)
    cdef sk_index n_blocks = (pb.n_rows + block_rows - 1) // block_rows
    if width == 0:  # no groups, so no rows
        return np.zeros(0)
    cdef sk_index n_chunks = max(1, min(n_blocks, MAX_CHUNKS, PARTIALS_BUDGET // (2 * width)))
    cdef int n_threads = min(thread_count(plan.num_threads, pb.n_rows * packed_size(plan.n_classes)), n_chunks)
    cdef _Scratch scratch = _Scratch(pb.n_classes, n_threads)
    partials = np.zeros((n_chunks, 2, width))
    sums = np.empty(width)
    cdef double *partials_data = <double *>_data(partials)
    cdef double *sums_data = <double *>_data(sums)
    cdef sk_sum_block_fn block_fn = sk_hessian_sum_function(is_double)
    cdef bint mean = plan.reduction == "mean"
    with nogil:
        if mean:
            pb.denominator = sk_mean_denominator(&pb, is_double)
        if n_blocks:
            _sum_chunks(&pb, block_fn, block_rows, n_blocks, n_chunks, partials_data, width, scratch.data,
                        scratch.width, n_threads)
        sk_merge_partial_sums(partials_data, n_chunks, width, sums_data)
    return sums


# Rows per matrix product of the summed Hessian of long rows (docs/performance-notes.md,
# "PRODUCT_ROWS"): the off-diagonal sums of each such slice come from one BLAS product.
PRODUCT_ROWS = 1024


cdef void _factor_blocks(const sk_problem *pb, sk_factor_block_fn block_fn, sk_index row_begin, sk_index row_end,
                         sk_index block_rows, double *s, double *c, double *diag, double *scratch,
                         sk_index scratch_width, int n_threads) noexcept nogil:
    cdef sk_index b, first, n_blocks = (row_end - row_begin + block_rows - 1) // block_rows
    cdef sk_index n_classes = pb.n_classes
    if n_threads == 1:
        for b in range(n_blocks):
            first = row_begin + b * block_rows
            block_fn(pb, first, min(row_end, first + block_rows), scratch, s + b * block_rows * n_classes,
                     c + b * block_rows, diag + b * block_rows * n_classes)
        return
    with parallel(num_threads=n_threads):
        for b in prange(n_blocks, schedule="static"):
            first = row_begin + b * block_rows
            block_fn(pb, first, min(row_end, first + block_rows), scratch + threadid() * scratch_width,
                     s + b * block_rows * n_classes, c + b * block_rows, diag + b * block_rows * n_classes)


def _sum_by_products(plan):
    """The packed upper sum of long rows: the diagonal from the rows' accurate diagonal terms
    (compensated), the off-diagonal elements -sum_i c_i s_ik s_il from BLAS products of
    PRODUCT_ROWS rows at a time (S^T diag(c) S; (sqrt(c) S)^T (sqrt(c) S) where c >= 0), the
    slices' products added compensated, in row order. BLAS runs on the call's threads."""
    with _threads.blas_threads(plan.num_threads):
        return _sum_by_product_slices(plan)


def _sum_by_product_slices(plan):
    cdef sk_problem pb
    _describe(&pb, plan)
    cdef int is_double = plan.dtype == np.float64
    cdef sk_index n_classes = pb.n_classes
    cdef sk_index block_rows = sk_block_rows(n_classes)
    cdef sk_index slice_rows = max(1, PRODUCT_ROWS // block_rows) * block_rows
    cdef sk_index rows = min(pb.n_rows, slice_rows)
    cdef int n_threads = min(thread_count(plan.num_threads, rows * n_classes), max(1, rows // block_rows))
    cdef _Scratch scratch = _Scratch(n_classes, n_threads)
    s_buffer, c_buffer, diag_buffer = np.empty((rows, n_classes)), np.empty(rows), np.empty((rows, n_classes))
    cdef double *s_data = <double *>_data(s_buffer)
    cdef double *c_data = <double *>_data(c_buffer)
    cdef double *diag_data = <double *>_data(diag_buffer)
    diagonal = np.zeros((2, n_classes))  # sum, error
    off_diagonal = np.zeros((2, n_classes, n_classes))
    cdef double *diagonal_data = <double *>_data(diagonal)
    cdef double *off_data = <double *>_data(off_diagonal)
    cdef double *product_data
    cdef sk_factor_block_fn block_fn = sk_hessian_factors_function(is_double)
    cdef sk_index begin, end
    if plan.reduction == "mean":
        with nogil:
            pb.denominator = sk_mean_denominator(&pb, is_double)
    for begin in range(0, pb.n_rows, slice_rows):
        end = min(pb.n_rows, begin + slice_rows)
        with nogil:
            _factor_blocks(&pb, block_fn, begin, end, block_rows, s_data, c_data, diag_data, scratch.data,
                           scratch.width, n_threads)
            sk_add_rows_compensated(diagonal_data, diagonal_data + n_classes, diag_data, end - begin, n_classes)
        s, c = s_buffer[:end - begin], c_buffer[:end - begin]
        if np.all(c >= 0):
            root = s * np.sqrt(c)[:, None]
            product = root.T @ root  # NumPy computes a matrix times its own transpose with SYRK
        else:
            product = (s * c[:, None]).T @ s
        np.negative(product, out=product)
        product = np.ascontiguousarray(product)
        product_data = <double *>_data(product)
        with nogil:
            sk_add_compensated(off_data, off_data + n_classes * n_classes, product_data, n_classes * n_classes)
    total = _compensated_value(off_diagonal)
    total[np.diag_indices(n_classes)] = _compensated_value(diagonal)
    rows_index, columns_index = packed_rows_cols(n_classes, "packed_upper")
    return total[rows_index, columns_index]


def _compensated_value(pair):
    """sum + error of a compensated (sum, error) pair of arrays; the sum where it is not finite."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(pair[0]), pair[0] + pair[1], pair[0])
