"""The registry of operations (softmax_kernels._operations) is the public API: every operation is
a function of softmax_kernels, softmax_kernels.reference and softmax_kernels.dask, listed in
``__all__``, whose signature is the record's and whose docstring documents exactly the
parameters it takes (the Dask functions take no ``out`` arguments)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from softmax_kernels._operations import OPERATIONS

MODULES = ["softmax_kernels", "softmax_kernels.reference", "softmax_kernels.dask"]


@pytest.fixture(params=MODULES)
def module(request):
    if request.param == "softmax_kernels.dask":
        pytest.importorskip("dask.array")
    return importlib.import_module(request.param)


def takes_out_arrays(module) -> bool:
    return module.__name__ != "softmax_kernels.dask"  # Dask arrays are immutable


def record_parameters(name: str, with_out: bool) -> list:
    """(name, kind, default) of every parameter, as the registry's record says."""
    operation = OPERATIONS[name]
    positional = [(parameter, inspect.Parameter.POSITIONAL_OR_KEYWORD, default)
                  for parameter, default in operation.positional_parameters()]
    keyword = [(parameter, inspect.Parameter.KEYWORD_ONLY, default)
               for parameter, default in operation.keyword_parameters(with_out=with_out)]
    return positional + keyword


def documented_parameters(docstring: str) -> list:
    """The parameter names of a numpydoc "Parameters" section, in order (one ``name : type`` line each)."""
    lines = inspect.cleandoc(docstring).splitlines()
    start = lines.index("Parameters")
    assert set(lines[start + 1]) == {"-"}, "no underline below 'Parameters'"
    names = []
    for line, following in zip(lines[start + 2:], lines[start + 3:] + [""]):
        if following and set(following) == {"-"}:  # the next section's title
            break
        if line and not line[0].isspace():
            name, separator, _ = line.partition(" : ")
            assert separator and name.isidentifier(), f"not a 'name : type' line: {line!r}"
            names.append(name)
    return names


def test_all_lists_every_operation(module):
    assert set(OPERATIONS) <= set(module.__all__)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module.__name__}.__all__ names what the module lacks: {missing}"


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_operation_is_a_function_with_the_records_signature(module, name):
    function = getattr(module, name)
    assert callable(function) and function.__name__ == name
    parameters = inspect.signature(function).parameters.values()
    assert [(p.name, p.kind, p.default) for p in parameters] == record_parameters(name, takes_out_arrays(module))


@pytest.mark.parametrize("name", OPERATIONS)
def test_docstring_documents_exactly_the_parameters_of_the_signature(module, name):
    function = getattr(module, name)
    documented = documented_parameters(function.__doc__)
    taken = list(inspect.signature(function).parameters)
    assert documented == taken, (
        f"{module.__name__}.{name}: undocumented {sorted(set(taken) - set(documented))}, "
        f"documented but not taken {sorted(set(documented) - set(taken))}, order {documented}")
