"""Command line: ``python -m softmax_kernels {info, bench, check}``.

``info`` prints what this installation is and runs on; ``bench`` times
softmax_kernels against the NumPy reference and every importable peer on
synthetic batches; ``check`` is a self-test of the installed build against the
NumPy reference and finite differences that exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np

import softmax_kernels as sk

from .benchmarks import BENCHMARKED


def _cpu_flags() -> str:
    """The SIMD features the CPU reports (Linux), else the machine name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ["sse2", "avx", "avx2", "fma", "avx512f", "asimd", "sve"]
                    return " ".join(flag for flag in wanted if flag in flags) or "none of note"
    except OSError:
        pass
    return platform.machine()


def info() -> int:
    config = sk.show_config()
    width = max(map(len, config)) + 2
    for key, value in config.items():
        print(f"{key:<{width}}{value}")
    print(f"{'cpu':<{width}}{platform.processor() or platform.machine()}")
    print(f"{'cpu features':<{width}}{_cpu_flags()}")
    print(f"{'python':<{width}}{platform.python_version()}")
    print(f"{'numpy':<{width}}{np.__version__}")
    return 0


def _finite_difference_gradient(z: np.ndarray, y: np.ndarray, step: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(z)
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (sk.loss(up, y, reduction="sum") - sk.loss(down, y, reduction="sum")) / (2 * step)
    return grad


def _check_call(module, operation, arrays: dict):
    """``operation`` of ``module`` on the arrays, with targets and options where it takes them."""
    arguments = {name: arrays[name] for name, _ in operation.positional_parameters()}
    if operation.takes_target_options:
        arguments.update(label_smoothing=0.1, reduction="mean")
    result = getattr(module, operation.name)(**arguments)
    return result if isinstance(result, tuple) else (result,)


def check() -> int:
    """Compare every function with the reference on random data; return the number of failures."""
    from ._operations import OPERATIONS

    rng = np.random.default_rng(0)
    failures = 0
    for dtype in (np.float32, np.float64):
        arrays = {
            "z": (rng.standard_normal((257, 11)) * 5).astype(dtype),
            "y": rng.integers(0, 11, 257),
            "v": rng.standard_normal((257, 11)).astype(dtype),
        }
        tol = 64 * np.finfo(dtype).eps
        for operation in OPERATIONS.values():
            got, want = _check_call(sk, operation, arrays), _check_call(sk.reference, operation, arrays)
            ok = all(np.allclose(g, w, rtol=tol, atol=tol) for g, w in zip(got, want))
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {operation.name} {np.dtype(dtype).name} equals the reference")
    z = rng.standard_normal((3, 5))
    y = rng.integers(0, 5, 3)
    ok = np.allclose(_finite_difference_gradient(z, y), sk.gradient(z, y, reduction="sum"), atol=1e-7)
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} gradient matches finite differences of the loss")
    print(f"backend {sk.show_config()['backend']}: {'all checks passed' if not failures else f'{failures} FAILED'}")
    return failures


def _shape(text: str) -> tuple[int, int]:
    try:
        rows, classes = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape NxK such as 100000x10, got {text!r}") from None
    if rows < 1 or classes < 1:
        raise argparse.ArgumentTypeError(f"expected positive N and K, got {text!r}")
    return rows, classes


def _progress_display(cases: list):
    """A line that updates in place on a terminal; a line per case otherwise (logs, CI)."""
    interactive = sys.stderr.isatty()
    seen = set()

    def progress(case, name):
        position = f"[case {cases.index(case) + 1}/{len(cases)}]"
        if interactive:
            print(f"\r{position} {case.name}: {name}".ljust(79), end="", file=sys.stderr, flush=True)
        elif case.name not in seen:
            seen.add(case.name)
            print(f"{position} {case.name}", file=sys.stderr, flush=True)

    return progress, interactive


def bench(args: argparse.Namespace) -> int:
    from . import benchmarks
    from ._bench_peers import missing_peers

    cases = benchmarks.select_cases(args.quick, tuple(args.dtype), args.shape, tuple(args.operation))
    progress, interactive = _progress_display(cases)
    min_time = 0.05 if args.quick else 0.2
    records = benchmarks.run_suite(cases, repeats=args.repeats, min_time=min_time, progress=progress)
    if interactive:
        print(file=sys.stderr)
    machine = benchmarks.machine_description()
    print(f"{machine['date']}  {machine['machine']}  {machine['processor']}  SIMD {machine['simd']}  single thread")
    print("  ".join(f"{name} {version}" for name, version in machine["versions"].items()))
    missing = missing_peers()
    if missing:
        print(f"not compared with {', '.join(missing)}: pip install \"softmax_kernels[peers]\" adds them")
    print()
    print(benchmarks.detail_table(records))
    print()
    print(benchmarks.summary_table(records))
    labels = benchmarks.labels_table(records)
    if labels:
        print()
        print(labels)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "records": records}, f, indent=1)
    if args.plot:
        try:
            benchmarks.plot(records, args.plot)
        except ImportError:
            print("--plot needs matplotlib: pip install matplotlib", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softmax_kernels", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="show the build, backend, threads and CPU")
    timing = commands.add_parser("bench", help="time softmax_kernels against the reference and its peers")
    timing.add_argument("--quick", action="store_true", help="small shapes: seconds instead of minutes")
    timing.add_argument("--dtype", nargs="+", choices=("float32", "float64"), default=["float32", "float64"])
    timing.add_argument("--shape", nargs="+", type=_shape, metavar="NxK", help="run every operation at these shapes")
    timing.add_argument("--operation", nargs="+", choices=BENCHMARKED, default=list(BENCHMARKED))
    timing.add_argument("--repeats", type=int, default=None,
                        help="timed calls per implementation, the median reported (default 7; 3 with --quick)")
    timing.add_argument("--json", metavar="FILE", help="write the machine description and all timings here")
    timing.add_argument("--plot", metavar="FILE.png", help="write a bar chart here (needs matplotlib)")
    commands.add_parser("check", help="self-test against the reference and finite differences")
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    if args.command == "bench":
        if args.repeats is None:
            args.repeats = 3 if args.quick else 7
        return bench(args)
    return 1 if check() else 0


if __name__ == "__main__":
    sys.exit(main())
