"""Random invalid calls of the public API: a valid spec (fuzz_valid_calls) with exactly one
argument broken. :func:`check_invalid_call`: every backend raises the documented
ValueError/TypeError whose message names that argument, writes nothing into any ``out``
array and leaves the inputs as they were.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import strategies as st

import softmax_kernels as sk
from fuzz_valid_calls import (COMPILED, SENTINEL, Call, assert_inputs_unchanged, build_valid_call, computation_dtype,
                              copy_call, output_shape, valid_specs)
from helpers import NO_TARGET_OPERATIONS, TARGET_OPTIONAL_OPERATIONS, TARGET_REQUIRED_OPERATIONS
from softmax_kernels import reference
from softmax_kernels._operations import OPERATIONS, OUTPUT_KINDS

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
    operation = OPERATIONS[function]
    takes_y = function not in NO_TARGET_OPERATIONS
    applies = {
        "y_float_labels": function in TARGET_REQUIRED_OPERATIONS, "y_missing": function in TARGET_REQUIRED_OPERATIONS,
        "y_bool": function in TARGET_REQUIRED_OPERATIONS, "y_bad_label": takes_y,
        "y_wrong_shape": takes_y, "y_complex": takes_y,
        "sample_weight_shape": takes_y, "sample_weight_complex": takes_y,
        "class_weight_shape": takes_y, "class_weight_string": takes_y,
        "label_smoothing_range": takes_y, "label_smoothing_type": takes_y,
        "ignore_index_type": takes_y, "ignore_index_with_soft_targets": takes_y,
        "option_without_y": function in TARGET_OPTIONAL_OPERATIONS, "reduction": takes_y,
        "layout": operation.takes_layout, "v_missing": operation.takes_v,
        "v_shape": operation.takes_v, "v_complex": operation.takes_v,
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
    spec["outs"] = tuple("fresh" for _ in operation.outputs)
    call = build_valid_call(spec)
    call.spec = spec
    args, kwargs = list(call.args), call.kwargs
    z = args[0]
    batch, n_classes = spec["batch"], spec["K"]
    kinds, names = operation.outputs, operation.out_arguments
    y_index = 2 if operation.takes_v else 1  # y comes after z and v
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
            if operation.takes_v:
                args[1] = np.ones((3, n_classes))
            if "sample_weight" in kwargs:
                kwargs["sample_weight"] = np.ones(3)
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
    if OUTPUT_KINDS[kind].shape == "row":
        # a *view* of z is not z itself; the other outputs of z's shape may not be in place at all
        view = z.view() if OUTPUT_KINDS[kind].may_be_z else z
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
    out_names = OPERATIONS[call.function].out_arguments
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
        assert_inputs_unchanged(call, snapshot_args, snapshot_kwargs)
