"""softmax_kernels against the reference, its peers and the floors, per case.

Each case is a pytest-benchmark group (operation x dtype x shape); implementations
that cannot be imported are skipped. Cases and adapters live in
softmax_kernels.benchmarks. With --benchmark-disable (a smoke test) the quick
shapes run once each, so the suite never rots.
"""

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
