"""How far the copy-floor goals are from the kernels' own arithmetic.

    python bench/compute_bound.py [--quick] [--repeats R] [--rounds N] [--json FILE]

For each case of the performance goals (single thread), prints the memory floor
(``np.copyto`` of the bytes the case must touch, at full size), our time at full
size, and our time on a slice of the same batch small enough to stay in the
caches (about 4 MB touched, the last-level cache of any current x86 CPU holds
it), scaled up to the full row count. The cached time is the arithmetic alone,
with no wait for memory; when it is already above 1.5 times the floor, no
amount of prefetching can bring the full-size call to the goal. Each figure is
the median over rounds that time the three in turn (the machine's speed drifts
between runs, so only the ratios within one run mean much).
"""

import argparse
import json
import statistics

import softmax_kernels as sk
from softmax_kernels.benchmarks import Case, _copy_floor, _ours, bytes_touched, machine_description, make_inputs
from softmax_kernels.benchmarks import median_time, select_cases

CACHED_BYTES = 4 << 20
# The per-row operations, whose floors this script compares.
ROW_OPERATIONS = ("softmax", "log_softmax", "loss_gradient", "hessian", "hessian_vector_product")


def cached_case(case: Case) -> Case:
    """The same operation and K on as many rows as touch about CACHED_BYTES."""
    per_row = bytes_touched(case) / case.n_rows
    return Case(case.operation, case.dtype, max(1, min(case.n_rows, int(CACHED_BYTES // per_row))), case.n_classes)


def measure(case: Case, repeats: int, rounds: int) -> dict:
    small = cached_case(case)
    functions = {
        "floor": _copy_floor(case, make_inputs(case)),
        "full": _ours(case, make_inputs(case), sk),
        "cached": _ours(small, make_inputs(small), sk),
    }
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            times[name].append(median_time(function, repeats=repeats))
    result = {name: statistics.median(values) for name, values in times.items()}
    result["cached"] *= case.n_rows / small.n_rows
    return {"case": case.name, "cached_rows": small.n_rows, **{f"{k}_s": v for k, v in result.items()},
            "full_over_floor": result["full"] / result["floor"],
            "cached_over_floor": result["cached"] / result["floor"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small cases, as a smoke test")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rows = []
    print(f"{'case':42} {'floor ms':>9} {'full ms':>9} {'cached ms':>10} {'full/floor':>11} {'cached/floor':>13}")
    for case in select_cases(quick=args.quick, operations=ROW_OPERATIONS):
        row = measure(case, args.repeats, args.rounds)
        rows.append(row)
        print(f"{row['case']:42} {1e3 * row['floor_s']:9.2f} {1e3 * row['full_s']:9.2f} {1e3 * row['cached_s']:10.2f}"
              f" {row['full_over_floor']:11.2f} {row['cached_over_floor']:13.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_description(), "config": sk.show_config(), "cases": rows}, f, indent=1)


if __name__ == "__main__":
    main()
