"""Fuzzing the public API: random valid calls agree with the reference, random invalid calls fail cleanly.

Hypothesis draws a small *spec* (a dict of plain values: function, dtypes, shape,
memory orders, options, ``out`` modes and a seed); :func:`build_valid_call` and
:func:`build_invalid_call` turn it deterministically into arrays. A spec is
therefore its own reproducer: ``check_valid_call(build_valid_call(spec))``.
``tools/fuzz.py`` runs the same strategies for a given number of seconds.

Valid calls: the compiled API equals the reference within 64 units of roundoff
times (|value| + the row's scale), with equal NaN patterns and infinities; the
results have the documented shapes and dtypes, ``out`` is returned as passed,
inputs are not modified, gradient and Hessian rows sum to ~0, full Hessians
are exactly symmetric, softmax rows sum to ~1.

Invalid calls: exactly one argument is broken; every backend raises the
documented ValueError/TypeError whose message names that argument, writes
nothing into any ``out`` array and leaves the inputs as they were.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import softmax_kernels as sk
from softmax_kernels import reference

COMPILED = sk.show_config()["backend"] == "compiled"

settings.register_profile(
    "fuzz-ci",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
FUZZ_SETTINGS = settings(settings.get_profile("fuzz-ci"), max_examples=600)

# --------------------------------------------------------------------------- the API, as data

TARGET_REQUIRED = ("loss", "gradient", "loss_gradient", "loss_gradient_hessian")
TARGET_OPTIONAL = ("hessian", "hessian_vector_product", "hessian_diagonal")
NO_TARGET = ("softmax", "log_softmax")
FUNCTIONS = NO_TARGET + TARGET_REQUIRED + TARGET_OPTIONAL
# (output kinds, out argument names) per function; the order of the returned tuple.
OUTPUTS = {
    "softmax": (("softmax",), ("out",)),
    "log_softmax": (("log_softmax",), ("out",)),
    "loss": (("loss",), ("out",)),
    "gradient": (("gradient",), ("out",)),
    "loss_gradient": (("loss", "gradient"), ("loss_out", "grad_out")),
    "hessian": (("hessian",), ("out",)),
    "loss_gradient_hessian": (("loss", "gradient", "hessian"), ("loss_out", "grad_out", "hess_out")),
    "hessian_vector_product": (("hessian_vector_product",), ("out",)),
    "hessian_diagonal": (("hessian_diagonal",), ("out",)),
}
IN_PLACE_KINDS = ("softmax", "log_softmax", "gradient")
USES_LAYOUT = ("hessian", "loss_gradient_hessian")

Z_DTYPES = ["float64", "float32", "float64", "float32", "float16", "int8", "int32", "int64", "uint8", "bool"]
LABEL_DTYPES = ["int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "intp"]
REAL_DTYPES = ["float64", "float32", "float16", "int64", "uint8"]
ORDERS = ["C", "C", "F", "negative", "sliced"]
SENTINEL = 7.25
ROUNDOFF_UNITS = 64


def computation_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def with_order(arr: np.ndarray, order: str) -> np.ndarray:
    """The same values in another memory layout (a copy or a view; never the caller's array)."""
    arr = np.array(arr)
    if arr.ndim == 0 or order == "C":
        return arr
    if order == "F":
        return np.asfortranarray(arr)
    reverse = (slice(None, None, -1),) * arr.ndim
    if order == "negative":
        return np.ascontiguousarray(arr[reverse])[reverse]
    big = np.zeros(tuple(2 * n + 1 for n in arr.shape), dtype=arr.dtype)
    every_other = (slice(1, None, 2),) * arr.ndim
    big[every_other] = arr
    return big[every_other]


# --------------------------------------------------------------------------- strategies

@st.composite
def shapes(draw, function):
    """(batch shape, K): N = 0, K = 1, big K now and then, 0-3 batch axes, a multi-threaded size rarely."""
    kind = draw(st.sampled_from(["small"] * 12 + ["big_k", "many_rows", "empty"]))
    hessian_like = function in ("hessian", "loss_gradient_hessian")
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
    if function in NO_TARGET:
        target = None
    elif function in TARGET_REQUIRED:
        target = draw(st.sampled_from(["labels", "labels", "soft"] + (["pyint"] if not batch else [])))
    else:
        target = draw(st.sampled_from(["labels", "soft", None]))
    spec["target"] = target
    if function not in NO_TARGET:
        spec["reduction"] = draw(st.sampled_from(["none", "sum", "mean"]))
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
    if function == "hessian_vector_product":
        spec["v_dtype"] = draw(st.sampled_from(REAL_DTYPES))
        spec["v_order"] = draw(st.sampled_from(ORDERS))
        spec["v_special"] = draw(st.sampled_from([0.0, 0.0, 0.1]))
    if function in USES_LAYOUT:
        spec["layout"] = draw(st.sampled_from(["packed_upper", "packed_lower", "full"]))
    spec["outs"] = tuple(
        draw(st.sampled_from(["none", "fresh", "in_place"] if kind in IN_PLACE_KINDS else ["none", "fresh"]))
        for kind in OUTPUTS[function][0]
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
    z = with_order(z_values, spec["z_order"])
    kwargs: dict = {}
    if spec["num_threads"] is not None:
        kwargs["num_threads"] = spec["num_threads"]
    target, y, labels, soft, ignore_index = spec["target"], None, None, None, None
    if target in ("labels", "pyint"):
        labels, ignore_index = _labels(spec, rng)
        y = int(labels) if target == "pyint" else with_order(labels, spec["y_order"])
        if ignore_index is not None:
            kwargs["ignore_index"] = ignore_index
    elif target == "soft":
        kind = spec["soft_values"]
        if kind == "onehot":
            soft = np.eye(n_classes)[rng.integers(0, n_classes, size=batch)].astype(spec["soft_dtype"])
        else:
            soft = _real(rng, batch + (n_classes,), spec["soft_dtype"], kind)
        y = with_order(soft, spec["y_order"])
    sample_weight = class_weight = None
    if function not in NO_TARGET:
        kwargs["reduction"] = spec["reduction"]
        if spec["sample_weight"]:
            sample_weight = _real(rng, batch, "float64" if spec["sample_weight"] != "int" else "int64",
                                  spec["sample_weight"]).astype(dtype if spec["sample_weight"] != "int" else np.int64)
            kwargs["sample_weight"] = with_order(sample_weight, spec["w_order"])
    if target is not None:
        if spec["class_weight"]:
            class_weight = _real(rng, (n_classes,), "float64", spec["class_weight"])
            kwargs["class_weight"] = with_order(class_weight, spec["w_order"])
        if spec["label_smoothing"]:
            kwargs["label_smoothing"] = spec["label_smoothing"]
    if function in USES_LAYOUT:
        kwargs["layout"] = spec["layout"]
    args: tuple = (z,)
    if function == "hessian_vector_product":
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
        args = (z, with_order(v, spec["v_order"]))
    if function not in NO_TARGET and (y is not None or function in TARGET_REQUIRED):
        args = args + (y,)
    # out arrays
    in_place_z = False
    kinds, names = OUTPUTS[function]
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
    if function not in NO_TARGET:
        call.abs_targets, call.denominator = _abs_target_weights(
            spec, z.shape, labels, soft, ignore_index, sample_weight, class_weight,
            kwargs.get("label_smoothing", 0.0))
    return call


def output_shape(kind, batch, n_classes, spec) -> tuple:
    if kind == "loss":
        return batch if spec.get("reduction", "none") == "none" else ()
    if kind == "hessian":
        if spec.get("layout") == "full":
            return batch + (n_classes, n_classes)
        return batch + (n_classes * (n_classes + 1) // 2,)
    return batch + (n_classes,)


def copy_call(call: Call) -> tuple[tuple, dict]:
    """Deep copies of the arguments, ``out`` arrays left out (for the reference and for snapshots)."""
    out_names = OUTPUTS[call.function][1]
    args = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in call.args)
    kwargs = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
              for k, v in call.kwargs.items() if k not in out_names}
    return args, kwargs


# --------------------------------------------------------------------------- checking valid calls

def _row_view(arr: np.ndarray, n_rows: int) -> np.ndarray:
    return arr.reshape(n_rows, -1) if n_rows else arr.reshape(0, max(1, arr.size))


def assert_close(actual, desired, dtype, row_scale, what):
    """Equal NaN pattern and infinities; elsewhere |a - d| <= 64 u (|d| + row scale) + tiny."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    assert actual.dtype == desired.dtype, f"{what}: dtype {actual.dtype} != {desired.dtype}"
    nan_a, nan_d = np.isnan(actual), np.isnan(desired)
    assert np.array_equal(nan_a, nan_d), (
        f"{what}: NaN pattern differs at {np.argwhere(nan_a != nan_d)[:5].tolist()} "
        f"(compiled {actual[nan_a != nan_d][:5]}, reference {desired[nan_a != nan_d][:5]})")
    inf_d = np.isinf(desired)
    assert np.array_equal(actual[inf_d | np.isinf(actual)], desired[inf_d | np.isinf(actual)]), (
        f"{what}: infinities differ: compiled {actual[inf_d | np.isinf(actual)][:5]}, "
        f"reference {desired[inf_d | np.isinf(actual)][:5]}")
    finite = np.isfinite(desired)
    if not finite.any():
        return
    u = np.finfo(dtype).eps / 2
    scale = np.broadcast_to(np.nan_to_num(np.asarray(row_scale, dtype=np.float64), nan=0.0, posinf=0.0), desired.shape)
    with np.errstate(over="ignore"):
        tol = ROUNDOFF_UNITS * u * (np.abs(desired[finite].astype(np.float64)) + scale[finite]) + np.finfo(dtype).tiny
        err = np.abs(actual[finite].astype(np.float64) - desired[finite].astype(np.float64))
    if not np.all(err <= tol):
        worst = int(np.argmax(err / tol))
        raise AssertionError(
            f"{what}: compiled {actual[finite][worst]!r} vs reference {desired[finite][worst]!r}, "
            f"error {err[worst]:.3g} > tolerance {tol[worst]:.3g} (at flat finite index {worst}, "
            f"{np.sum(err > tol)} elements over)")


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
    kinds, names = OUTPUTS[call.function]
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
           if call.function == "hessian_vector_product" else None)
    check_invariants(call, want, dtype, z2d, outs_passed=False)
    if implementations is None:
        implementations = [sk] if COMPILED else []
    for module in implementations:
        got = _as_tuple(getattr(module, call.function)(*call.args, **call.kwargs))
        check_invariants(call, got, dtype, z2d)
        for kind, g, w in zip(OUTPUTS[call.function][0], got, want):
            assert_close(g, w, dtype, scales(call, kind, w, z2d, v2d), kind)
        _assert_inputs_unchanged(call, snapshot_args, snapshot_kwargs, allow_z=call.in_place_z)


def _same(a, b) -> bool:
    try:
        return np.array_equal(a, b, equal_nan=True)
    except TypeError:  # object and string arrays have no NaN test
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and all(x == y or (x != x and y != y) for x, y in zip(a.ravel(), b.ravel()))


def _assert_inputs_unchanged(call, snapshot_args, snapshot_kwargs, allow_z=False):
    for i, (now, before) in enumerate(zip(call.args, snapshot_args)):
        if i == 0 and allow_z:
            continue
        if isinstance(before, np.ndarray):
            assert _same(now, before), f"input argument {i} was modified"
    for key, before in snapshot_kwargs.items():
        if isinstance(before, np.ndarray):
            assert _same(call.kwargs[key], before), f"input {key} was modified"


# --------------------------------------------------------------------------- invalid calls

MUTATIONS = [
    "z_complex", "z_object", "z_string", "z_0d", "z_no_classes",
    "y_float_labels", "y_wrong_shape", "y_bad_label", "y_complex", "y_missing", "y_bool",
    "sample_weight_shape", "sample_weight_complex", "class_weight_shape", "class_weight_string",
    "label_smoothing_range", "label_smoothing_type", "ignore_index_type", "ignore_index_with_soft_targets",
    "option_without_y", "reduction", "layout", "num_threads_value", "num_threads_type",
    "v_missing", "v_shape", "v_complex",
    "out_dtype", "out_shape", "out_not_contiguous", "out_read_only", "out_not_array", "out_overlap",
]


@dataclasses.dataclass
class InvalidCall:
    call: Call
    name: str  # the argument the message must name
    errors: tuple  # the exception types allowed
    bad_label: tuple | None = None  # (position text, value) for a bad label


@st.composite
def invalid_specs(draw):
    spec = draw(valid_specs())
    spec["mutation"] = draw(st.sampled_from(MUTATIONS))
    spec["mutation_choice"] = draw(st.integers(0, 7))
    # keep invalid calls small and their logits plain
    spec["batch"] = tuple(min(n, 4) for n in spec["batch"])
    spec["K"] = min(spec["K"], 12)
    return spec


def build_invalid_call(spec: dict) -> InvalidCall:
    """A valid call with exactly one argument broken; out arrays are sentinel-filled."""
    spec = dict(spec)
    mutation, choice = spec["mutation"], spec["mutation_choice"]
    function = spec["function"]
    rng = np.random.default_rng(spec["seed"] + 1)
    # Fall back to a mutation that applies to this function.
    applies = {
        "y_float_labels": function in TARGET_REQUIRED, "y_missing": function in TARGET_REQUIRED,
        "y_bool": function in TARGET_REQUIRED, "y_bad_label": function not in NO_TARGET,
        "y_wrong_shape": function not in NO_TARGET, "y_complex": function not in NO_TARGET,
        "sample_weight_shape": function not in NO_TARGET, "sample_weight_complex": function not in NO_TARGET,
        "class_weight_shape": function not in NO_TARGET, "class_weight_string": function not in NO_TARGET,
        "label_smoothing_range": function not in NO_TARGET, "label_smoothing_type": function not in NO_TARGET,
        "ignore_index_type": function not in NO_TARGET, "ignore_index_with_soft_targets": function not in NO_TARGET,
        "option_without_y": function in TARGET_OPTIONAL, "reduction": function not in NO_TARGET,
        "layout": function in USES_LAYOUT, "v_missing": function == "hessian_vector_product",
        "v_shape": function == "hessian_vector_product", "v_complex": function == "hessian_vector_product",
    }
    if not applies.get(mutation, True):
        mutation = ["z_complex", "num_threads_value", "out_shape", "out_dtype", "z_no_classes"][choice % 5]
    if mutation == "y_bad_label" and not spec["batch"]:
        spec["batch"] = (3,)
    if mutation in ("y_bad_label", "y_float_labels", "ignore_index_type") and spec["target"] not in ("labels",):
        spec["target"] = "labels"
        spec.update(label_dtype="int64", ignore_index=None, ignore_fraction=0.0, y_order="C",
                    class_weight=spec.get("class_weight"), label_smoothing=spec.get("label_smoothing", 0.0))
    if mutation == "ignore_index_with_soft_targets":
        spec.update(target="soft", soft_dtype="float64", soft_values="unit", y_order="C",
                    class_weight=spec.get("class_weight"), label_smoothing=spec.get("label_smoothing", 0.0))
    if mutation == "y_bad_label" and spec["ignore_index"] == "in_range":
        spec["ignore_index"] = None
    if mutation in ("out_overlap",):
        spec["z_dtype"] = "float64"
        spec["z_order"] = "C"
    # every out array present and sentinel-filled (never in place: z must stay as it was)
    spec["outs"] = tuple("fresh" for _ in OUTPUTS[function][0])
    call = build_valid_call(spec)
    call.spec = spec
    args, kwargs = list(call.args), call.kwargs
    z = args[0]
    batch, n_classes = spec["batch"], spec["K"]
    kinds, names = OUTPUTS[function]
    y_index = 2 if function == "hessian_vector_product" else 1
    dtype = computation_dtype(np.asarray(z).dtype)
    result = InvalidCall(call, "", (ValueError,))

    def set_y(value):
        while len(args) <= y_index:
            args.append(None)
        args[y_index] = value

    if mutation == "z_complex":
        args[0] = np.asarray(z).astype(np.complex128)
        result.name, result.errors = "z", (TypeError,)
    elif mutation == "z_object":
        args[0] = np.asarray(z).astype(object)
        result.name, result.errors = "z", (TypeError,)
    elif mutation == "z_string":
        args[0] = np.asarray(z).astype(str)
        result.name, result.errors = "z", (TypeError,)
    elif mutation == "z_0d":
        args[0] = np.float64(1.5) if choice % 2 else 1.5
        result.name = "z"
        _drop_outs(kwargs, names)
    elif mutation == "z_no_classes":
        args[0] = np.zeros(batch + (0,))
        result.name = "z"
        _drop_outs(kwargs, names)
    elif mutation == "y_float_labels":
        set_y(np.zeros(batch, dtype=[np.float64, np.float32, np.float16][choice % 3]))
        result.name, result.errors = "y", (TypeError,)
    elif mutation == "y_wrong_shape":
        set_y(np.zeros(batch + (n_classes + 1,), dtype=np.int64) if choice % 2 else np.zeros(batch + (2, 3)))
        result.name = "y"
    elif mutation == "y_bad_label":
        labels = np.array(args[y_index])
        if all(batch):
            position = tuple(int(rng.integers(0, n)) for n in batch)
        else:
            labels = np.zeros((3,), labels.dtype)
            position = (int(rng.integers(0, 3)),)
            args[0] = np.zeros((3, n_classes))
            _drop_outs(kwargs, names)
            dtype = np.dtype(np.float64)
        bad_values = [n_classes, n_classes + 5, -1, 2**40]
        if labels.dtype.kind == "u" or labels.dtype.itemsize < 8:
            labels = labels.astype(np.int64)
        value = bad_values[choice % 4]
        if kwargs.get("ignore_index") == value:
            value = n_classes + 1
        labels[position] = value
        set_y(labels)
        first = np.flatnonzero(((labels < 0) | (labels >= n_classes)) & (
            labels != kwargs.get("ignore_index", n_classes + 12345)))[0]
        first_pos = np.unravel_index(first, labels.shape)
        result.name = "y"
        result.bad_label = (f"y[{', '.join(map(str, first_pos))}]", str(labels[first_pos]))
    elif mutation == "y_complex":
        set_y(np.zeros(batch, dtype=np.complex128))
        result.name, result.errors = "y", (TypeError,)
    elif mutation == "y_missing":
        set_y(None)
        result.name = "y"
    elif mutation == "y_bool":
        set_y(True)
        result.name, result.errors = "y", (TypeError,)
    elif mutation == "sample_weight_shape":
        kwargs["sample_weight"] = np.ones(batch + (2,)) if choice % 2 else np.ones((7,) + batch)
        result.name = "sample_weight"
    elif mutation == "sample_weight_complex":
        kwargs["sample_weight"] = np.ones(batch, dtype=np.complex64)
        result.name, result.errors = "sample_weight", (TypeError,)
    elif mutation == "class_weight_shape":
        if y_index >= len(args) or args[y_index] is None:
            set_y(np.zeros(batch, dtype=np.int64))
        kwargs["class_weight"] = np.ones(n_classes + 1 + choice % 2)
        result.name = "class_weight"
    elif mutation == "class_weight_string":
        if y_index >= len(args) or args[y_index] is None:
            set_y(np.zeros(batch, dtype=np.int64))
        kwargs["class_weight"] = np.array(["a"] * n_classes)
        result.name, result.errors = "class_weight", (TypeError,)
    elif mutation == "label_smoothing_range":
        kwargs["label_smoothing"] = [-0.1, 1.5, float("nan"), float("inf"), -1e-300, 1.0000001, 2, -1][choice]
        result.name = "label_smoothing"
    elif mutation == "label_smoothing_type":
        kwargs["label_smoothing"] = ["0.1", True, None, [0.1], 1j, np.bool_(False), b"0", object()][choice]
        result.name, result.errors = "label_smoothing", (TypeError,)
    elif mutation == "ignore_index_type":
        kwargs["ignore_index"] = [1.5, True, "3", np.float64(2.0), None.__class__, 2.0, np.bool_(True), [1]][choice]
        result.name, result.errors = "ignore_index", (TypeError,)
    elif mutation == "ignore_index_with_soft_targets":
        kwargs["ignore_index"] = -100
        result.name = "ignore_index"
    elif mutation == "option_without_y":
        del args[y_index:]
        for key in ("class_weight", "label_smoothing", "ignore_index"):
            kwargs.pop(key, None)
        option, value = [("class_weight", np.ones(n_classes)), ("label_smoothing", 0.2), ("ignore_index", -100)][
            choice % 3]
        kwargs[option] = value
        result.name = option
    elif mutation == "reduction":
        kwargs["reduction"] = ["avg", "Mean", None, 1, "", "SUM", b"sum", "none "][choice]
        result.name = "reduction"
    elif mutation == "layout":
        kwargs["layout"] = ["upper", "PACKED_UPPER", None, 0, "", "U", "packed", "full "][choice]
        result.name = "layout"
    elif mutation == "num_threads_value":
        kwargs["num_threads"] = [0, -1, -(2**40), 0, -2, np.int64(0), -1, 0][choice]
        result.name = "num_threads"
    elif mutation == "num_threads_type":
        kwargs["num_threads"] = [1.5, True, "2", 2.0, np.float32(1), [1], np.bool_(True), 1j][choice]
        result.name, result.errors = "num_threads", (TypeError,)
    elif mutation == "v_missing":
        args[1] = None
        result.name = "v"
    elif mutation == "v_shape":
        args[1] = np.ones(batch + (n_classes + 1,)) if choice % 2 else np.ones((n_classes,) * 2 + batch)
        result.name = "v"
    elif mutation == "v_complex":
        args[1] = np.ones(batch + (n_classes,), dtype=np.complex128)
        result.name, result.errors = "v", (TypeError,)
    else:  # out mutations: break one out array
        which = choice % len(names)
        name, kind = names[which], kinds[which]
        shape = output_shape(kind, batch, n_classes, spec)
        result.name = name
        if mutation == "out_dtype":
            other = np.float32 if dtype == np.float64 else np.float64
            kwargs[name] = np.full(shape, SENTINEL, dtype=[other, np.int64, np.float16, np.complex128][choice % 4])
            result.errors = (TypeError,)
        elif mutation == "out_shape":
            bad_shape = [shape + (1,), (1,) + shape, shape[:-1] if shape else (2,), (0,) + shape][choice % 4]
            kwargs[name] = np.full(bad_shape, SENTINEL, dtype=dtype)
        elif mutation == "out_not_contiguous":
            if not shape or np.prod(shape) <= 1:
                shape = output_shape(kind, batch, n_classes, spec)
                kwargs[name] = np.full(shape, SENTINEL, dtype=dtype)
                kwargs["reduction" if "reduction" in kwargs else "num_threads"] = (
                    "bad" if "reduction" in kwargs else 0)
                result.name = "reduction" if "reduction" in kwargs else "num_threads"
            else:
                big = np.full(shape[:-1] + (2 * shape[-1],), SENTINEL, dtype=dtype)
                kwargs[name] = big[..., ::2] if choice % 2 else np.asfortranarray(big[..., ::2])
                if kwargs[name].flags.c_contiguous:  # a (..., 1) view stays C-contiguous
                    kwargs[name] = np.full(shape + (1,), SENTINEL, dtype=dtype)
        elif mutation == "out_read_only":
            arr = np.full(shape, SENTINEL, dtype=dtype)
            arr.flags.writeable = False
            kwargs[name] = arr
        elif mutation == "out_not_array":
            kwargs[name] = [np.full(shape, SENTINEL).tolist(), SENTINEL, "out", memoryview(b"x")][choice % 4]
            result.errors = (TypeError,)
        elif mutation == "out_overlap":
            overlap = _overlapping_out(args, kwargs, names, kinds, name, kind, shape, dtype, function)
            if overlap is None:
                kwargs[name] = np.full(shape, SENTINEL, dtype=np.int8)
                result.errors = (TypeError,)
            else:
                result.name, kwargs[result.name] = overlap
    call.args, call.kwargs = tuple(args), kwargs
    return result


def _drop_outs(kwargs, names):
    for name in names:
        kwargs.pop(name, None)


def _overlapping_out(args, kwargs, names, kinds, name, kind, shape, dtype, function):
    """An out array that shares memory with an input or an earlier out (not the allowed in-place z)."""
    z = args[0]
    if not z.size:
        return None
    if kind in IN_PLACE_KINDS or kind in ("hessian_vector_product", "hessian_diagonal"):
        # a *view* of z is not z itself; hvp and diagonal may not be in place at all
        view = z if kind not in IN_PLACE_KINDS else z.view()
        return name, view
    if kind == "hessian" and "grad_out" in names and kwargs.get("grad_out") is not None:
        grad = kwargs["grad_out"]
        if grad.size and int(np.prod(shape)):
            buffer = np.full(int(np.prod(shape)) + grad.size, SENTINEL, dtype=dtype)
            kwargs["grad_out"] = buffer[: grad.size].reshape(grad.shape)
            return name, buffer[grad.size - 1: grad.size - 1 + int(np.prod(shape))].reshape(shape)
    return None


def check_invalid_call(invalid: InvalidCall, implementations=None):
    """The call raises the documented error naming the argument and writes nothing."""
    call = invalid.call
    out_names = OUTPUTS[call.function][1]
    if implementations is None:
        implementations = [reference] + ([sk] if COMPILED else [])
    for module in implementations:
        snapshot_args, snapshot_kwargs = copy_call(call)
        out_before = {k: np.array(call.kwargs[k], copy=True) for k in out_names
                      if isinstance(call.kwargs.get(k), np.ndarray)}
        with pytest.raises((ValueError, TypeError)) as info:
            getattr(module, call.function)(*call.args, **call.kwargs)
        message = str(info.value)
        assert isinstance(info.value, invalid.errors), (
            f"{module.__name__}.{call.function}: expected {[e.__name__ for e in invalid.errors]}, "
            f"got {type(info.value).__name__}: {message}")
        assert invalid.name in message, (
            f"{module.__name__}.{call.function}: the message does not name {invalid.name!r}: {message}")
        if invalid.bad_label is not None:
            where, value = invalid.bad_label
            assert f"{where} = {value}" in message, f"the message does not give {where} = {value}: {message}"
        for k, before in out_before.items():
            assert np.array_equal(call.kwargs[k], before, equal_nan=True), f"{k} was written before the error"
        _assert_inputs_unchanged(call, snapshot_args, snapshot_kwargs)


# --------------------------------------------------------------------------- the tests

@FUZZ_SETTINGS
@given(valid_specs())
def test_random_valid_calls_match_the_reference_and_keep_every_invariant(spec):
    check_valid_call(build_valid_call(spec))


@FUZZ_SETTINGS
@given(invalid_specs())
def test_random_invalid_calls_raise_a_named_error_and_write_nothing(spec):
    check_invalid_call(build_invalid_call(spec))
