"""Helpers shared by the test modules: the registry's operations grouped as the tests need
them, calling an operation, every output of one problem, memory orders, the comparisons
(bitwise, within units of roundoff, within a tolerance), the accuracy-contract check, a fresh
interpreter, the examples as modules and the optional integrations' import rules."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest

import softmax_kernels as sk
from softmax_kernels._layout import LAYOUTS
from softmax_kernels._operations import (LAYOUT_DEFAULT, NO_TARGETS, OPERATIONS, OUTPUT_KINDS, TARGETS_OPTIONAL,
                                         TARGETS_REQUIRED)

try:
    import exact
except ImportError:  # no mpmath: the modules that check the contract skip before they use it
    exact = None

FLOATS = (np.float32, np.float64)
IGNORE_INDEX = -100  # torch's default ignore_index


def dtype_id(dtype) -> str:
    """A dtype's name, for test ids."""
    return np.dtype(dtype).name


# --- the registry, grouped ----------------------------------------------------------------

# The groups hold the per-row operations, whose outputs have a value per row: the tests of
# per-row properties (edge values, memory orders, threads, fuzzing) loop over them. An
# operation that sums across rows (hessian_sum) is tested in a file of its own.
ROW_OPERATIONS = {name: op for name, op in OPERATIONS.items() if op.per_row}
SUMMED_OPERATIONS = tuple(name for name, op in OPERATIONS.items() if not op.per_row)
NO_TARGET_OPERATIONS = tuple(name for name, op in ROW_OPERATIONS.items() if op.targets == NO_TARGETS)
TARGET_REQUIRED_OPERATIONS = tuple(name for name, op in ROW_OPERATIONS.items() if op.targets == TARGETS_REQUIRED)
TARGET_OPTIONAL_OPERATIONS = tuple(name for name, op in ROW_OPERATIONS.items() if op.targets == TARGETS_OPTIONAL)
TARGET_OPERATIONS = tuple(name for name, op in ROW_OPERATIONS.items() if op.takes_target_options)
LAYOUT_OPERATIONS = tuple(name for name, op in ROW_OPERATIONS.items() if op.takes_layout)

# (operation, out argument) wherever that out may be z itself.
IN_PLACE_OUTS = tuple((name, out) for name, op in ROW_OPERATIONS.items()
                      for kind, out in zip(op.outputs, op.out_arguments) if OUTPUT_KINDS[kind].may_be_z)

# Every keyword some operation takes: an option one operation lacks is dropped for it,
# anything else (a misspelt option) reaches the call and fails it.
_KEYWORDS = {name for op in OPERATIONS.values() for name, _ in op.keyword_parameters()}


def options_for(name: str, options: dict) -> dict:
    """``options`` without the keywords of other operations that ``name`` does not take."""
    taken = {keyword for keyword, _ in OPERATIONS[name].keyword_parameters()}
    return {key: value for key, value in options.items() if key in taken or key not in _KEYWORDS}


def as_tuple(result) -> tuple:
    """A function's result as a tuple of its outputs (loss_gradient and friends return tuples)."""
    return result if isinstance(result, tuple) else (result,)


def call_operation(module, name: str, z, y=None, v=None, **options) -> tuple:
    """``module.<name>`` called with the positional arguments it takes (z, [v], [y]); its outputs as a tuple."""
    operation = OPERATIONS[name]
    args = [z]
    if operation.takes_v:
        args.append(v)
    if operation.targets != NO_TARGETS:
        args.append(y)
    return as_tuple(getattr(module, name)(*args, **options))


class Output(NamedTuple):
    """Which output of which call: the operation, the output kind and the Hessian layout (if any)."""

    operation: str
    kind: str
    layout: str | None = None

    def __str__(self):
        return "/".join(part for part in self if part)


def every_output(module, z, y=None, v=None, *, operations=None, num_threads=None, **options) -> dict:
    """Every output of every per-row operation (or of ``operations``) for one problem, in every layout.

    With y=None the operations that require targets are left out. Each operation gets the
    options it takes (softmax none of the target options); v defaults to a fixed ramp.
    """
    if v is None:
        z_arr = np.asarray(z)
        v = np.linspace(-1.0, 1.0, z_arr.size).reshape(z_arr.shape)
    outputs = {}
    for name in ROW_OPERATIONS if operations is None else operations:
        operation = OPERATIONS[name]
        if y is None and operation.targets == TARGETS_REQUIRED:
            continue
        for layout in LAYOUTS if operation.takes_layout else (None,):
            kwargs = dict(options, num_threads=num_threads, **({"layout": layout} if layout else {}))
            results = call_operation(module, name, z, y, v, **options_for(name, kwargs))
            outputs.update({Output(name, kind, layout): value for kind, value in zip(operation.outputs, results)})
    return outputs


# --- targets and options of one problem -----------------------------------------------------

TARGET_VARIANTS = ("labels", "labels-options", "soft", "no-y")


def target_variant(name: str, batch: tuple, n_classes: int, seed: int = 0) -> tuple:
    """(y, options) of one of TARGET_VARIANTS: labels alone, labels with every option, soft
    targets with every option that applies, or y=None with sample_weight."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=batch)
    soft = rng.dirichlet(np.ones(n_classes), size=batch)
    cw = rng.uniform(0.5, 2.0, size=n_classes)
    sw = rng.uniform(0.5, 2.0, size=batch)
    return {
        "labels": (labels, {}),
        "labels-options": (labels, dict(class_weight=cw, label_smoothing=0.2, sample_weight=sw,
                                        ignore_index=IGNORE_INDEX)),
        "soft": (soft, dict(class_weight=cw, label_smoothing=0.1, sample_weight=sw)),
        "no-y": (None, dict(sample_weight=sw)),
    }[name]


# --- memory orders --------------------------------------------------------------------------


def with_memory_order(arr, order: str) -> np.ndarray:
    """A new array (or a view of one) holding ``arr``'s values in the memory order named:

    "C", "F" (Fortran), "negative" (negative strides on every axis), "sliced" (every other
    element of a larger buffer along every axis, one element in), "sliced_classes" (the same
    along the class axis only), "classes_outermost" (the class axis has the largest stride).
    """
    arr = np.array(arr)
    if arr.ndim == 0 or order == "C":
        return arr
    if order == "F":
        return np.asfortranarray(arr)
    if order == "negative":
        reverse = (slice(None, None, -1),) * arr.ndim
        return np.ascontiguousarray(arr[reverse])[reverse]
    if order == "sliced":
        big = np.zeros(tuple(2 * n + 1 for n in arr.shape), dtype=arr.dtype)
        every_other = (slice(1, None, 2),) * arr.ndim
        big[every_other] = arr
        return big[every_other]
    if order == "sliced_classes":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), dtype=arr.dtype)
        big[..., 1::2] = arr
        return big[..., 1::2]
    if order == "classes_outermost":
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(arr, -1, 0)), 0, -1)
    raise ValueError(f"unknown memory order {order!r}")


# --- comparisons ----------------------------------------------------------------------------


def assert_bitwise_equal(got, want, what=""):
    """Every output of ``got`` has the dtype, shape and bytes of the same output of ``want``."""
    for g, w in zip(as_tuple(got), as_tuple(want), strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, f"{what}: {g.dtype}{g.shape} != {w.dtype}{w.shape}"
        assert g.tobytes() == w.tobytes(), f"{what}: not bitwise equal"


def assert_close_ulps(actual, desired, dtype, ulps, *, scale=None, what="values"):
    """Same shape, dtype, NaN pattern and infinities; elsewhere
    |actual - desired| <= ulps u (|desired| + scale) + tiny, with u and tiny of ``dtype``.

    ``scale`` (broadcast to desired's shape; NaN and inf count as 0) is the size of the terms
    each value is made of; by default the largest finite |desired|.
    """
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    assert actual.dtype == desired.dtype, f"{what}: dtype {actual.dtype} != {desired.dtype}"
    nan_a, nan_d = np.isnan(actual), np.isnan(desired)
    assert np.array_equal(nan_a, nan_d), (
        f"{what}: NaN pattern differs at {np.argwhere(nan_a != nan_d)[:5].tolist()} "
        f"(got {actual[nan_a != nan_d][:5]}, want {desired[nan_a != nan_d][:5]})")
    inf = np.isinf(desired) | np.isinf(actual)
    assert np.array_equal(actual[inf], desired[inf]), (
        f"{what}: infinities differ: got {actual[inf][:5]}, want {desired[inf][:5]}")
    finite = np.isfinite(desired)
    if not finite.any():
        return
    if scale is None:
        scale = np.float64(np.max(np.abs(desired[finite])))
    else:
        scale = np.broadcast_to(np.nan_to_num(np.asarray(scale, dtype=np.float64), nan=0.0, posinf=0.0),
                                desired.shape)[finite]
    u = np.finfo(dtype).eps / 2
    with np.errstate(over="ignore"):
        tol = ulps * u * (np.abs(desired[finite].astype(np.float64)) + scale) + np.finfo(dtype).tiny
        err = np.abs(actual[finite].astype(np.float64) - desired[finite].astype(np.float64))
    if not np.all(err <= tol):
        worst = int(np.argmax(err / tol))
        raise AssertionError(
            f"{what}: got {actual[finite][worst]!r}, want {desired[finite][worst]!r}, error {err[worst]:.3g} > "
            f"tolerance {tol[worst]:.3g} ({ulps} ulps; at flat finite index {worst}, "
            f"{np.sum(err > tol)} elements over)")


def assert_allclose_typed(actual, desired, dtype, *, rtol, atol, what=""):
    """An ndarray of ``dtype`` and of desired's shape, within rtol |desired| + atol elementwise."""
    assert isinstance(actual, np.ndarray), f"{what}: a {type(actual).__name__}, not an ndarray"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == np.shape(desired), f"{what}: shape {actual.shape}, expected {np.shape(desired)}"
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


# --- the accuracy contract (needs mpmath) ---------------------------------------------------

HESSIAN_MAX_K = 64  # the exact K x K Hessian costs K**2 mpmath evaluations per row
_EXACT_CACHE: dict = {}


def f32(values) -> np.ndarray:
    """float64 array of float32-representable values (one exact result serves both dtypes)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _key(x):
    """Equal for equal values, so float32 inputs that float64 holds exactly share one exact result."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "f":
            x = x.astype(np.float64)
        return (x.dtype.str, x.shape, x.tobytes())
    return repr(x)


def exact_outputs(z, y, v, outputs, options) -> dict:
    """exact.evaluate, cached per input."""
    key = (_key(z), _key(y), _key(v), tuple(outputs), tuple(sorted((k, _key(x)) for k, x in options.items())))
    if key not in _EXACT_CACHE:
        _EXACT_CACHE[key] = exact.evaluate(z, y, v, outputs=outputs, **options)
    return _EXACT_CACHE[key]


def cast_inputs(x, dtype):
    """A real input converted to ``dtype``; labels (integers) and None as they are."""
    if x is None:
        return None
    arr = np.asarray(x)
    return arr if arr.dtype.kind in "iu" else arr.astype(dtype)


def default_outputs(y, v, n_classes) -> tuple:
    outputs = ["softmax", "log_softmax"] if y is None else ["loss", "gradient"]
    if n_classes <= HESSIAN_MAX_K:
        outputs.append("hessian")
    outputs.append("hessian_diagonal")
    if v is not None:
        outputs.append("hessian_vector_product")
    return tuple(outputs)


def check_contract(backend, dtype, z, y=None, v=None, *, outputs=None, factor=4, **options):
    """Compute every requested output in ``dtype`` through every operation and layout that returns
    it (Hessians unpacked to full) and assert the contract against the exact values."""
    z = np.asarray(z, dtype=dtype)
    y = cast_inputs(y, dtype)
    v = cast_inputs(v, dtype)
    options = {k: cast_inputs(x, dtype) if k in ("sample_weight", "class_weight") else x for k, x in options.items()}
    n_classes = z.shape[-1]
    if outputs is None:
        outputs = default_outputs(y, v, n_classes)
    reference = exact_outputs(z, y, v, outputs, options)
    operations = [name for name, op in OPERATIONS.items() if set(op.outputs) & set(outputs)
                  and ("hessian" not in op.outputs or n_classes <= HESSIAN_MAX_K)]  # a K = 1e5 Hessian: no
    computed = every_output(backend, z, y, v, operations=operations, **options)
    backend_name = "compiled" if backend is sk else "reference"
    for key, value in computed.items():
        if key.kind not in outputs or (key.kind != "hessian" and key.layout not in (None, LAYOUT_DEFAULT)):
            continue  # the loss and gradient of loss_gradient_hessian are checked in its default layout
        assert value.dtype == dtype, f"{key} returned {value.dtype}"
        if key.kind == "hessian" and key.layout != "full":
            value = sk.unpack(value, key.layout)
        exact.assert_within_contract(value, reference[key.kind], dtype=dtype, factor=factor,
                                     what=f"{backend_name} {np.dtype(dtype).name} {key.kind} via {key}")
    return reference


# --- a fresh interpreter --------------------------------------------------------------------


def run_python(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python *args`` in a fresh interpreter, with this one's environment changed by ``env``
    (a None value removes the variable); its output captured as text."""
    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run([sys.executable, *args], env=environment, capture_output=True, text=True,
                          timeout=timeout)


# --- the examples and the optional integrations ----------------------------------------------

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@contextlib.contextmanager
def example_module(name: str):
    """examples/<name>.py imported as a module by its path, and forgotten afterwards."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def assert_core_does_not_import(library: str) -> None:
    """``import softmax_kernels`` in a fresh interpreter leaves ``library`` unimported."""
    result = run_python("-c", f"import sys, softmax_kernels; assert {library!r} not in sys.modules")
    assert result.returncode == 0, result.stderr


def assert_missing_library_names_its_extra(monkeypatch, library: str) -> None:
    """Without ``library``, importing softmax_kernels.<library> raises an ImportError that names
    the extra to install."""
    monkeypatch.setitem(sys.modules, library, None)  # makes "import <library>" fail
    monkeypatch.delitem(sys.modules, f"softmax_kernels.{library}", raising=False)
    with pytest.raises(ImportError, match=rf'pip install "softmax_kernels\[{library}\]"'):
        importlib.import_module(f"softmax_kernels.{library}")
