"""softmax_kernels against the reference, its peers and the floors, per case.

Each case is a pytest-benchmark group (operation x dtype x shape); implementations
that cannot be imported are skipped. Cases and adapters live in
softmax_kernels.benchmarks. With --benchmark-disable (a smoke test) the quick
shapes run once each, so the suite never rots.
"""

import numpy as np
import pytest

from softmax_kernels import benchmarks

IMPLEMENTATIONS = [
    "softmax_kernels",
    "softmax_kernels loss_gradient",
    "reference",
    "memory floor",
    "compute floor",
    "GEMM floor",
    "numpy",
    "numpy dense",
    "numpy S^T S",
    "scipy.special.softmax",
    "scipy.special.log_softmax",
    "torch",
    "torch.softmax",
    "torch.log_softmax",
    "torch.func vmap(hessian)",
    "scikit-learn",
    "scikit-learn gradient_hessian",
    "scikit-learn hessp",
    "jax jit(softmax)",
    "jax jit(log_softmax)",
    "jax jit(value_and_grad)",
    "jax jit(vmap(hessian))",
]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        smoke = metafunc.config.getoption("benchmark_disable", default=False)
        cases = benchmarks.QUICK_CASES if smoke else benchmarks.CASES
        metafunc.parametrize("case", cases, ids=lambda case: case.name)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_benchmark(benchmark, case, implementation):
    available = benchmarks.implementations(case)
    if implementation not in available:
        pytest.skip(f"{implementation} is not available for {case.operation}")
    benchmark.group = case.name
    benchmark.name = implementation
    benchmark(available[implementation])


def _float_arrays(result):
    """The floating-point arrays an implementation returned, torch tensors and JAX arrays as NumPy."""
    if isinstance(result, (tuple, list)):
        for item in result:
            yield from _float_arrays(item)
        return
    if hasattr(result, "detach"):
        result = result.detach().numpy()
    array = np.asarray(result)
    if array.dtype.kind == "f":
        yield array


@pytest.mark.parametrize("quick_case", benchmarks.QUICK_CASES, ids=lambda case: case.name)
def test_every_implementation_computes_in_the_case_precision(quick_case):
    # A peer that quietly computed float64 in float32 (JAX without 64-bit mode) would look faster.
    results = {name: list(_float_arrays(function()))
               for name, function in benchmarks.implementations(quick_case).items()
               if name not in benchmarks.FLOORS}
    for name, arrays in results.items():
        assert arrays, f"{name} returned no floating-point array"
        assert {array.dtype for array in arrays} == {np.dtype(quick_case.dtype)}, name
    if quick_case.operation in ("softmax", "log_softmax"):
        ours = results["softmax_kernels"][0]
        tolerance = 1e-4 if quick_case.dtype == "float32" else 1e-11
        for name, arrays in results.items():
            np.testing.assert_allclose(arrays[0], ours, rtol=tolerance, atol=tolerance, err_msg=name)


def test_the_implementation_list_names_every_implementation():
    # A renamed or new adapter must be listed above, or its benchmark would skip silently.
    found = set()
    for quick_case in benchmarks.QUICK_CASES:
        found.update(benchmarks.implementations(quick_case))
    assert found <= set(IMPLEMENTATIONS), found - set(IMPLEMENTATIONS)
