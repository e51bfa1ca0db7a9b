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

from ._api import function_with_signature
from ._docstrings import docstring
from ._operations import OPERATIONS, OUTPUT_KINDS, PUBLIC_NAMES, output_shape
from ._reduction import mean_denominator_terms, reduced_loss
from ._validate import (
    TARGET_LABELS,
    TARGET_SOFT,
    check_logits,
    check_options,
    check_targets_type,
    computation_dtype,
    describe_inputs,
)

__all__ = list(PUBLIC_NAMES)

_BATCH_LETTERS = string.ascii_lowercase[:20]
_CLASS_LETTER = "z"


# ---------------------------------------------------------------------------
# Per-block functions (module level, so that they pickle to worker processes).


def _run_block(z, y, v, sample_weight, class_weight, groups, denominator, *, operation, options):
    """One kernel call on one block; returns the tuple of its outputs.

    ``denominator`` is the global "mean" denominator (a 0-d array) or None; with it the
    block's row weights become w / D and the block is reduced with "sum", as the
    in-memory kernels do.
    """
    kwargs = dict(options)
    if denominator is not None:
        dtype = computation_dtype(np.asarray(z).dtype, "z")
        weight = np.ones(z.shape[:-1]) if sample_weight is None else np.asarray(sample_weight, dtype=dtype)
        with np.errstate(divide="ignore", invalid="ignore"):  # D = 0: the NaN/inf of the in-memory call
            sample_weight = weight.astype(np.float64) / np.float64(denominator)
    for name, value in (("y", y), ("v", v), ("sample_weight", sample_weight), ("class_weight", class_weight),
                        ("groups", groups)):
        if value is not None:
            kwargs[name] = value
    result = getattr(_sk, operation)(z, **kwargs)
    return result if isinstance(result, tuple) else (result,)


def _pick_output(block_outputs, index, summed, n_batch_axes):
    """Output ``index`` of a block; a block's partial sum (a reduced loss, a summed Hessian)
    becomes a float64 block with a batch axis of length 1 per batch axis."""
    value = block_outputs[index]
    if summed:
        value = np.asarray(value, dtype=np.float64)
        return value.reshape((1,) * n_batch_axes + value.shape)
    return value


def _denominator_block(y, sample_weight, class_weight, *, computation, ignore_index, n_batch_axes):
    """This block's part of the "mean" denominator, as a (1, ..., 1) float64 block."""
    batch_shape = np.shape(y if y is not None else sample_weight)
    if sample_weight is not None:  # rounded to the computation dtype, as the in-memory call does
        sample_weight = np.asarray(sample_weight, dtype=computation)
    if class_weight is not None:
        class_weight = np.asarray(class_weight, dtype=computation)
    terms = mean_denominator_terms(batch_shape, sample_weight, class_weight, y, ignore_index)
    return np.asarray(np.sum(terms, dtype=np.float64)).reshape((1,) * n_batch_axes)


def _mean_of(total, denominator):
    """The "mean" loss from the sum of the blocks' partials and the global denominator."""
    return np.asarray(reduced_loss(total.item(), denominator.item(), "mean"), dtype=np.float64)


# ---------------------------------------------------------------------------
# Graph construction.


def _as_dask(x):
    return x if x is None or isinstance(x, da.Array) else da.asarray(np.asarray(x))


def _one_class_chunk(x):
    """Rechunk the last (class) axis to a single chunk."""
    return x if x.numblocks[-1] == 1 else x.rechunk({x.ndim - 1: -1})


def _mean_denominator(target_kind, y, sample_weight, class_weight, batch, dtype, ignore_index, n_rows):
    """The global "mean" denominator D as a lazy 0-d float64 array."""
    labels = target_kind == TARGET_LABELS
    if not labels and sample_weight is None:
        return da.asarray(np.float64(n_rows))
    weighted_classes = labels and class_weight is not None
    partials = da.blockwise(
        _denominator_block, batch,
        y if labels else None, batch if labels else None,
        sample_weight, batch if sample_weight is not None else None,
        class_weight if weighted_classes else None, _CLASS_LETTER if weighted_classes else None,
        dtype=np.float64, concatenate=True, adjust_chunks={letter: 1 for letter in batch},
        computation=dtype, ignore_index=ignore_index, n_batch_axes=len(batch),
    )
    return partials.sum()


def _call(operation_name, arguments):
    operation = OPERATIONS[operation_name]
    z = _as_dask(arguments["z"])
    check_logits(z)
    if any(isinstance(n, float) for n in z.shape):
        raise ValueError("z: unknown chunk sizes along the batch axes; call z.compute_chunk_sizes() first")
    options = check_options(operation, dict(arguments, z=z))
    check_targets_type(arguments.get("y"))
    arrays = {name: _as_dask(arguments.get(name)) for name in ("y", "v", "sample_weight", "class_weight", "groups")}
    arrays["z"] = z
    described = describe_inputs(operation, arrays, options)
    reduction = options.get("reduction", "none")
    if arrays.get("groups") is not None and options["n_groups"] is None:
        raise ValueError("n_groups: required with groups on Dask (their largest value is not known before the "
                         "data is read), got None")
    block_options = {name: options[name] for name in ("label_smoothing", "ignore_index", "layout", "num_threads",
                                                      "n_groups") if options.get(name) is not None}
    if operation.takes_target_options:
        block_options["reduction"] = "none" if reduction == "none" else "sum"

    n_batch_axes = z.ndim - 1
    batch = _BATCH_LETTERS[:n_batch_axes]
    full = batch + _CLASS_LETTER
    y, v, groups = arrays["y"], arrays["v"], arrays["groups"]
    sample_weight, class_weight = arrays["sample_weight"], arrays["class_weight"]
    z = _one_class_chunk(z)
    if v is not None:
        v = _one_class_chunk(v)
    if described.target_kind == TARGET_SOFT:
        y = _one_class_chunk(y)
    if class_weight is not None:
        class_weight = _one_class_chunk(class_weight)

    denominator = None
    if reduction == "mean":
        n_rows = int(np.prod(z.shape[:-1], dtype=np.int64))
        denominator = _mean_denominator(described.target_kind, y, sample_weight, class_weight, batch,
                                        described.dtype, options["ignore_index"], n_rows)

    def pair(x, index):
        return (x, index if x is not None else None)

    tuples = da.blockwise(
        _run_block, batch,
        *pair(z, full), *pair(y, full if described.target_kind == TARGET_SOFT else batch), *pair(v, full),
        *pair(sample_weight, batch), *pair(class_weight, _CLASS_LETTER), *pair(groups, batch), *pair(denominator, ""),
        concatenate=True, meta=np.empty((0,) * n_batch_axes, dtype=object),
        operation=operation_name, options=block_options,
    )
    results = [_output(tuples, index, kind, described, reduction, denominator, options)
               for index, kind in enumerate(operation.outputs)]
    return tuple(results) if len(results) > 1 else results[0]


def _output(tuples, index, kind, described, reduction, denominator, options):
    """Output ``index`` (of ``kind``) of every block, as one lazy array."""
    n_batch_axes = len(described.batch_shape)
    batch_chunks = tuples.chunks
    shape = output_shape(kind, described.batch_shape, described.n_classes, reduction, options.get("layout"),
                         options.get("n_groups"))
    if OUTPUT_KINDS[kind].shape == "summed_hessian" or (kind == "loss" and reduction != "none"):
        # each block's partial sum, added up by Dask's tree reduction in float64
        partials = da.map_blocks(
            _pick_output, tuples, index, True, n_batch_axes,
            chunks=tuple((1,) * len(c) for c in batch_chunks) + tuple((n,) for n in shape),
            new_axis=list(range(n_batch_axes, n_batch_axes + len(shape))) or None, dtype=np.float64,
            meta=np.empty((0,) * (n_batch_axes + len(shape)), dtype=np.float64),
        )
        total = partials.sum(axis=tuple(range(n_batch_axes)))
        if kind == "loss" and reduction == "mean":
            total = da.map_blocks(_mean_of, total, denominator, dtype=np.float64)
        return total.astype(described.dtype)
    extra = tuple((n,) for n in shape[n_batch_axes:])
    new_axis = list(range(n_batch_axes, n_batch_axes + len(extra))) or None
    return da.map_blocks(
        _pick_output, tuples, index, False, n_batch_axes,
        chunks=tuple(batch_chunks) + extra, new_axis=new_axis, dtype=described.dtype,
        meta=np.empty((0,) * (n_batch_axes + len(extra)), dtype=described.dtype),
    )


# ---------------------------------------------------------------------------
# The public functions: the in-memory signatures without the out arguments.

_LAZY_NOTE = """Dask version: z and the other arrays may be Dask or NumPy arrays; the result is lazy
(dask.array.Array). There are no ``out`` arguments (Dask arrays are immutable). Bad label
values raise at compute time. See the ``softmax_kernels.dask`` module docstring."""


def _public_function(name):
    def call(arguments):
        return _call(name, arguments)

    function = function_with_signature(OPERATIONS[name], call, __name__, with_out=False)
    function.__doc__ = docstring(OPERATIONS[name], with_out=False, note=_LAZY_NOTE)
    return function


globals().update({_name: _public_function(_name) for _name in PUBLIC_NAMES})
