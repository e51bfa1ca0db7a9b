"""OpenMP thread scaling of loss_gradient on 1M x 100 logits (float32 and float64).

    python bench/thread_scaling.py [--rows N] [--classes K] [--json FILE]

Prints, per thread count up to the machine's cores, the median time and the
parallel efficiency t(1) / (n t(n)). Scaling needs a machine with that many
physical cores; on a 2-vCPU box the numbers say nothing.
"""

import argparse
import json
import os
import platform

import numpy as np

import softmax_kernels as sk
from softmax_kernels.benchmarks import median_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= cores]
    rng = np.random.default_rng(0)
    results = {"machine": platform.processor() or platform.machine(), "cores": cores,
               "config": sk.show_config(), "shape": [args.rows, args.classes], "runs": []}
    for dtype in ("float32", "float64"):
        z = (3 * rng.standard_normal((args.rows, args.classes))).astype(dtype)
        y = rng.integers(0, args.classes, args.rows)
        loss, grad = np.empty(args.rows, dtype), np.empty_like(z)
        copy = np.empty_like(z)
        floor = median_time(lambda: np.copyto(copy, z), repeats=args.repeats)
        base = None
        for n in counts:
            seconds = median_time(
                lambda: sk.loss_gradient(z, y, loss_out=loss, grad_out=grad, num_threads=n), repeats=args.repeats
            )
            base = base or seconds
            run = {"dtype": dtype, "threads": n, "median_s": seconds, "efficiency": base / (n * seconds),
                   "ratio_to_single_thread_copy": seconds / floor}
            results["runs"].append(run)
            print(f"{dtype} threads={n:2d} {seconds * 1e3:8.2f} ms  efficiency {run['efficiency']:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
