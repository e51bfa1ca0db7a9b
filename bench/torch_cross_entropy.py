#!/usr/bin/env python
"""softmax_kernels.torch.cross_entropy against torch.nn.functional.cross_entropy: forward and
backward, side by side in one process, medians of repeated calls.

    python bench/torch_cross_entropy.py [--threads 1 all] [--repeats 7] [--quick] [--json FILE]

Each case times ``loss = f(x, y); loss.backward()`` on the same tensors (a fresh leaf each call),
for x of N x K float32 and float64 and class-index targets, with torch's threads and the
kernels' OpenMP threads both set to the given count ("all": the machine's cores).
"""

from __future__ import annotations

import argparse
import json
import os

import torch

import softmax_kernels as sk
import softmax_kernels.torch as skt
from softmax_kernels.benchmarks import median_time

SHAPES = [(1_000_000, 10), (100_000, 100), (10_000, 1000)]
QUICK_SHAPES = [(20_000, 10), (2_000, 100), (200, 1000)]


def forward_backward(loss_function, x, y):
    def run():
        leaf = x.detach().requires_grad_()
        loss_function(leaf, y).backward()

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["1", "all"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    records = []
    print("| threads | case | torch (ms) | softmax_kernels (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        count = os.cpu_count() if threads == "all" else int(threads)
        torch.set_num_threads(count)
        for n_rows, n_classes in QUICK_SHAPES if args.quick else SHAPES:
            for dtype in (torch.float32, torch.float64):
                generator = torch.Generator().manual_seed(0)
                x = 3 * torch.randn(n_rows, n_classes, dtype=dtype, generator=generator)
                y = torch.randint(0, n_classes, (n_rows,), generator=generator)
                theirs = median_time(forward_backward(torch.nn.functional.cross_entropy, x, y),
                                     repeats=args.repeats, min_time=0)
                ours = median_time(forward_backward(skt.cross_entropy, x, y), repeats=args.repeats, min_time=0)
                case = f"{n_rows}x{n_classes} {str(dtype).replace('torch.', '')}"
                print(f"| {count} | {case} | {theirs * 1e3:.2f} | {ours * 1e3:.2f} | {theirs / ours:.1f}x |")
                records.append({"threads": count, "case": case, "torch_s": theirs, "softmax_kernels_s": ours})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": sk.show_config(), "torch": torch.__version__, "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
