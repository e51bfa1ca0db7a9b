"""Benchmark cases, peer adapters and the results table: shared by ``bench/`` and
``python -m softmax_kernels bench``.

A case is an operation on a synthetic batch (no downloads). For each case,
:func:`implementations` returns zero-argument callables that compute the same
thing with softmax_kernels (compiled), the NumPy reference, every importable
peer (PyTorch, scikit-learn, JAX, a dense NumPy Hessian, ``torch.func`` /
JAX ``vmap(hessian)``) and the "copy" floor: ``np.copyto`` of the same bytes
the operation must at least read or write. Peers are optional and simply absent
when they cannot be imported. Everything runs single-threaded: the comparison is
per core (``num_threads=1``, ``torch.set_num_threads(1)``, threadpoolctl).
"""

from __future__ import annotations

import importlib
import os
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import softmax_kernels as sk

from . import _bench_curvature
from ._layout import packed_size
from ._operations import OPERATIONS, TARGETS_REQUIRED, output_shape

# The operations the suite times: operations of the registry (each with cases below and a copy
# floor in bytes_touched) and the linear model's (cases of N rows by n_features, K classes).
BENCHMARKED = ("loss_gradient", "hessian", "hessian_vector_product", "hessian_sum") + _bench_curvature.LINEAR_OPERATIONS
assert set(BENCHMARKED) - set(_bench_curvature.LINEAR_OPERATIONS) <= set(OPERATIONS)


@dataclass(frozen=True)
class Case:
    operation: str
    dtype: str
    n_rows: int
    n_classes: int
    n_features: int = 0  # the linear model's

    @property
    def name(self) -> str:
        features = f"x{self.n_features}" if self.n_features else ""
        return f"{self.operation}-{self.dtype}-{self.n_rows}{features}x{self.n_classes}"


DTYPES = ("float32", "float64")


def _cases(shapes: dict, dtypes=DTYPES) -> list[Case]:
    """Cases from {operation: [(N, K) or (N, d, K) ...]}."""
    cases = []
    for operation, operation_shapes in shapes.items():
        for dtype in dtypes:
            for shape in operation_shapes:
                n_rows, *n_features, n_classes = shape
                cases.append(Case(operation, dtype, n_rows, n_classes, *n_features))
    return cases


def select_cases(quick: bool = False, dtypes=DTYPES, shapes=None, operations=BENCHMARKED) -> list[Case]:
    """The standard (or quick) cases, or every operation at the given (N, K) shapes."""
    if shapes:
        return _cases({operation: list(shapes) for operation in operations
                       if operation not in _bench_curvature.LINEAR_OPERATIONS}, dtypes)
    return [c for c in (QUICK_CASES if quick else CASES) if c.dtype in dtypes and c.operation in operations]


def bytes_touched(case: Case) -> int:
    """Bytes an implementation must read and write at least: inputs plus outputs."""
    item = np.dtype(case.dtype).itemsize
    n, k = case.n_rows, case.n_classes
    if case.operation == "loss_gradient":
        return item * (2 * n * k + n)  # z in, gradient and loss out
    if case.operation == "hessian":
        return item * (n * k + n * packed_size(k))
    if case.operation == "hessian_sum":
        return item * n * k  # z in
    if case.operation in _bench_curvature.LINEAR_OPERATIONS:
        return item * n * case.n_features  # X in
    return item * 3 * n * k  # z and v in, Hv out


# The performance goals are stated for these shapes.
CASES = _cases(
    {
        "loss_gradient": [(1_000_000, 10), (100_000, 100), (10_000, 1000)],
        "hessian": [(100_000, 10), (10_000, 100)],
        "hessian_vector_product": [(1_000_000, 10)],
        "hessian_sum": [(1_000_000, 10), (100_000, 100), (10_000, 1000)],
    }
) + _cases(
    {
        "linear.loss_gradient_hessian": [(1797, 64, 10), (100_000, 50, 10), (20_000, 200, 10), (50_000, 30, 50)],
        "linear.hessian_vector_product": [(100_000, 50, 10), (50_000, 30, 50)],
    },
    ("float64",),
)
# Small versions of the same, for smoke tests and `--quick` runs.
QUICK_CASES = _cases(
    {
        "loss_gradient": [(20_000, 10), (2_000, 100), (200, 1000)],
        "hessian": [(2_000, 10), (200, 100)],
        "hessian_vector_product": [(20_000, 10)],
        "hessian_sum": [(20_000, 10), (2_000, 100), (200, 1000)],
    }
) + _cases(
    {
        "linear.loss_gradient_hessian": [(1797, 64, 10), (2_000, 20, 5)],
        "linear.hessian_vector_product": [(2_000, 20, 5)],
    },
    ("float64",),
)


@lru_cache(maxsize=4)
def make_inputs(case: Case, seed: int = 0) -> dict:
    """Logits ~ 3 N(0, 1), uniform labels, a random vector v; the same for every implementation."""
    rng = np.random.default_rng(seed)
    shape = (case.n_rows, case.n_classes)
    return {
        "z": (3.0 * rng.standard_normal(shape)).astype(case.dtype),
        "y": rng.integers(0, case.n_classes, case.n_rows),
        "v": rng.standard_normal(shape).astype(case.dtype),
    }


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except Exception:  # a broken optional install is as good as an absent one
        return None


def _output_buffers(case: Case, dtype) -> dict:
    """Preallocated outputs of the case's operation (default layout), by out argument."""
    operation = OPERATIONS[case.operation]
    return {
        name: np.empty(output_shape(kind, (case.n_rows,), case.n_classes, "none", "packed_upper"), dtype)
        for kind, name in zip(operation.outputs, operation.out_arguments)
    }


def _ours(case: Case, inputs: dict, module, num_threads: int = 1) -> callable:
    """The case's operation of ``module`` (softmax_kernels or its reference) into preallocated outputs;
    targets only where the operation requires them (the Hessians are those of log-sum-exp)."""
    operation = OPERATIONS[case.operation]
    function = getattr(module, case.operation)
    arguments = {name: inputs[name] for name, _ in operation.positional_parameters()
                 if name != "y" or operation.targets == TARGETS_REQUIRED}
    arguments.update(_output_buffers(case, inputs["z"].dtype))
    if module is sk:
        arguments["num_threads"] = num_threads
    return lambda: function(**arguments)


def _copy_floor(case: Case, inputs: dict) -> callable:
    z, v = inputs["z"], inputs["v"]
    if case.operation in ("loss_gradient", "hessian_sum"):
        dest = np.empty_like(z)
        return lambda: np.copyto(dest, z)
    if case.operation == "hessian":
        src = np.ones_like(_output_buffers(case, z.dtype)["out"])
        dest = np.empty_like(src)
        return lambda: np.copyto(dest, src)
    dest_z, dest_v = np.empty_like(z), np.empty_like(v)
    return lambda: (np.copyto(dest_z, z), np.copyto(dest_v, v))


def _numpy_dense_hessian(z: np.ndarray) -> np.ndarray:
    """What a careful NumPy user writes: a stable softmax, then diag(s) - s s^T per row."""
    s = np.exp(z - z.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    hess = -s[:, :, None] * s[:, None, :]
    idx = np.arange(z.shape[1])
    hess[:, idx, idx] += s
    return hess


def _torch_adapters(case: Case, inputs: dict) -> dict:
    torch = _optional("torch")
    if torch is None:
        return {}
    torch.set_num_threads(1)
    z = torch.from_numpy(inputs["z"])
    y = torch.from_numpy(inputs["y"])
    if case.operation == "loss_gradient":

        def loss_gradient():
            zz = z.detach().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(zz, y, reduction="none")
            loss.sum().backward()
            return loss, zz.grad

        return {"torch": loss_gradient}
    func = getattr(torch, "func", None)
    if case.operation == "hessian" and func is not None:
        row_hessian = func.vmap(func.hessian(lambda row: torch.logsumexp(row, dim=0)))
        return {"torch.func vmap(hessian)": lambda: row_hessian(z)}
    return {}


def _sklearn_adapters(case: Case, inputs: dict) -> dict:
    loss_module = _optional("sklearn._loss.loss")
    if loss_module is None or case.operation != "loss_gradient":
        return {}
    loss = loss_module.HalfMultinomialLoss(n_classes=case.n_classes)
    z = inputs["z"]
    y = inputs["y"].astype(z.dtype)
    return {"scikit-learn": lambda: loss.loss_gradient(y_true=y, raw_prediction=z, n_threads=1)}


def _jax_adapters(case: Case, inputs: dict) -> dict:
    # XLA's CPU backend runs its own thread pool; one thread, like everything else here
    # (effective when jax is first imported here).
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    jax = _optional("jax")
    if jax is None:
        return {}
    jnp = jax.numpy
    z = jnp.asarray(inputs["z"])
    y = jnp.asarray(inputs["y"])
    if case.operation == "loss_gradient":

        def total_loss(zz):
            log_p = jax.nn.log_softmax(zz, axis=1)
            return -jnp.take_along_axis(log_p, y[:, None], axis=1).sum()

        step = jax.jit(jax.value_and_grad(total_loss))
        return {"jax jit(value_and_grad)": lambda: jax.block_until_ready(step(z))}
    if case.operation == "hessian":
        row_hessian = jax.jit(jax.vmap(jax.hessian(jax.nn.logsumexp)))
        return {"jax jit(vmap(hessian))": lambda: jax.block_until_ready(row_hessian(z))}
    return {}


def implementations(case: Case) -> dict:
    """Name -> zero-argument callable computing the case, for every available implementation."""
    if case.operation in _bench_curvature.LINEAR_OPERATIONS:
        return _bench_curvature.linear_implementations(case)
    inputs = make_inputs(case)
    if case.operation == "hessian_sum":
        found = _bench_curvature.summed_hessian_implementations(case, inputs)
        found["copy floor"] = _copy_floor(case, inputs)
        return found
    found = {
        "softmax_kernels": _ours(case, inputs, sk),
        "reference": _ours(case, inputs, sk.reference),
        "copy floor": _copy_floor(case, inputs),
    }
    if case.operation == "hessian":
        found["numpy dense"] = lambda: _numpy_dense_hessian(inputs["z"])
    for adapters in (_torch_adapters, _sklearn_adapters, _jax_adapters):
        found.update(adapters(case, inputs))
    return found


def median_time(function: callable, repeats: int = 7, min_time: float = 0.2) -> float:
    """Median wall time of one call over at least `repeats` calls (after a warm-up call)."""
    function()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 100):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def run_suite(cases: list[Case], repeats: int = 7, progress=None) -> list[dict]:
    """Time every available implementation of every case side by side in this process.

    Returns one record per (case, implementation) with the median seconds and the
    ratios to the case's floor (the GEMM floor where the case has one, else the copy
    floor) and to softmax_kernels.
    """
    threadpoolctl = _optional("threadpoolctl")
    limits = threadpoolctl.threadpool_limits(1) if threadpoolctl is not None else None
    records = []
    try:
        for case in cases:
            timings = {}
            for name, function in implementations(case).items():
                if progress is not None:
                    progress(case, name)
                timings[name] = median_time(function, repeats=repeats)
            floor = timings.get("GEMM floor", timings.get("copy floor"))
            for name, seconds in timings.items():
                records.append(
                    {
                        "case": case.name,
                        "operation": case.operation,
                        "dtype": case.dtype,
                        "shape": [case.n_rows] + ([case.n_features] if case.n_features else []) + [case.n_classes],
                        "implementation": name,
                        "median_s": seconds,
                        "gb_per_s": bytes_touched(case) / seconds / 1e9,
                        "rows_per_s": case.n_rows / seconds,
                        "ratio_to_floor": seconds / floor,
                        "ratio_to_softmax_kernels": seconds / timings["softmax_kernels"],
                    }
                )
            make_inputs.cache_clear()
    finally:
        if limits is not None:
            limits.unregister()
    return records


def machine_description() -> dict:
    """Date, machine, SIMD in use and the versions of everything compared."""
    import datetime
    import platform

    versions = {"python": platform.python_version(), "numpy": np.__version__, "softmax_kernels": sk.__version__}
    for name in ("torch", "sklearn", "jax"):
        module = _optional(name)
        if module is not None:
            versions[name] = module.__version__
    return {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "simd": sk.show_config()["simd"],
        "versions": versions,
    }


def summary_table(records: list) -> str:
    """Markdown: per case, softmax_kernels against its floor, the fastest peer and the reference."""
    cases = list(dict.fromkeys(r["case"] for r in records))
    lines = [
        "| case | softmax_kernels / floor | fastest peer | peer / softmax_kernels | reference / softmax_kernels |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        rows = {r["implementation"]: r for r in records if r["case"] == case}
        peers = [r for n, r in rows.items()
                 if not n.startswith("softmax_kernels") and n not in ("reference", "copy floor", "GEMM floor")]
        fastest = min(peers, key=lambda r: r["median_s"]) if peers else None
        peer_text = fastest["implementation"] if fastest else "none importable"
        peer_ratio = f"{fastest['ratio_to_softmax_kernels']:.1f}x" if fastest else "-"
        reference = f"{rows['reference']['ratio_to_softmax_kernels']:.1f}x" if "reference" in rows else "-"
        lines.append(
            f"| {case} | {rows['softmax_kernels']['ratio_to_floor']:.2f} | {peer_text} | {peer_ratio} | {reference} |"
        )
    return "\n".join(lines)


def detail_table(records: list) -> str:
    """Plain text: every implementation's median time, throughput and ratios."""
    header = f"{'case':<42} {'implementation':<26} {'median ms':>10} {'GB/s':>7} {'Mrows/s':>8} {'/floor':>7} {'/ours':>7}"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r['case']:<42} {r['implementation']:<26} {r['median_s'] * 1e3:>10.3f} {r['gb_per_s']:>7.2f} "
            f"{r['rows_per_s'] / 1e6:>8.2f} {r['ratio_to_floor']:>7.2f} {r['ratio_to_softmax_kernels']:>7.2f}"
        )
    return "\n".join(lines)


def plot(records: list, path: str) -> None:
    """A bar chart of time / copy floor per case and implementation (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in records))
    names = list(dict.fromkeys(r["implementation"] for r in records))
    fig, ax = plt.subplots(figsize=(13, 0.55 * len(cases) + 2))
    height = 0.8 / len(names)
    for i, name in enumerate(names):
        ys, xs = [], []
        for j, case in enumerate(cases):
            match = [r for r in records if r["case"] == case and r["implementation"] == name]
            if match:
                ys.append(j + i * height)
                xs.append(match[0]["ratio_to_floor"])
        ax.barh(ys, xs, height=height, label=name)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(cases))], cases)
    ax.set_xscale("log")
    ax.set_xlabel("median time / time of copying the same bytes (log scale, lower is better)")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
