"""Benchmark cases, floors and the results tables: shared by ``bench/`` and
``python -m softmax_kernels bench``.

A case is an operation on a synthetic batch (no downloads). For each case,
:func:`implementations` returns zero-argument callables that compute it with
softmax_kernels (compiled), the NumPy reference, every importable peer
(``_bench_peers``) and two floors measured in the same run:

* the memory floor: ``np.copyto`` of the bytes the operation must at least read and
  write;
* the compute floor: ``np.exp(z, out=o)`` over the same values, one vectorised exp per
  value read and written (for the summed Hessian and the linear model, the "GEMM floor"
  of ``_bench_curvature`` instead: a square product of as many multiply-adds).

Cases whose bytes fit in four times the last-level cache are timed with the caches
evicted before every call (of every implementation alike), so that no case measures a
cache. Everything runs single-threaded: the comparison is per core (``num_threads=1``,
``torch.set_num_threads(1)``, threadpoolctl).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import softmax_kernels as sk

from . import _bench_curvature, _bench_peers
from ._bench_peers import optional as _optional
from ._layout import packed_size
from ._operations import OPERATIONS, TARGETS_REQUIRED, output_shape

# The operations the suite times: operations of the registry (each with cases below and a copy
# floor in bytes_touched) and the linear model's (cases of N rows by n_features, K classes).
BENCHMARKED = ("softmax", "log_softmax", "loss_gradient", "hessian", "hessian_vector_product",
               "hessian_sum") + _bench_curvature.LINEAR_OPERATIONS
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
    if case.operation in ("softmax", "log_softmax"):
        return item * 2 * n * k  # z in, the result out
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
ROW_SHAPES = [(1_000_000, 10), (100_000, 100), (10_000, 1000)]
CASES = _cases(
    {
        "softmax": ROW_SHAPES + [(1_000, 100_000)],
        "log_softmax": ROW_SHAPES + [(1_000, 100_000)],
        "loss_gradient": ROW_SHAPES,
        "hessian": [(100_000, 10), (10_000, 100)],
        "hessian_vector_product": [(1_000_000, 10)],
        "hessian_sum": ROW_SHAPES,
    }
) + _cases(
    {
        "linear.loss_gradient_hessian": [(1797, 64, 10), (100_000, 50, 10), (20_000, 200, 10), (50_000, 30, 50)],
        "linear.hessian_vector_product": [(100_000, 50, 10), (50_000, 30, 50)],
    },
    ("float64",),
)
# Smaller versions of the same, for `--quick` runs (under a minute) and smoke tests: still 2 MB
# to 8 MB a case, timed with the caches evicted.
QUICK_ROW_SHAPES = [(200_000, 10), (20_000, 100), (2_000, 1000)]
QUICK_CASES = _cases(
    {
        "softmax": QUICK_ROW_SHAPES,
        "log_softmax": QUICK_ROW_SHAPES,
        "loss_gradient": QUICK_ROW_SHAPES,
        "hessian": [(20_000, 10), (2_000, 100)],
        "hessian_vector_product": [(200_000, 10)],
        "hessian_sum": [(200_000, 10), (2_000, 1000)],
    }
) + _cases(
    {
        "linear.loss_gradient_hessian": [(1797, 64, 10)],
        "linear.hessian_vector_product": [(20_000, 20, 5)],
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
    """The memory floor: a copy of the bytes the operation must at least read and write."""
    z, v = inputs["z"], inputs["v"]
    if case.operation in ("softmax", "log_softmax", "loss_gradient", "hessian_sum"):
        dest = np.empty_like(z)
        return lambda: np.copyto(dest, z)
    if case.operation == "hessian":
        src = np.ones_like(_output_buffers(case, z.dtype)["out"])
        dest = np.empty_like(src)
        return lambda: np.copyto(dest, src)
    dest_z, dest_v = np.empty_like(z), np.empty_like(v)
    return lambda: (np.copyto(dest_z, z), np.copyto(dest_v, v))


def _exp_floor(inputs: dict) -> callable:
    """The compute floor: one vectorised exp per value, read and written."""
    z = inputs["z"]
    out = np.empty_like(z)
    return lambda: np.exp(z, out=out)


def implementations(case: Case) -> dict:
    """Name -> zero-argument callable computing the case, for every available implementation."""
    if case.operation in _bench_curvature.LINEAR_OPERATIONS:
        return _bench_curvature.linear_implementations(case)
    inputs = make_inputs(case)
    if case.operation == "hessian_sum":
        found = _bench_curvature.summed_hessian_implementations(case, inputs)
    else:
        found = {
            "softmax_kernels": _ours(case, inputs, sk),
            "reference": _ours(case, inputs, sk.reference),
            "compute floor": _exp_floor(inputs),
        }
    found["memory floor"] = _copy_floor(case, inputs)
    found.update(_bench_peers.adapters(case, inputs))
    return found


FLOORS = ("memory floor", "compute floor", "GEMM floor")


def last_level_cache_bytes() -> int:
    """The largest cache of CPU 0 (Linux sysfs), else 32 MiB."""
    sizes = []
    for index in range(8):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size") as f:
                text = f.read().strip()
        except OSError:
            break
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=32 << 20)


@lru_cache(maxsize=1)
def _eviction_buffer() -> np.ndarray:
    return np.zeros(2 * last_level_cache_bytes() // 8)


def evict_caches() -> None:
    """Write a buffer twice the last-level cache's size, so that no earlier data stays cached."""
    buffer = _eviction_buffer()
    buffer += 1.0


def median_time(function: callable, repeats: int = 7, min_time: float = 0.2, evict: bool = False) -> float:
    """Median wall time of one call over at least `repeats` calls (after a warm-up call), the
    caches evicted before each call where ``evict``."""
    function()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 100):
        if evict:
            evict_caches()
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def run_suite(cases: list[Case], repeats: int = 7, min_time: float = 0.2, progress=None) -> list[dict]:
    """Time every available implementation of every case side by side in this process, each
    for at least `repeats` calls and `min_time` seconds.

    Returns one record per (case, implementation) with the median seconds and the ratios to
    the case's floors (memory, and compute or GEMM) and to softmax_kernels.
    """
    threadpoolctl = _optional("threadpoolctl")
    limits = threadpoolctl.threadpool_limits(1) if threadpoolctl is not None else None
    records = []
    try:
        for case in cases:
            evict = bytes_touched(case) < 4 * last_level_cache_bytes()
            timings = {}
            for name, function in implementations(case).items():
                if progress is not None:
                    progress(case, name)
                timings[name] = median_time(function, repeats=repeats, min_time=min_time, evict=evict)
            compute = timings.get("GEMM floor", timings.get("compute floor"))
            for name, seconds in timings.items():
                records.append(
                    {
                        "case": case.name,
                        "operation": case.operation,
                        "dtype": case.dtype,
                        "shape": [case.n_rows] + ([case.n_features] if case.n_features else []) + [case.n_classes],
                        "implementation": name,
                        "median_s": seconds,
                        "caches_evicted": evict,
                        "gb_per_s": bytes_touched(case) / seconds / 1e9,
                        "rows_per_s": case.n_rows / seconds,
                        "ratio_to_memory_floor": seconds / timings["memory floor"],
                        "ratio_to_compute_floor": seconds / compute if compute else None,
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
    for name in ("scipy", "torch", "sklearn", "jax"):
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


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _fastest_peer(rows: dict):
    """The fastest record among a case's peers (not ours, not the reference, not a floor), or None."""
    peers = [r for n, r in rows.items() if not n.startswith("softmax_kernels") and n != "reference" and n not in FLOORS]
    return min(peers, key=lambda r: r["median_s"]) if peers else None


def _by_case(records: list) -> dict:
    """{case: {implementation: record}}, cases in the order they ran."""
    cases = {}
    for r in records:
        cases.setdefault(r["case"], {})[r["implementation"]] = r
    return cases


def summary_table(records: list, operations=None) -> str:
    """Markdown: per operation (all, or those given) and shape, softmax_kernels against its floors,
    the fastest peer and the reference, each cell giving every dtype that ran (float32 / float64)."""
    groups = {}  # (operation, shape) -> {dtype: {implementation: record}}
    for rows in _by_case(records).values():
        first = next(iter(rows.values()))
        if operations is not None and first["operation"] not in operations:
            continue
        groups.setdefault((first["operation"], "x".join(map(str, first["shape"]))), {})[first["dtype"]] = rows
    dtypes = [dtype for dtype in DTYPES if any(dtype in by_dtype for by_dtype in groups.values())]

    def cell(by_dtype: dict, text) -> str:
        return " / ".join(text(by_dtype[dtype]) if dtype in by_dtype else "-" for dtype in dtypes)

    def peer_name(rows: dict) -> str:
        fastest = _fastest_peer(rows)
        return fastest["implementation"] if fastest else "none importable"

    def peer_ratio(rows: dict) -> str:
        fastest = _fastest_peer(rows)
        return f"{fastest['ratio_to_softmax_kernels']:.1f}x" if fastest else "-"

    def reference_ratio(rows: dict) -> str:
        return f"{rows['reference']['ratio_to_softmax_kernels']:.1f}x" if "reference" in rows else "-"

    lines = [
        f"Each cell: {' / '.join(dtypes)}.",
        "",
        "| operation | shape | / memory floor | / compute floor | fastest peer | peer / ours | reference / ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for (operation, shape), by_dtype in groups.items():
        names = {peer_name(rows) for rows in by_dtype.values()}
        lines.append(
            f"| {operation} | {shape} "
            f"| {cell(by_dtype, lambda rows: _ratio(rows['softmax_kernels']['ratio_to_memory_floor']))} "
            f"| {cell(by_dtype, lambda rows: _ratio(rows['softmax_kernels']['ratio_to_compute_floor']))} "
            f"| {names.pop() if len(names) == 1 else cell(by_dtype, peer_name)} "
            f"| {cell(by_dtype, peer_ratio)} | {cell(by_dtype, reference_ratio)} |"
        )
    return "\n".join(lines)


def labels_table(records: list) -> str:
    """Markdown: loss_gradient over softmax on the same logits (labels should come for free), and
    hessian_sum over loss_gradient, where both were timed."""
    ours = {(r["operation"], r["dtype"], tuple(r["shape"])): r["median_s"] for r in records
            if r["implementation"] == "softmax_kernels"}
    lines = ["| shape | dtype | loss_gradient / softmax | hessian_sum / loss_gradient |", "|---|---|---|---|"]
    for (operation, dtype, shape), seconds in ours.items():
        if operation != "loss_gradient":
            continue
        softmax = ours.get(("softmax", dtype, shape))
        summed = ours.get(("hessian_sum", dtype, shape))
        lines.append(f"| {'x'.join(map(str, shape))} | {dtype} | {_ratio(softmax and seconds / softmax)} "
                     f"| {_ratio(summed and summed / seconds)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def detail_table(records: list) -> str:
    """Plain text: every implementation's median time, throughput and ratios."""
    header = (f"{'case':<46} {'implementation':<30} {'median ms':>10} {'GB/s':>7} {'/memory':>8} {'/compute':>9} "
              f"{'/ours':>7}")
    lines = [header, "-" * len(header)]
    for r in records:
        compute = r["ratio_to_compute_floor"]
        lines.append(
            f"{r['case']:<46} {r['implementation']:<30} {r['median_s'] * 1e3:>10.3f} {r['gb_per_s']:>7.2f} "
            f"{r['ratio_to_memory_floor']:>8.2f} {'-' if compute is None else f'{compute:.2f}':>9} "
            f"{r['ratio_to_softmax_kernels']:>7.2f}"
        )
    return "\n".join(lines)


def plot(records: list, path: str) -> None:
    """A bar chart per case of softmax_kernels, the fastest peer and the compute (or GEMM) floor,
    each as time / memory floor (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = _by_case(records)
    roles = {  # bar label: how to find its record among a case's rows
        "softmax_kernels": lambda rows: rows.get("softmax_kernels"),
        "fastest peer": _fastest_peer,
        "compute floor (np.exp, or GEMM)": lambda rows: rows.get("GEMM floor", rows.get("compute floor")),
    }
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(cases) + 1.5))
    height = 0.8 / len(roles)
    for i, (label, find) in enumerate(roles.items()):
        ys, xs = [], []
        for j, rows in enumerate(cases.values()):
            record = find(rows)
            if record is not None:
                ys.append(j - 0.4 + (i + 0.5) * height)
                xs.append(record["ratio_to_memory_floor"])
        ax.barh(ys, xs, height=height, label=label)
    ax.set_yticks(range(len(cases)), list(cases))
    ax.set_xscale("log")
    ax.set_xlabel("median time / memory floor (copying the bytes the operation must touch); log scale, lower is better")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
