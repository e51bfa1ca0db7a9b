"""How far the performance goals are from the kernels' own arithmetic.

    python bench/compute_bound.py [--quick] [--repeats R] [--rounds N] [--json FILE]

For each per-row case of the performance goals (single thread), prints our time
at full size and on a slice of the same batch small enough to stay in the caches
(about 4 MB touched, the last-level cache of any current x86 CPU holds it),
scaled up to the full row count, next to two floors taken the same two ways:
the memory floor (``np.copyto`` of the bytes the case must touch, at full size)
and the compute floor (``np.exp`` over the same values, at full size and on the
slice). The cached times are the arithmetic alone, with no wait for memory:
where ours over the floor is already above a goal in cache, no prefetching can
bring the full-size call to it. A last table gives loss_gradient over softmax on
the same logits, at full size and in cache. Each figure is the median over
rounds that time the cases' functions in turn (the machine's speed drifts
between runs, so only the ratios within one run mean much).
"""

import argparse
import json
import statistics

import softmax_kernels as sk
from softmax_kernels.benchmarks import Case, _copy_floor, _exp_floor, _ours, bytes_touched, machine_description
from softmax_kernels.benchmarks import make_inputs
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
    inputs, small_inputs = make_inputs(case), make_inputs(small)
    functions = {
        "floor": _copy_floor(case, inputs),
        "exp": _exp_floor(inputs),
        "exp_cached": _exp_floor(small_inputs),
        "full": _ours(case, inputs, sk),
        "cached": _ours(small, small_inputs, sk),
    }
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            times[name].append(median_time(function, repeats=repeats))
    result = {name: statistics.median(values) for name, values in times.items()}
    for name in ("exp_cached", "cached"):
        result[name] *= case.n_rows / small.n_rows
    return {"case": case.name, "operation": case.operation, "dtype": case.dtype, "shape": [case.n_rows, case.n_classes],
            "cached_rows": small.n_rows, **{f"{k}_s": v for k, v in result.items()},
            "full_over_floor": result["full"] / result["floor"],
            "cached_over_floor": result["cached"] / result["floor"],
            "full_over_exp": result["full"] / result["exp"],
            "cached_over_exp": result["cached"] / result["exp_cached"]}


def print_labels_table(rows: list) -> None:
    """loss_gradient over softmax on the same logits, full size and in cache (the goal: labels
    come for free)."""
    softmax = {(row["dtype"], tuple(row["shape"])): row for row in rows if row["operation"] == "softmax"}
    pairs = [(row, softmax[(row["dtype"], tuple(row["shape"]))]) for row in rows
             if row["operation"] == "loss_gradient" and (row["dtype"], tuple(row["shape"])) in softmax]
    if pairs:
        print(f"\n{'loss_gradient / softmax':42} {'full':>6} {'cached':>7}")
    for labels, plain in pairs:
        print(f"{labels['case']:42} {labels['full_s'] / plain['full_s']:6.2f} "
              f"{labels['cached_s'] / plain['cached_s']:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small cases, as a smoke test")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rows = []
    print(f"{'case':42} {'floor ms':>9} {'full ms':>9} {'cached ms':>10} {'full/floor':>11} {'cached/floor':>13}"
          f" {'full/exp':>9} {'cached/exp':>11}")
    for case in select_cases(quick=args.quick, operations=ROW_OPERATIONS):
        row = measure(case, args.repeats, args.rounds)
        rows.append(row)
        print(f"{row['case']:42} {1e3 * row['floor_s']:9.2f} {1e3 * row['full_s']:9.2f} {1e3 * row['cached_s']:10.2f}"
              f" {row['full_over_floor']:11.2f} {row['cached_over_floor']:13.2f} {row['full_over_exp']:9.2f}"
              f" {row['cached_over_exp']:11.2f}", flush=True)
    print_labels_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_description(), "config": sk.show_config(), "cases": rows}, f, indent=1)


if __name__ == "__main__":
    main()
