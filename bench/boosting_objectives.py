"""Time per boosting round of the XGBoost and LightGBM objectives against a plain NumPy objective.

    python bench/boosting_objectives.py [--quick] [--rows N] [--classes K] [--repeats R] [--rounds M] [--json FILE]

A library calls its custom objective once per round; one call is the round's gradient work.
For each library that imports, the margins come as that library hands them over (XGBoost:
float32 in C order; LightGBM: float64, a column-major view) and the labels from its
DMatrix/Dataset. Side by side: ``multiclass_objective(hessian=<the library's factor>)`` and a
plain NumPy objective (softmax by exp and sum, g = p - onehot, h = factor p (1 - p)), both
reading the labels from the same container. One thread (``OMP_NUM_THREADS=1``, threadpoolctl
when present, ``num_threads=1``); each time is the median over rounds of the median of
repeated calls.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy and the libraries start their thread pools

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402

import numpy as np  # noqa: E402

import softmax_kernels as sk  # noqa: E402
from softmax_kernels.benchmarks import machine_description, median_time  # noqa: E402

FULL_ROWS, QUICK_ROWS, N_CLASSES = 1_000_000, 20_000, 10
# Per library: the margins' dtype and memory order as it hands them over, and its Hessian factor.
LIBRARIES = {
    "xgboost": {"dtype": np.float32, "order": "C", "hessian": "xgboost"},
    "lightgbm": {"dtype": np.float64, "order": "F", "hessian": "lightgbm"},
}


def numpy_objective(factor: float):
    """The plain NumPy objective a user would write, for the native API of either library."""

    def objective(margins, data):
        labels = data.get_label().astype(np.int64)
        exp = np.exp(margins - margins.max(axis=1, keepdims=True))
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        gradient = probabilities.copy()
        gradient[np.arange(len(labels)), labels] -= 1.0
        return gradient, factor * probabilities * (1.0 - probabilities)

    return objective


def container(library, n_rows: int, labels: np.ndarray):
    """The library's training data for these labels (one constant feature: only the labels are read)."""
    features = np.zeros((n_rows, 1), dtype=np.float32)
    if library.__name__ == "xgboost":
        return library.DMatrix(features, label=labels, nthread=1)
    return library.Dataset(features, label=labels, params={"verbose": -1}).construct()


def measure(name: str, n_rows: int, n_classes: int, repeats: int, rounds: int) -> dict | None:
    """Times of both objectives for one library; None when it does not import."""
    try:
        library = importlib.import_module(name)
        adapter = importlib.import_module(f"softmax_kernels.{name}")
    except ImportError:
        return None
    layout = LIBRARIES[name]
    rng = np.random.default_rng(0)
    margins = np.asarray(2 * rng.standard_normal((n_rows, n_classes)), dtype=layout["dtype"], order=layout["order"])
    data = container(library, n_rows, rng.integers(0, n_classes, n_rows))
    objectives = {
        "softmax_kernels": adapter.multiclass_objective(hessian=layout["hessian"], num_threads=1),
        "numpy": numpy_objective(2.0 if name == "xgboost" else n_classes / (n_classes - 1.0)),
    }
    times = {label: [] for label in objectives}
    for _ in range(rounds):  # alternate, so that drifts of a shared machine's speed hit both alike
        for label, objective in objectives.items():
            times[label].append(median_time(lambda: objective(margins, data), repeats=repeats))
    seconds = {label: statistics.median(values) for label, values in times.items()}
    return {"library": name, "version": library.__version__, "dtype": np.dtype(layout["dtype"]).name,
            "order": layout["order"], "n_rows": n_rows, "n_classes": n_classes,
            "softmax_kernels_s": seconds["softmax_kernels"], "numpy_s": seconds["numpy"],
            "numpy_over_softmax_kernels": seconds["numpy"] / seconds["softmax_kernels"]}


def table(results: list) -> str:
    lines = ["| library | margins | N × K | softmax_kernels ms | NumPy ms | NumPy / softmax_kernels |",
             "|---|---|---|---|---|---|"]
    for r in results:
        order = "C order" if r["order"] == "C" else "column-major"
        lines.append(f"| {r['library']} {r['version']} | {r['dtype']}, {order} | {r['n_rows']:,} × {r['n_classes']} "
                     f"| {1e3 * r['softmax_kernels_s']:.1f} | {1e3 * r['numpy_s']:.1f} "
                     f"| {r['numpy_over_softmax_kernels']:.1f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows, as a smoke test")
    parser.add_argument("--rows", type=int, help=f"rows of the margins (default {FULL_ROWS:,})")
    parser.add_argument("--classes", type=int, default=N_CLASSES)
    parser.add_argument("--repeats", type=int, default=7, help="calls per median (at least)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of medians")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    n_rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)

    threadpoolctl = _optional("threadpoolctl")
    limits = threadpoolctl.threadpool_limits(1) if threadpoolctl is not None else None
    try:
        results = [r for r in (measure(name, n_rows, args.classes, args.repeats, args.rounds) for name in LIBRARIES)
                   if r is not None]
    finally:
        if limits is not None:
            limits.unregister()
    if not results:
        print("neither xgboost nor lightgbm imports: nothing to time")
        return
    print(table(results))
    if args.json:
        description = machine_description()
        description["versions"].update({r["library"]: r["version"] for r in results})
        with open(args.json, "w") as f:
            json.dump({"machine": description, "config": sk.show_config(), "results": results}, f, indent=1)


def _optional(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


if __name__ == "__main__":
    main()
