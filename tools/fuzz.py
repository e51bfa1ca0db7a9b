#!/usr/bin/env python
"""Fuzz the public API for a given time: random valid and invalid calls, as in tests/test_fuzz.py.

    python tools/fuzz.py --seconds 600            # ten minutes, fresh random seeds
    python tools/fuzz.py --seconds 60 --seed 3    # reproducible sequence of batches
    python tools/fuzz.py --replay valid "{'function': 'loss', ...}"   # rerun one spec

The strategies and checks live in tests/fuzz_valid_calls.py and tests/fuzz_invalid_calls.py
(one source of truth);
this script runs them batch after batch with new seeds until the time is up,
prints how many calls were made, and on the first failure prints hypothesis's
shrunk example and a one-line reproducer, exiting with status 1.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

import fuzz_invalid_calls  # noqa: E402
import fuzz_valid_calls  # noqa: E402

COUNTS = {"valid": 0, "invalid": 0}
LAST_FAILING = {}


def run_valid(spec):
    COUNTS["valid"] += 1
    try:
        fuzz_valid_calls.check_valid_call(fuzz_valid_calls.build_valid_call(spec))
    except BaseException:
        LAST_FAILING["valid"] = spec  # hypothesis replays the shrunk example last
        raise


def run_invalid(spec):
    COUNTS["invalid"] += 1
    try:
        fuzz_invalid_calls.check_invalid_call(fuzz_invalid_calls.build_invalid_call(spec))
    except BaseException:
        LAST_FAILING["invalid"] = spec
        raise


def batch(kind: str, batch_seed: int, examples: int) -> None:
    strategy = fuzz_valid_calls.valid_specs() if kind == "valid" else fuzz_invalid_calls.invalid_specs()
    body = run_valid if kind == "valid" else run_invalid
    test = seed(batch_seed)(settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                                     suppress_health_check=list(HealthCheck))(given(strategy)(body)))
    test()


def replay(kind: str, spec_text: str) -> int:
    spec = ast.literal_eval(spec_text)
    (run_valid if kind == "valid" else run_invalid)(spec)
    print("passed")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="first batch seed (default: from the clock)")
    parser.add_argument("--examples", type=int, default=200, help="examples per hypothesis batch")
    parser.add_argument("--replay", nargs=2, metavar=("KIND", "SPEC"), help="rerun one spec: KIND is valid|invalid")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(*args.replay)

    import softmax_kernels as sk

    config = sk.show_config()
    print(f"softmax_kernels {config['version']}, backend {config['backend']}, simd {config.get('simd')}, "
          f"threads {config.get('max_threads')}")
    if not fuzz_valid_calls.COMPILED:
        print("compiled backend not in use: checking the reference's invariants and errors only")
    batch_seed = args.seed if args.seed is not None else int(time.time())
    start = time.monotonic()
    batches = 0
    while time.monotonic() - start < args.seconds:
        for kind in ("valid", "invalid"):
            try:
                batch(kind, batch_seed, args.examples)
            except BaseException as exc:  # noqa: BLE001 - report anything, then stop
                if isinstance(exc, KeyboardInterrupt):
                    raise
                traceback.print_exc()
                spec = LAST_FAILING.get(kind)
                print(f"\nFAILED after {COUNTS['valid']} valid and {COUNTS['invalid']} invalid calls "
                      f"({time.monotonic() - start:.0f} s), batch seed {batch_seed} ({kind}).")
                if spec is not None:
                    print("Reproducer:")
                    print(f"  python tools/fuzz.py --replay {kind} \"{spec!r}\"")
                return 1
        batches += 1
        batch_seed += 1
        elapsed = time.monotonic() - start
        print(f"[{elapsed:6.0f} s] {batches} batches, {COUNTS['valid']} valid + {COUNTS['invalid']} invalid calls",
              flush=True)
    elapsed = time.monotonic() - start
    print(f"OK: {COUNTS['valid']} valid and {COUNTS['invalid']} invalid calls in {elapsed:.0f} s, no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
