"""The public functions, written once from the registry and bound to a backend, and
``pack``/``unpack``.

``build_public_api(run, module)`` returns one function per operation of the registry
(``_operations.OPERATIONS``); each validates its arguments into a
:class:`~softmax_kernels._validate.Plan` (allocating the outputs), hands the plan to
``run`` (the compiled driver or the NumPy reference), and returns the output arrays.
Both backends therefore share signatures, docstrings and validation exactly.
"""

from __future__ import annotations

import numpy as np

from ._docstrings import docstring
from ._layout import packed_rows_cols
from ._operations import OPERATIONS, REQUIRED, Operation
from ._validate import check_packed_stack, check_symmetric_stack, make_plan

def function_with_signature(operation: Operation, call, module: str, *, with_out: bool = True):
    """A function named after ``operation``, with its signature, whose body is
    ``return call(arguments)`` (the arguments by parameter name).

    The function is compiled from its signature's source, as ``dataclasses`` builds
    ``__init__``: ``inspect.signature`` and ``help`` show the real parameters, and a call
    costs no more than a hand-written function's.
    """
    positional = [name if default is REQUIRED else f"{name}={default!r}"
                  for name, default in operation.positional_parameters()]
    keyword = [f"{name}={default!r}" for name, default in operation.keyword_parameters(with_out)]
    source = (f"def {operation.name}({', '.join(positional + ['*'] + keyword)}):\n"
              f"    return _call(locals())\n")
    namespace = {"_call": call}
    exec(source, namespace)  # noqa: S102 - the source is built from the registry above
    function = namespace[operation.name]
    function.__module__ = module
    function.__qualname__ = operation.name
    return function


def build_public_api(run, module: str) -> dict:
    """The public functions of one backend; ``run(plan)`` writes the plan's outputs."""
    functions = {}
    for name, operation in OPERATIONS.items():

        def call(arguments, operation_name=name):
            plan = make_plan(operation_name, arguments)
            run(plan)
            return plan.results if len(plan.results) > 1 else plan.results[0]

        function = function_with_signature(operation, call, module)
        function.__doc__ = docstring(operation)
        functions[name] = function
    return functions



def pack(h, layout: str = "packed_upper") -> np.ndarray:
    """Pack symmetric matrices (..., K, K) into LAPACK packed storage (..., K(K+1)/2).

    Only the triangle that ``layout`` stores is read (the upper one for
    ``"packed_upper"``, the lower one for ``"packed_lower"``); symmetry is not checked.
    The dtype is kept.
    """
    arr, layout = check_symmetric_stack(h, layout)
    rows, cols = packed_rows_cols(arr.shape[-1], layout)
    return np.ascontiguousarray(arr[..., rows, cols])


def unpack(hp, layout: str = "packed_upper") -> np.ndarray:
    """Expand LAPACK packed storage (..., K(K+1)/2) into symmetric matrices (..., K, K)."""
    arr, n_classes, layout = check_packed_stack(hp, layout)
    rows, cols = packed_rows_cols(n_classes, layout)
    full = np.empty(arr.shape[:-1] + (n_classes, n_classes), dtype=arr.dtype)
    full[..., rows, cols] = arr
    full[..., cols, rows] = arr
    return full
