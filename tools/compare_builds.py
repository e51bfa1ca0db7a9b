#!/usr/bin/env python
"""Compare two builds: bitwise, the digest of every output over a fixed set of calls; and in
speed, the median time of every operation at the benchmark shapes, on one thread.

    python tools/compare_builds.py record before.json    # with one build importable
    python tools/compare_builds.py record after.json     # with the other
    python tools/compare_builds.py compare before.json after.json

    python tools/compare_builds.py time before-1.json    # alternate the builds, a few rounds each
    python tools/compare_builds.py compare-times --before before-*.json --after after-*.json

The calls: every operation of the registry, both dtypes, every layout, with and without
targets and options, at the benchmark shapes and at every K from 1 to 20, on 1 and 2
threads; and the first ``--fuzz`` calls (default 2000) that tests/test_fuzz.py's strategy
draws with derandomised hypothesis, so both records see the same calls. A change to the
kernels that claims "no change in results" must leave every digest equal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))


def _digest(result) -> str:
    arrays = result if isinstance(result, tuple) else (result,)
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _option_sets(n_rows: int, n_classes: int, rng) -> dict:
    labels = rng.integers(0, n_classes, n_rows)
    labels[::7] = -100
    soft = rng.random((n_rows, n_classes))
    return {
        "plain": {},
        "labels": {"y": labels % n_classes},
        "options": {"y": labels, "ignore_index": -100, "label_smoothing": 0.1, "reduction": "mean",
                    "sample_weight": rng.random(n_rows) + 0.5, "class_weight": rng.random(n_classes) + 0.5},
        "soft": {"y": soft, "reduction": "sum"},
    }


def _operations(sk) -> dict:
    """name -> parameters of every public operation, read from the signatures, so that a
    build from before the registry existed is called the same way."""
    import inspect

    names = [name for name in sk.reference.__all__ if name not in ("pack", "unpack")]
    return {name: inspect.signature(getattr(sk, name)).parameters for name in names}


def _registry_calls():
    import inspect

    import softmax_kernels as sk

    shapes = [(100_000, 10), (10_000, 100), (1_000, 1_000)] + [(333, k) for k in range(1, 21)]
    for n_rows, n_classes in shapes:
        rng = np.random.default_rng(n_rows * 1000 + n_classes)
        z64 = 3.0 * rng.standard_normal((n_rows, n_classes))
        z64[5, 0] = 800.0  # an extreme row
        v64 = rng.standard_normal((n_rows, n_classes))
        option_sets = _option_sets(n_rows, n_classes, rng)
        for dtype in (np.float32, np.float64):
            z, v = z64.astype(dtype), v64.astype(dtype)
            for operation, parameters in _operations(sk).items():
                for options_name, options in option_sets.items():
                    if options_name != "plain" and "reduction" not in parameters:
                        continue
                    if options_name == "plain" and parameters.get("y", None) is not None and \
                            parameters["y"].default is inspect.Parameter.empty:
                        continue
                    if "layout" in parameters and n_rows * n_classes * n_classes > 10**8:
                        continue  # a per-row Hessian of 10^9 values
                    layouts = ("packed_upper", "packed_lower", "full") if "layout" in parameters else (None,)
                    for layout in layouts:
                        for threads in (1, 2):
                            kwargs = dict(options, num_threads=threads)
                            if layout:
                                kwargs["layout"] = layout
                            if "v" in parameters:
                                kwargs["v"] = v
                            name = (f"{operation}-{np.dtype(dtype).name}-{n_rows}x{n_classes}-{options_name}"
                                    f"-{layout}-{threads}")
                            yield name, lambda f=getattr(sk, operation), kw=kwargs: f(z, **kw)


def _fuzz_specs(count: int) -> list:
    from hypothesis import HealthCheck, given, settings

    import test_fuzz

    specs = []

    @settings(max_examples=count, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(test_fuzz.valid_specs())
    def collect(spec):
        specs.append(spec)

    collect()
    return specs


def record(path: str, fuzz: int) -> None:
    import softmax_kernels as sk

    digests = {}
    for name, call in _registry_calls():
        digests[name] = _digest(call())
    import test_fuzz

    for index, spec in enumerate(_fuzz_specs(fuzz)):
        built = test_fuzz.build_valid_call(spec)
        try:
            digests[f"fuzz-{index}"] = _digest(getattr(sk, built.function)(*built.args, **built.kwargs))
        except Exception as error:  # noqa: BLE001 - an error is part of the record too
            digests[f"fuzz-{index}"] = f"{type(error).__name__}: {error}"
    with open(path, "w") as f:
        json.dump({"config": sk.show_config(), "digests": digests}, f, indent=0)
    print(f"{len(digests)} digests written to {path} ({sk.show_config()['simd']})")


def compare(before: str, after: str) -> int:
    with open(before) as f:
        a = json.load(f)["digests"]
    with open(after) as f:
        b = json.load(f)["digests"]
    differing = sorted(name for name in a.keys() & b.keys() if a[name] != b[name])
    missing = sorted(a.keys() ^ b.keys())
    for name in differing[:50]:
        print(f"differs: {name}")
    for name in missing[:50]:
        print(f"in one record only: {name}")
    print(f"{len(a.keys() & b.keys())} calls compared: {len(differing)} differ, {len(missing)} in one record only")
    return 1 if differing or missing else 0


def _timed_calls():
    """name -> call of every operation on one thread into preallocated outputs, with labels
    where the operation takes targets, at the benchmark shapes."""
    import softmax_kernels as sk

    for n_rows, n_classes in [(1_000_000, 10), (100_000, 100), (10_000, 1_000)]:
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            z = (3.0 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
            v = rng.standard_normal((n_rows, n_classes)).astype(dtype)
            y = rng.integers(0, n_classes, n_rows)
            for operation, parameters in _operations(sk).items():
                if "layout" in parameters and n_rows * n_classes * n_classes > 10**8:
                    continue  # Hessians at 100k x 10 and 10k x 100 only
                rows = n_rows // 10 if "layout" in parameters else n_rows
                kwargs = {"num_threads": 1}
                if "y" in parameters:
                    kwargs["y"] = y[:rows]
                if "v" in parameters:
                    kwargs["v"] = v[:rows]
                function = getattr(sk, operation)
                outputs = function(z[:rows], **kwargs)
                for name, out in zip([p for p in parameters if p == "out" or p.endswith("_out")],
                                     outputs if isinstance(outputs, tuple) else (outputs,)):
                    kwargs[name] = out
                name = f"{operation}-{np.dtype(dtype).name}-{rows}x{n_classes}"
                yield name, lambda f=function, zz=z[:rows], kw=kwargs: f(zz, **kw)


def time_calls(path: str, repeats: int) -> None:
    import statistics
    import time

    import softmax_kernels as sk

    medians = {}
    for name, call in _timed_calls():
        call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times)
    with open(path, "w") as f:
        json.dump({"config": sk.show_config(), "median_s": medians}, f, indent=0)
    print(f"{len(medians)} medians written to {path}")


def compare_times(before: list, after: list) -> int:
    """Per call: the median over the records of each build, and their ratio after / before."""
    import statistics

    def medians(paths):
        runs = []
        for path in paths:
            with open(path) as f:
                runs.append(json.load(f)["median_s"])
        return {name: statistics.median(run[name] for run in runs) for name in runs[0]}

    a, b = medians(before), medians(after)
    ratios = []
    print(f"{'call':<52} {'before ms':>10} {'after ms':>10} {'after/before':>13}")
    for name in a:
        ratios.append(b[name] / a[name])
        print(f"{name:<52} {a[name] * 1e3:>10.3f} {b[name] * 1e3:>10.3f} {ratios[-1]:>13.3f}")
    print(f"after/before: median {statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record", help="write the digests of the importable build")
    recording.add_argument("path")
    recording.add_argument("--fuzz", type=int, default=2000, help="fuzz-strategy calls to include")
    comparing = commands.add_parser("compare", help="compare two records")
    comparing.add_argument("before")
    comparing.add_argument("after")
    timing = commands.add_parser("time", help="write the median times of the importable build")
    timing.add_argument("path")
    timing.add_argument("--repeats", type=int, default=9)
    comparing_times = commands.add_parser("compare-times", help="compare the time records of two builds")
    comparing_times.add_argument("--before", nargs="+", required=True)
    comparing_times.add_argument("--after", nargs="+", required=True)
    args = parser.parse_args()
    if args.command == "record":
        record(args.path, args.fuzz)
        return 0
    if args.command == "time":
        time_calls(args.path, args.repeats)
        return 0
    if args.command == "compare-times":
        return compare_times(args.before, args.after)
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
