"""Time every benchmark case side by side and print the README's results table.

    python bench/report.py [--quick] [--repeats N] [--json FILE] [--plot FILE.png]

All implementations of a case run in this one process, single-threaded, and the
table reports medians and ratios (to the copy floor, and of each peer to
softmax_kernels), which are what stays meaningful on a shared, noisy machine.
The plot needs matplotlib (an optional extra).
"""

import argparse
import datetime
import json
import platform
import sys

import numpy as np

import softmax_kernels as sk
from softmax_kernels import benchmarks


def machine_description() -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__, "softmax_kernels": sk.__version__}
    for name in ("torch", "sklearn", "jax"):
        module = benchmarks._optional(name)
        if module is not None:
            versions[name] = module.__version__
    return {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "simd": sk.show_config()["simd"],
        "versions": versions,
    }


def markdown_table(records: list) -> str:
    cases = list(dict.fromkeys(r["case"] for r in records))
    lines = [
        "| case | softmax_kernels / copy floor | fastest peer | peer / softmax_kernels | reference / softmax_kernels |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        rows = {r["implementation"]: r for r in records if r["case"] == case}
        peers = {n: r for n, r in rows.items() if n not in ("softmax_kernels", "reference", "copy floor")}
        fastest = min(peers.values(), key=lambda r: r["median_s"]) if peers else None
        peer_text = fastest["implementation"] if fastest else "none importable"
        peer_ratio = f"{fastest['ratio_to_softmax_kernels']:.1f}x" if fastest else "-"
        lines.append(
            f"| {case} | {rows['softmax_kernels']['ratio_to_floor']:.2f} | {peer_text} | {peer_ratio} "
            f"| {rows['reference']['ratio_to_softmax_kernels']:.1f}x |"
        )
    return "\n".join(lines)


def plot(records: list, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install matplotlib")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the records and machine description here")
    parser.add_argument("--plot", help="write a bar chart (PNG) here")
    args = parser.parse_args()
    cases = benchmarks.QUICK_CASES if args.quick else benchmarks.CASES
    progress = lambda case, name: print(f"  {case.name}: {name}", file=sys.stderr, flush=True)  # noqa: E731
    records = benchmarks.run_suite(cases, repeats=args.repeats, progress=progress)
    machine = machine_description()
    print(json.dumps(machine))
    print(markdown_table(records))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "records": records}, f, indent=1)
    if args.plot:
        plot(records, args.plot)


if __name__ == "__main__":
    main()
