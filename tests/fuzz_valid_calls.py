"""Random valid calls of the public API, as data: hypothesis draws a small *spec* (a dict of
plain values: operation, dtypes, shape, memory orders, options, ``out`` modes and a seed);
:func:`build_valid_call` turns it deterministically into arrays, so a spec is its own
reproducer: ``check_valid_call(build_valid_call(spec))``.

:func:`check_valid_call`: the compiled API equals the reference within 64 units of roundoff
times (|value| + the row's scale), with equal NaN patterns and infinities; the results have
the documented shapes and dtypes, ``out`` is returned as passed, inputs are not modified,
gradient and Hessian rows sum to ~0, full Hessians are exactly symmetric, softmax rows sum
to ~1. Used by tests/test_fuzz.py and tools/fuzz.py.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from hypothesis import strategies as st

import softmax_kernels as sk
from helpers import (NO_TARGET_OPERATIONS, TARGET_OPTIONAL_OPERATIONS, TARGET_REQUIRED_OPERATIONS, assert_close_ulps,
                     with_memory_order)
from softmax_kernels import reference
from softmax_kernels._layout import LAYOUTS
from softmax_kernels._operations import LAYOUT_DEFAULT, OPERATIONS, OUTPUT_KINDS
from softmax_kernels._operations import output_shape as registry_output_shape
from softmax_kernels._reduction import REDUCTIONS

COMPILED = sk.show_config()["backend"] == "compiled"

# --------------------------------------------------------------------------- the API, from the registry

# Grouped by target rule; the order fixes which operation a drawn index picks.
FUNCTIONS = NO_TARGET_OPERATIONS + TARGET_REQUIRED_OPERATIONS + TARGET_OPTIONAL_OPERATIONS

Z_DTYPES = ["float64", "float32", "float64", "float32", "float16", "int8", "int32", "int64", "uint8", "bool"]
LABEL_DTYPES = ["int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "intp"]
REAL_DTYPES = ["float64", "float32", "float16", "int64", "uint8"]
ORDERS = ["C", "C", "F", "negative", "sliced"]
SENTINEL = 7.25
ROUNDOFF_UNITS = 64


def computation_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def output_shape(kind, batch, n_classes, spec) -> tuple:
    """The shape of an output of ``kind`` for the options of ``spec``."""
    return registry_output_shape(kind, batch, n_classes, spec.get("reduction", "none"),
                                 spec.get("layout", LAYOUT_DEFAULT))


# --------------------------------------------------------------------------- strategies

@st.composite
def shapes(draw, function):
    """(batch shape, K): N = 0, K = 1, big K now and then, 0-3 batch axes, a multi-threaded size rarely."""
    kind = draw(st.sampled_from(["small"] * 12 + ["big_k", "many_rows", "empty"]))
    hessian_like = "hessian" in OPERATIONS[function].outputs
    if kind == "big_k":
        n_classes = draw(st.integers(100, 300 if hessian_like else 2000))
        return tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=1))), n_classes
    if kind == "many_rows":  # over the 32 768-element threading threshold
        return (draw(st.integers(3000, 6000)),), draw(st.sampled_from([7, 10, 16]))
    n_classes = draw(st.sampled_from([1, 1, 2, 3, 4, 5, 8, 10, 16, 17, 33]))
    batch = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    if kind == "empty":
        batch = batch + (0,) if batch else (0,)
    return batch, n_classes


@st.composite
def valid_specs(draw):
    function = draw(st.sampled_from(FUNCTIONS))
    batch, n_classes = draw(shapes(function))
    spec = {
        "function": function,
        "batch": batch,
        "K": n_classes,
        "seed": draw(st.integers(0, 2**32 - 1)),
        "z_dtype": draw(st.sampled_from(Z_DTYPES)),
        "z_order": draw(st.sampled_from(ORDERS)),
        "z_scale": draw(st.sampled_from([1.0, 4.0, 30.0, 1e3, 1e30, "ties"])),
        "z_special": draw(st.sampled_from([0.0, 0.0, 0.05, 0.3])),
        "num_threads": draw(st.sampled_from([None, None, 1, 2, 3])),
    }
    if function in NO_TARGET_OPERATIONS:
        target = None
    elif function in TARGET_REQUIRED_OPERATIONS:
        target = draw(st.sampled_from(["labels", "labels", "soft"] + (["pyint"] if not batch else [])))
    else:
        target = draw(st.sampled_from(["labels", "soft", None]))
    spec["target"] = target
    if function not in NO_TARGET_OPERATIONS:
        spec["reduction"] = draw(st.sampled_from(REDUCTIONS))
        spec["sample_weight"] = draw(st.sampled_from([None, None, "positive", "with_zeros", "int"]))
        spec["w_order"] = draw(st.sampled_from(ORDERS))
    if target is not None:
        spec["class_weight"] = draw(st.sampled_from([None, None, "positive", "with_zeros", "int"]))
        spec["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0, 1e-8]))
    if target in ("labels", "pyint"):
        spec["label_dtype"] = draw(st.sampled_from(LABEL_DTYPES))
        spec["ignore_index"] = draw(st.sampled_from([None, None, "minus_100", "in_range", "unsigned_max"]))
        spec["ignore_fraction"] = draw(st.sampled_from([0.0, 0.3, 1.0]))
        spec["y_order"] = draw(st.sampled_from(ORDERS))
    if target == "soft":
        spec["soft_dtype"] = draw(st.sampled_from(REAL_DTYPES))
        spec["soft_values"] = draw(st.sampled_from(["unit", "unit", "signed", "onehot"]))
        spec["y_order"] = draw(st.sampled_from(ORDERS))
    if OPERATIONS[function].takes_v:
        spec["v_dtype"] = draw(st.sampled_from(REAL_DTYPES))
        spec["v_order"] = draw(st.sampled_from(ORDERS))
        spec["v_special"] = draw(st.sampled_from([0.0, 0.0, 0.1]))
    if OPERATIONS[function].takes_layout:
        spec["layout"] = draw(st.sampled_from(LAYOUTS))
    spec["outs"] = tuple(
        draw(st.sampled_from(["none", "fresh", "in_place"] if OUTPUT_KINDS[kind].may_be_z else ["none", "fresh"]))
        for kind in OPERATIONS[function].outputs
    )
    return spec


# --------------------------------------------------------------------------- building calls

@dataclasses.dataclass
class Call:
    function: str
    args: tuple
    kwargs: dict
    spec: dict
    target_kind: str | None = None  # "labels", "soft" or None
    # filled for valid calls: per-row |target weights| (N, K) in float64 and the "mean" denominator
    abs_targets: np.ndarray | None = None
    denominator: float = 1.0
    in_place_z: bool = False

    def __repr__(self):  # the spec rebuilds the call; arrays would flood the report
        return f"Call({self.function}, spec={self.spec!r})"


def _logits(spec, rng) -> np.ndarray:
    shape = spec["batch"] + (spec["K"],)
    dtype = np.dtype(spec["z_dtype"])
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        low = 0 if dtype.kind == "u" else -50
        return rng.integers(low, 60, size=shape).astype(dtype)
    scale = spec["z_scale"]
    if scale == "ties":
        z = rng.integers(-2, 3, size=shape).astype(np.float64)
    else:
        z = rng.standard_normal(shape) * min(scale, 1e4 if dtype == np.float16 else scale)
    if spec["z_special"]:
        huge = float(np.finfo(dtype).max)
        specials = np.array([-np.inf, -np.inf, np.nan, np.inf, 1e30, -1e30, huge, -huge])
        if dtype == np.float16:
            specials = np.where(np.abs(specials) == 1e30, np.sign(specials) * 6e4, specials)
        mask = rng.random(shape) < spec["z_special"]
        z[mask] = rng.choice(specials, size=int(mask.sum()))
    with np.errstate(over="ignore"):
        return z.astype(dtype)


def _real(rng, shape, dtype, kind="unit") -> np.ndarray:
    dtype = np.dtype(dtype)
    if kind == "with_zeros":
        values = np.array(rng.random(shape) + 0.1)
        values[rng.random(shape) < 0.4] = 0.0
    elif kind == "int":
        return rng.integers(0, 4, size=shape).astype(np.int64)
    elif kind == "signed":
        values = rng.standard_normal(shape)
    else:
        values = rng.random(shape) + 0.1
    if dtype.kind in "iu":
        return np.round(np.abs(values) * 3).astype(dtype)
    return values.astype(dtype)


def _labels(spec, rng):
    batch, n_classes = spec["batch"], spec["K"]
    dtype = np.dtype(spec["label_dtype"])
    high = min(n_classes, int(np.iinfo(dtype).max) + 1)
    labels = rng.integers(0, high, size=batch).astype(dtype)
    ignore = spec["ignore_index"]
    ignore_index = None
    if ignore == "minus_100":
        ignore_index = -100
    elif ignore == "in_range":
        ignore_index = int(rng.integers(0, high))
    elif ignore == "unsigned_max":
        ignore_index = int(np.iinfo(dtype).max) if dtype.kind == "u" else int(np.iinfo(dtype).min)
    if ignore_index is not None and spec["ignore_fraction"] and labels.size:
        representable = np.iinfo(dtype).min <= ignore_index <= np.iinfo(dtype).max
        if representable:
            mask = rng.random(batch) < spec["ignore_fraction"]
            labels[mask] = ignore_index
    return labels, ignore_index


def _abs_target_weights(call_spec, z_shape, labels, soft, ignore_index, sample_weight, class_weight, eps):
    """|a| per row as float64 (N, K), and the "mean" denominator D (README, reduction)."""
    n_classes = z_shape[-1]
    n_rows = int(np.prod(z_shape[:-1], dtype=np.int64))
    omega = np.ones(n_rows) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    cw = np.ones(n_classes) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    if labels is not None:
        flat = np.asarray(labels).reshape(-1)
        kept = np.ones(n_rows, bool) if ignore_index is None else flat != ignore_index
        onehot = np.zeros((n_rows, n_classes))
        onehot[np.flatnonzero(kept), flat[kept].astype(np.int64)] = 1.0
        a = omega[:, None] * cw * ((1 - eps) * onehot + eps / n_classes)
        a[~kept] = 0.0
        denominator = float(np.sum(omega[kept] * cw[flat[kept].astype(np.int64)]))
    elif soft is not None:
        t = np.asarray(soft, dtype=np.float64).reshape(n_rows, n_classes)
        a = omega[:, None] * cw * ((1 - eps) * t + eps / n_classes)
        denominator = float(np.sum(omega))
    else:
        a = np.repeat(omega[:, None], n_classes, axis=1) / n_classes  # c = omega per row
        denominator = float(np.sum(omega))
    return np.abs(a), denominator


def build_valid_call(spec: dict) -> Call:
    rng = np.random.default_rng(spec["seed"])
    function, batch, n_classes = spec["function"], spec["batch"], spec["K"]
    z_values = _logits(spec, rng)
    dtype = computation_dtype(z_values.dtype)
    z = with_memory_order(z_values, spec["z_order"])
    kwargs: dict = {}
    if spec["num_threads"] is not None:
        kwargs["num_threads"] = spec["num_threads"]
    target, y, labels, soft, ignore_index = spec["target"], None, None, None, None
    if target in ("labels", "pyint"):
        labels, ignore_index = _labels(spec, rng)
        y = int(labels) if target == "pyint" else with_memory_order(labels, spec["y_order"])
        if ignore_index is not None:
            kwargs["ignore_index"] = ignore_index
    elif target == "soft":
        kind = spec["soft_values"]
        if kind == "onehot":
            soft = np.eye(n_classes)[rng.integers(0, n_classes, size=batch)].astype(spec["soft_dtype"])
        else:
            soft = _real(rng, batch + (n_classes,), spec["soft_dtype"], kind)
        y = with_memory_order(soft, spec["y_order"])
    sample_weight = class_weight = None
    if function not in NO_TARGET_OPERATIONS:
        kwargs["reduction"] = spec["reduction"]
        if spec["sample_weight"]:
            sample_weight = _real(rng, batch, "float64" if spec["sample_weight"] != "int" else "int64",
                                  spec["sample_weight"]).astype(dtype if spec["sample_weight"] != "int" else np.int64)
            kwargs["sample_weight"] = with_memory_order(sample_weight, spec["w_order"])
    if target is not None:
        if spec["class_weight"]:
            class_weight = _real(rng, (n_classes,), "float64", spec["class_weight"])
            kwargs["class_weight"] = with_memory_order(class_weight, spec["w_order"])
        if spec["label_smoothing"]:
            kwargs["label_smoothing"] = spec["label_smoothing"]
    if OPERATIONS[function].takes_layout:
        kwargs["layout"] = spec["layout"]
    args: tuple = (z,)
    if OPERATIONS[function].takes_v:
        v = _real(rng, z.shape, "float64", "signed")
        v_kind = np.dtype(spec["v_dtype"])
        huge_v = min(1e30, float(np.finfo(v_kind).max) / 4) if v_kind.kind == "f" else 1e30  # stays finite
        if spec["v_special"]:
            # NaN, infinities and huge finite values: a NaN or infinity makes the row NaN (README).
            special = rng.choice([np.nan, np.inf, -np.inf, huge_v, -huge_v])
            v[rng.random(v.shape) < spec["v_special"]] = special
        with np.errstate(over="ignore", invalid="ignore"):
            v = v.astype(spec["v_dtype"]) if np.dtype(spec["v_dtype"]).kind == "f" else np.nan_to_num(
                v, nan=0, posinf=3, neginf=-3).clip(0, 50).astype(spec["v_dtype"])
        args = (z, with_memory_order(v, spec["v_order"]))
    if function not in NO_TARGET_OPERATIONS and (y is not None or function in TARGET_REQUIRED_OPERATIONS):
        args = args + (y,)
    # out arrays
    in_place_z = False
    kinds, names = OPERATIONS[function].outputs, OPERATIONS[function].out_arguments
    for kind, name, mode in zip(kinds, names, spec["outs"]):
        if mode == "none":
            continue
        if mode == "in_place" and z.dtype == dtype and z.flags.c_contiguous and z.flags.writeable and z.ndim:
            kwargs[name] = z
            in_place_z = True
            continue
        kwargs[name] = np.full(output_shape(kind, batch, n_classes, spec), SENTINEL, dtype=dtype)
    call = Call(function, args, kwargs, spec, target_kind={"pyint": "labels"}.get(target, target),
                in_place_z=in_place_z)
    if function not in NO_TARGET_OPERATIONS:
        call.abs_targets, call.denominator = _abs_target_weights(
            spec, z.shape, labels, soft, ignore_index, sample_weight, class_weight,
            kwargs.get("label_smoothing", 0.0))
    return call


def copy_call(call: Call) -> tuple[tuple, dict]:
    """Deep copies of the arguments, ``out`` arrays left out (for the reference and for snapshots)."""
    out_names = OPERATIONS[call.function].out_arguments
    args = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in call.args)
    kwargs = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
              for k, v in call.kwargs.items() if k not in out_names}
    return args, kwargs


# --------------------------------------------------------------------------- checking valid calls

def _row_view(arr: np.ndarray, n_rows: int) -> np.ndarray:
    return arr.reshape(n_rows, -1) if n_rows else arr.reshape(0, max(1, arr.size))


def _finite_rowmax(x2d: np.ndarray) -> np.ndarray:
    x = np.abs(x2d.astype(np.float64))
    x[~np.isfinite(x)] = 0.0
    return x.max(axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1))


def scales(call: Call, kind: str, desired: np.ndarray, z2d: np.ndarray, v2d) -> np.ndarray:
    """A per-element scale: the row's largest |value| plus the size of the terms it is made of."""
    n_rows = z2d.shape[0]
    if kind in ("softmax", "log_softmax"):
        return np.broadcast_to(_finite_rowmax(_row_view(desired, n_rows)), (n_rows, desired.size // max(n_rows, 1))
                               ).reshape(desired.shape) if n_rows else 0.0
    a = call.abs_targets
    denominator = abs(call.denominator) if call.kwargs.get("reduction") == "mean" and call.denominator else 1.0
    weight = a.sum(axis=1, keepdims=True) / denominator  # sum |a_k|, as in c s - a
    if kind == "loss":
        with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            finite_z = np.where(np.isfinite(z2d), z2d, np.nan)
            row_max = np.nanmax(finite_z, axis=1, keepdims=True) if z2d.shape[1] and n_rows else 0.0
            spread = np.nan_to_num(np.abs(finite_z - row_max), nan=0.0, posinf=0.0)
        with np.errstate(over="ignore"):
            terms = np.sum(np.nan_to_num(a * spread, nan=0.0, posinf=0.0), axis=1) / denominator
        terms = terms + weight[:, 0] * math.log(z2d.shape[1] + 1)
        if call.kwargs.get("reduction", "none") == "none":
            return terms.reshape(desired.shape)
        return np.float64(np.sum(terms))
    if n_rows == 0:
        return 0.0
    rowmax = _finite_rowmax(_row_view(desired, n_rows))
    row = rowmax + weight
    if kind == "hessian_vector_product":
        row = rowmax + 2 * weight * _finite_rowmax(v2d)
    return np.broadcast_to(row, (n_rows, desired.size // n_rows)).reshape(desired.shape)


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def check_invariants(call: Call, results: tuple, dtype: np.dtype, z2d: np.ndarray, outs_passed: bool = True):
    """Documented shapes/dtypes, out identity, gradient/Hessian rows sum to ~0, exact symmetry."""
    kinds, names = OPERATIONS[call.function].outputs, OPERATIONS[call.function].out_arguments
    batch, n_classes = call.spec["batch"], call.spec["K"]
    n_rows = z2d.shape[0]
    u = np.finfo(dtype).eps / 2
    assert len(results) == len(kinds)
    for kind, name, res in zip(kinds, names, results):
        assert isinstance(res, np.ndarray), f"{kind}: returned {type(res).__name__}"
        assert res.dtype == dtype, f"{kind}: dtype {res.dtype}, expected {dtype}"
        assert res.shape == output_shape(kind, batch, n_classes, call.spec), f"{kind}: shape {res.shape}"
        if outs_passed and name in call.kwargs:
            assert res is call.kwargs[name], f"{name}: the returned array is not the out array passed"
    valid_rows = np.all(np.isfinite(z2d) | (z2d == -np.inf), axis=1) & np.any(np.isfinite(z2d), axis=1)
    for kind, res in zip(kinds, results):
        if n_rows == 0:
            continue
        if kind == "softmax":
            r = res.reshape(n_rows, n_classes).astype(np.float64)
            ok = valid_rows
            assert np.all(np.abs(r[ok].sum(axis=1) - 1) <= 8 * n_classes * u + 1e-300), "softmax rows do not sum to 1"
        if kind in ("gradient", "hessian"):
            if kind == "hessian":
                full = res if call.spec.get("layout") == "full" else sk.unpack(res, call.spec["layout"])
                full = full.reshape(n_rows, n_classes, n_classes)
                if call.spec.get("layout") == "full":
                    assert np.array_equal(full, np.swapaxes(full, 1, 2), equal_nan=True), "full Hessian not symmetric"
                rows = full.reshape(n_rows * n_classes, n_classes).astype(np.float64)
                weight = np.repeat(call.abs_targets.sum(axis=1) if call.abs_targets is not None else 1.0, n_classes)
                ok = np.repeat(valid_rows, n_classes)
            else:
                rows = res.reshape(n_rows, n_classes).astype(np.float64)
                weight = call.abs_targets.sum(axis=1)
                ok = valid_rows
            if call.kwargs.get("reduction") == "mean" and call.denominator:
                weight = weight / abs(call.denominator)
            ok = ok & np.all(np.isfinite(rows), axis=1) & np.isfinite(weight)
            magnitude = np.max(np.abs(rows), axis=1, initial=0.0) + weight
            bound = 16 * n_classes * u * magnitude + 1e-300
            sums = np.abs(rows.sum(axis=1))
            assert np.all(sums[ok] <= bound[ok]), (
                f"{kind} rows do not sum to zero: worst {np.max(sums[ok] / bound[ok]):.3g} x the bound")


def check_valid_call(call: Call, implementations=None):
    """Run one valid call on every backend; compare the compiled one with the reference."""
    ref_args, ref_kwargs = copy_call(call)
    snapshot_args, snapshot_kwargs = copy_call(call)
    want = _as_tuple(getattr(reference, call.function)(*ref_args, **ref_kwargs))
    z_user = np.asarray(snapshot_args[0])
    dtype = computation_dtype(z_user.dtype)
    n_rows = int(np.prod(call.spec["batch"], dtype=np.int64))
    z2d = z_user.astype(dtype).astype(np.float64).reshape(n_rows, call.spec["K"])
    v2d = (np.asarray(snapshot_args[1]).astype(dtype).astype(np.float64).reshape(n_rows, call.spec["K"])
           if OPERATIONS[call.function].takes_v else None)
    check_invariants(call, want, dtype, z2d, outs_passed=False)
    if implementations is None:
        implementations = [sk] if COMPILED else []
    for module in implementations:
        got = _as_tuple(getattr(module, call.function)(*call.args, **call.kwargs))
        check_invariants(call, got, dtype, z2d)
        for kind, g, w in zip(OPERATIONS[call.function].outputs, got, want):
            assert_close_ulps(g, w, dtype, ROUNDOFF_UNITS, scale=scales(call, kind, w, z2d, v2d), what=kind)
        assert_inputs_unchanged(call, snapshot_args, snapshot_kwargs, allow_z=call.in_place_z)


def _same(a, b) -> bool:
    try:
        return np.array_equal(a, b, equal_nan=True)
    except TypeError:  # object and string arrays have no NaN test
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and all(x == y or (x != x and y != y) for x, y in zip(a.ravel(), b.ravel()))


def assert_inputs_unchanged(call, snapshot_args, snapshot_kwargs, allow_z=False):
    for i, (now, before) in enumerate(zip(call.args, snapshot_args)):
        if i == 0 and allow_z:
            continue
        if isinstance(before, np.ndarray):
            assert _same(now, before), f"input argument {i} was modified"
    for key, before in snapshot_kwargs.items():
        if isinstance(before, np.ndarray):
            assert _same(call.kwargs[key], before), f"input {key} was modified"
