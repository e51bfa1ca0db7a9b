"""OpenMP thread scaling: loss_gradient on 1M x 100 logits (the goal's case), and more.

    python bench/thread_scaling.py [--cases goal|all] [--repeats R] [--json FILE]

Prints, per case and thread count up to the machine's cores, the median time, the
parallel efficiency t(1) / (n t(n)) and the same for the copy floor: the bytes
the case must read and write, copied with PyTorch's threaded ``copy_`` at the
same thread count (when torch is importable). The copy's efficiency is the
machine's memory-bandwidth ceiling: a kernel that is at the floor cannot scale
better than the copy does. torch brings its own OpenMP runtime, whose idle
threads may spin for a moment after each copy; the two are timed in turn, never
at once. Scaling needs a machine with that many physical cores; on a 2-vCPU box
the numbers say nothing.
"""

import argparse
import json
import os

import numpy as np

import softmax_kernels as sk
from softmax_kernels.benchmarks import Case, _copy_floor, _optional, _ours, machine_description, make_inputs, median_time

GOAL_CASES = [Case("loss_gradient", dtype, 1_000_000, 100) for dtype in ("float32", "float64")]
MORE_CASES = [
    Case(operation, dtype, n_rows, n_classes)
    for operation, n_rows, n_classes in (
        ("loss_gradient", 1_000_000, 10),
        ("hessian_vector_product", 1_000_000, 10),
        ("hessian", 100_000, 10),
    )
    for dtype in ("float32", "float64")
]


def torch_copy(case, inputs, torch, n_threads):
    """The copy floor of `case` done by torch, whose copy_ is split over its threads."""
    if case.operation == "loss_gradient":
        pairs = [(torch.from_numpy(np.empty_like(inputs["z"])), torch.from_numpy(inputs["z"]))]
    elif case.operation == "hessian":
        width = case.n_classes * (case.n_classes + 1) // 2
        src = np.ones((case.n_rows, width), case.dtype)
        pairs = [(torch.from_numpy(np.empty_like(src)), torch.from_numpy(src))]
    else:
        pairs = [(torch.from_numpy(np.empty_like(inputs[k])), torch.from_numpy(inputs[k])) for k in ("z", "v")]
    return lambda: (torch.set_num_threads(n_threads), [dest.copy_(src) for dest, src in pairs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", choices=("goal", "all"), default="goal")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    counts = [n for n in (1, 2, 4, 8, 12, 16, 32, 64) if n <= cores]
    torch = _optional("torch")
    cases = GOAL_CASES + (MORE_CASES if args.cases == "all" else [])
    results = {"machine": machine_description(), "cores": cores, "config": sk.show_config(),
               "omp_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_"))}, "runs": []}
    for case in cases:
        inputs = make_inputs(case)
        floor = median_time(_copy_floor(case, inputs), repeats=args.repeats)
        first = {}
        for n in counts:
            timed = {"softmax_kernels": median_time(_ours(case, inputs, sk, num_threads=n), repeats=args.repeats)}
            if torch is not None:
                timed["torch copy"] = median_time(torch_copy(case, inputs, torch, n), repeats=args.repeats)
            for name, seconds in timed.items():
                first.setdefault(name, seconds)
                run = {"case": case.name, "implementation": name, "threads": n, "median_s": seconds,
                       "efficiency": first[name] / (n * seconds), "ratio_to_single_thread_copy": seconds / floor}
                results["runs"].append(run)
                print(f"{case.name:40s} {name:16s} threads={n:2d} {seconds * 1e3:9.2f} ms  "
                      f"efficiency {run['efficiency']:.2f}  / 1-thread copy {run['ratio_to_single_thread_copy']:.2f}",
                      flush=True)
        make_inputs.cache_clear()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
