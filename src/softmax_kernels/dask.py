"""The softmax_kernels functions on Dask arrays, for batches larger than memory.

``softmax_kernels.dask`` has the nine functions of the top level (``softmax``,
``log_softmax``, ``loss``, ``gradient``, ``loss_gradient``, ``hessian``,
``loss_gradient_hessian``, ``hessian_vector_product``, ``hessian_diagonal``)
with the same signatures, except that there are no ``out``/``loss_out``/
``grad_out``/``hess_out`` arguments: Dask arrays are immutable, so every result
is a new lazy ``dask.array.Array`` (call ``.compute()``, ``dask.compute(...)`` or
``client.compute(...)``). Inputs may be Dask or NumPy arrays (or anything
``dask.array.asarray`` accepts). Install with ``pip install "softmax_kernels[dask]"``.

How it computes
---------------
* Batch axes may be chunked any way; a chunked class axis (of z, v, soft targets
  or class_weight) is rechunked to one chunk, since a row's softmax needs the
  whole row. Inputs are aligned chunk by chunk along the batch axes.
* Each block is one call of the compiled ``softmax_kernels`` function (no Python
  loop over rows); multi-output functions compute all their outputs in that one
  call per block.
* ``reduction="sum"``: each block returns its ``"sum"`` loss; the partials are
  summed (in float64, then rounded to the result dtype) by Dask's tree reduction.
* ``reduction="mean"``: the global denominator D (labels: sum of w * cw_y over
  non-ignored rows; soft targets or ``y=None``: sum of w, or the row count when
  unweighted) is computed lazily first; then, exactly as the kernels do in
  memory, each block is called with the row weights w / D and ``"sum"``. So the
  gradients and Hessians of a ``"mean"`` loss use the global denominator, and
  zero or all-ignored rows give a NaN loss and zero derivatives.
* Shapes, dtypes and options are validated eagerly (when the function is
  called), with the same messages as the in-memory API. Label values can only be
  checked when the data is read: a bad label raises the in-memory ``ValueError``
  at compute time, and the position it names is relative to its block.

Threads on a cluster
--------------------
Each block runs the kernel with ``num_threads`` OpenMP threads (``None``: the
OpenMP default of the worker process, i.e. ``OMP_NUM_THREADS`` or all cores).
A Dask worker already runs ``nthreads`` tasks at once, so keep
``nthreads * OpenMP threads`` at most the worker's cores, either

* one task per worker, many OpenMP threads: ``dask worker --nthreads 1`` with
  ``OMP_NUM_THREADS=<cores>`` in the worker's environment, or
* many tasks per worker, one OpenMP thread each: ``num_threads=1`` in the call
  (or ``OMP_NUM_THREADS=1`` in the worker's environment) with
  ``--nthreads <cores>``.

``distributed.LocalCluster(n_workers=..., threads_per_worker=...)`` and
``dask worker --nthreads`` set ``nthreads``; recent versions of distributed
also set ``OMP_NUM_THREADS=1`` in new worker processes by default
(``distributed.nanny.pre-spawn-environ``), so ``num_threads=None`` on such a
worker already means one OpenMP thread per task.
"""

from __future__ import annotations

import string

import numpy as np

try:
    import dask.array as da
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'softmax_kernels.dask needs Dask: pip install "softmax_kernels[dask]" (or "dask[array]")'
    ) from _error

import softmax_kernels as _sk

from ._api import PUBLIC_NAMES
from ._validate import OPERATIONS, computation_dtype, make_plan, packed_size

__all__ = list(PUBLIC_NAMES)

_BATCH_LETTERS = string.ascii_lowercase[:20]
_CLASS_LETTER = "z"
_HESSIAN_LETTER = "y"  # second class axis of a "full" Hessian
_OPTION_NAMES = ("class_weight", "label_smoothing", "ignore_index", "layout")


# ---------------------------------------------------------------------------
# Per-block functions (module level, so that they pickle to worker processes).


def _run_block(z, y, v, sample_weight, class_weight, denominator, *, operation, reduction, options):
    """One kernel call on one block; returns the tuple of its outputs.

    ``denominator`` is the global "mean" denominator (a 0-d array) or None; with it the
    block's row weights become w / D and the block is reduced with "sum", as the
    in-memory kernels do.
    """
    kwargs = dict(options)
    if class_weight is not None:
        kwargs["class_weight"] = class_weight
    if denominator is not None:
        rows = z.shape[:-1]
        dtype = computation_dtype(np.asarray(z).dtype, "z")
        weight = np.ones(rows) if sample_weight is None else np.asarray(sample_weight, dtype=dtype)
        with np.errstate(divide="ignore", invalid="ignore"):  # D = 0: the NaN/inf of the in-memory call
            sample_weight = weight.astype(np.float64) / np.float64(denominator)
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    if OPERATIONS[operation][1] is not None:  # functions with targets take a reduction
        kwargs["reduction"] = "none" if reduction == "none" else "sum"
    function = getattr(_sk, operation)
    positional = (z,) if OPERATIONS[operation][1] is None else (z, y) if v is None else (z, v, y)
    result = function(*positional, **kwargs)
    return result if isinstance(result, tuple) else (result,)


def _pick_output(block_outputs, index, reduced_loss, n_batch_axes):
    """Output ``index`` of a block; a reduced loss partial becomes a (1, ..., 1) block."""
    value = block_outputs[index]
    if reduced_loss:
        return np.asarray(value, dtype=np.float64).reshape((1,) * n_batch_axes)
    return value


def _denominator_block(y, sample_weight, class_weight, *, computation, ignore_index, n_batch_axes):
    """This block's part of the "mean" denominator, as a (1, ..., 1) float64 block."""
    if sample_weight is not None:
        weight = np.asarray(sample_weight, dtype=computation).astype(np.float64)
    else:
        weight = np.ones(np.shape(y) if y is not None else (), dtype=np.float64)
    if y is not None:  # integer labels
        labels = np.asarray(y)
        kept = np.ones(labels.shape, dtype=bool) if ignore_index is None else labels != ignore_index
        if class_weight is not None:
            # Ignored (or, until the kernel rejects them, out-of-range) labels must not index cw.
            safe = np.where(kept, labels, 0).astype(np.intp, copy=False)
            cw = np.asarray(class_weight, dtype=computation).astype(np.float64)
            weight = weight * np.take(cw, safe, mode="clip")
        weight = np.where(kept, weight, 0.0)
    return np.asarray(np.sum(weight, dtype=np.float64)).reshape((1,) * n_batch_axes)


# ---------------------------------------------------------------------------
# Eager validation from metadata.


def _as_dask(x):
    if x is None:
        return None
    if isinstance(x, da.Array):
        return x
    if isinstance(x, (bool, np.bool_)):
        return x  # rejected by make_plan with the in-memory message
    return da.asarray(np.asarray(x))


def _check_real_shape(x, name, shape):
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {x.dtype}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def _target_kind(y, z_shape):
    """'labels' or 'soft' from y's shape, with the in-memory messages for everything else."""
    batch_shape = tuple(z_shape[:-1])
    if isinstance(y, (bool, np.bool_)):
        raise TypeError(f"y: expected integer labels or real soft targets, got {type(y).__name__} {y!r}")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y: expected integer labels or real soft targets, got dtype {y.dtype}")
    if tuple(y.shape) == tuple(z_shape):
        return "soft"
    if tuple(y.shape) == batch_shape:
        if y.dtype.kind not in "iu":
            raise TypeError(
                f"y: labels of the batch shape {batch_shape} must have an integer dtype, got dtype {y.dtype} "
                f"(soft targets need z's full shape)"
            )
        return "labels"
    raise ValueError(
        f"y: expected labels of shape {batch_shape} or soft targets of shape {tuple(z_shape)}, "
        f"got shape {tuple(y.shape)}"
    )


def _validate(operation, z, y, v, sample_weight, class_weight, options, reduction, num_threads):
    """Check everything metadata allows, by the in-memory rules; return (dtype, target kind)."""
    if z.ndim == 0:
        raise ValueError("z: expected an array of shape (..., K) with the classes on the last axis, got a 0-d array")
    dtype = computation_dtype(z.dtype, "z")
    shape = tuple(z.shape)
    if shape[-1] < 1:
        raise ValueError(f"z: expected at least one class on the last axis, got shape {shape}")
    if any(isinstance(n, float) for n in shape):
        raise ValueError("z: unknown chunk sizes along the batch axes; call z.compute_chunk_sizes() first")
    n_classes = shape[-1]
    meta_batch = (0,) * max(z.ndim - 1, 1)  # zero rows: make_plan checks dtypes and options, allocates nothing
    meta = {"z": np.zeros(meta_batch + (n_classes,), dtype=z.dtype)}
    kind = None
    if y is not None and OPERATIONS[operation][1] is not None:
        kind = _target_kind(y, shape)
        meta["y"] = np.zeros(meta_batch + ((n_classes,) if kind == "soft" else ()), dtype=y.dtype)
    if sample_weight is not None:
        _check_real_shape(sample_weight, "sample_weight", shape[:-1])
        meta["sample_weight"] = np.zeros(meta_batch, dtype=sample_weight.dtype)
    if class_weight is not None:
        _check_real_shape(class_weight, "class_weight", (n_classes,))
        meta["class_weight"] = np.zeros(n_classes, dtype=class_weight.dtype)
    if v is not None:
        _check_real_shape(v, "v", shape)
        meta["v"] = np.zeros(meta_batch + (n_classes,), dtype=v.dtype)
    if OPERATIONS[operation][2] and v is None:
        raise ValueError(f"v: expected an array of shape {shape}, got None")
    option_kwargs = dict(options)
    if OPERATIONS[operation][1] is not None:
        option_kwargs["reduction"] = reduction
    make_plan(operation, meta["z"], meta.get("y"), meta.get("v"), sample_weight=meta.get("sample_weight"),
              class_weight=meta.get("class_weight"), num_threads=num_threads, outs=(), **option_kwargs)
    return dtype, kind


# ---------------------------------------------------------------------------
# Graph construction.


def _one_class_chunk(x):
    """Rechunk the last (class) axis to a single chunk."""
    return x if x.numblocks[-1] == 1 else x.rechunk({x.ndim - 1: -1})


def _mean_denominator(kind, y, sample_weight, class_weight, batch, dtype, ignore_index, n_rows):
    """The global "mean" denominator D as a lazy 0-d float64 array (or a float when static)."""
    if kind != "labels" and sample_weight is None:
        return float(n_rows)
    args = [y if kind == "labels" else None, batch if kind == "labels" else None,
            sample_weight, batch if sample_weight is not None else None,
            class_weight if kind == "labels" else None, _CLASS_LETTER if kind == "labels" and class_weight is not None else None]
    if args[4] is None:
        args[5] = None
    partials = da.blockwise(
        _denominator_block, batch, *args, dtype=np.float64, concatenate=True,
        adjust_chunks={letter: 1 for letter in batch},
        computation=dtype, ignore_index=ignore_index, n_batch_axes=len(batch),
    )
    return partials.sum()


def _call(operation, z, y=None, v=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
          ignore_index=None, reduction="none", layout="packed_upper", num_threads=None):
    output_kinds, _, _, uses_layout, _ = OPERATIONS[operation]
    z, y, v = _as_dask(z), _as_dask(y), _as_dask(v)
    sample_weight, class_weight = _as_dask(sample_weight), _as_dask(class_weight)
    has_targets = OPERATIONS[operation][1] is not None
    options = {}
    if has_targets:
        options.update(label_smoothing=label_smoothing, ignore_index=ignore_index)
    if uses_layout:
        options["layout"] = layout
    dtype, kind = _validate(operation, z, y, v, sample_weight, class_weight, options, reduction, num_threads)
    if not has_targets:
        reduction = "none"

    n_batch_axes = z.ndim - 1
    batch = _BATCH_LETTERS[:n_batch_axes]
    full = batch + _CLASS_LETTER
    z = _one_class_chunk(z)
    if v is not None:
        v = _one_class_chunk(v)
    if kind == "soft":
        y = _one_class_chunk(y)
    if class_weight is not None:
        class_weight = _one_class_chunk(class_weight)

    denominator = None
    if reduction == "mean":
        n_rows = int(np.prod(z.shape[:-1], dtype=np.int64))
        denominator = _mean_denominator(kind, y, sample_weight, class_weight, batch, dtype, ignore_index, n_rows)
        denominator = da.asarray(np.float64(denominator)) if isinstance(denominator, float) else denominator

    def pair(x, index):
        return (x, index if x is not None else None)

    block_options = dict(options, num_threads=num_threads)
    tuples = da.blockwise(
        _run_block, batch,
        *pair(z, full), *pair(y, full if kind == "soft" else batch), *pair(v, full),
        *pair(sample_weight, batch), *pair(class_weight, _CLASS_LETTER), *pair(denominator, ""),
        concatenate=True, meta=np.empty((0,) * n_batch_axes, dtype=object),
        operation=operation, reduction=reduction, options=block_options,
    )
    batch_chunks = tuples.chunks
    n_classes = z.shape[-1]
    results = []
    for index, kind_out in enumerate(output_kinds):
        if kind_out == "loss" and reduction != "none":
            partials = da.map_blocks(
                _pick_output, tuples, index, True, n_batch_axes,
                chunks=tuple((1,) * len(c) for c in batch_chunks), dtype=np.float64,
                meta=np.empty((0,) * n_batch_axes, dtype=np.float64),
            )
            total = partials.sum()
            if reduction == "mean":
                total = da.where(denominator == 0, np.nan, total)  # zero or all-ignored rows: NaN, as in memory
            results.append(total.astype(dtype))
            continue
        if kind_out == "loss":
            extra = ()
        elif kind_out == "hessian" and layout == "full":
            extra = ((n_classes,), (n_classes,))
        elif kind_out == "hessian":
            extra = ((packed_size(n_classes),),)
        else:
            extra = ((n_classes,),)
        new_axis = list(range(n_batch_axes, n_batch_axes + len(extra))) or None
        results.append(da.map_blocks(
            _pick_output, tuples, index, False, n_batch_axes,
            chunks=tuple(batch_chunks) + extra, new_axis=new_axis, dtype=dtype,
            meta=np.empty((0,) * (n_batch_axes + len(extra)), dtype=dtype),
        ))
    return tuple(results) if len(results) > 1 else results[0]


# ---------------------------------------------------------------------------
# The public functions: the in-memory signatures without the out arguments.


def softmax(z, *, num_threads=None):
    return _call("softmax", z, num_threads=num_threads)


def log_softmax(z, *, num_threads=None):
    return _call("log_softmax", z, num_threads=num_threads)


def loss(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
         reduction="none", num_threads=None):
    return _call("loss", z, y, sample_weight=sample_weight, class_weight=class_weight,
                 label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                 num_threads=num_threads)


def gradient(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
             reduction="none", num_threads=None):
    return _call("gradient", z, y, sample_weight=sample_weight, class_weight=class_weight,
                 label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                 num_threads=num_threads)


def loss_gradient(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
                  reduction="none", num_threads=None):
    return _call("loss_gradient", z, y, sample_weight=sample_weight, class_weight=class_weight,
                 label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                 num_threads=num_threads)


def hessian(z, y=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
            reduction="none", layout="packed_upper", num_threads=None):
    return _call("hessian", z, y, sample_weight=sample_weight, class_weight=class_weight,
                 label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                 layout=layout, num_threads=num_threads)


def loss_gradient_hessian(z, y, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
                          ignore_index=None, reduction="none", layout="packed_upper", num_threads=None):
    return _call("loss_gradient_hessian", z, y, sample_weight=sample_weight, class_weight=class_weight,
                 label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                 layout=layout, num_threads=num_threads)


def hessian_vector_product(z, v, y=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
                           ignore_index=None, reduction="none", num_threads=None):
    return _call("hessian_vector_product", z, y, v, sample_weight=sample_weight, class_weight=class_weight,
                 label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                 num_threads=num_threads)


def hessian_diagonal(z, y=None, *, sample_weight=None, class_weight=None, label_smoothing=0.0,
                     ignore_index=None, reduction="none", num_threads=None):
    return _call("hessian_diagonal", z, y, sample_weight=sample_weight, class_weight=class_weight,
                 label_smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction,
                 num_threads=num_threads)


_LAZY_NOTE = """

    Dask version: z and the other arrays may be Dask or NumPy arrays; the result is lazy
    (dask.array.Array). There are no ``out`` arguments (Dask arrays are immutable). Bad label
    values raise at compute time. See the ``softmax_kernels.dask`` module docstring."""

for _name in PUBLIC_NAMES:
    globals()[_name].__doc__ = (getattr(_sk, _name).__doc__ or "").split("\n    out :")[0] + _LAZY_NOTE
del _name
