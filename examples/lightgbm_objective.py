"""LightGBM with the softmax_kernels multiclass objective and exact log-loss metric.

Trains three boosters on the same synthetic data, all from margins 0: LightGBM's built-in
``multiclass`` (with ``boost_from_average=False``; by default it starts from the log class
frequencies), ours with LightGBM's Hessian factor (h = K/(K - 1) s (1 - s): the same trees)
and ours with the exact Hessian diagonal s (1 - s) (larger steps). Prints each one's exact log
loss on held-out rows, computed by ``softmax_kernels.loss`` on the raw margins, and for ours
also the custom metric's value as LightGBM recorded it in the last round.

Run:  python examples/lightgbm_objective.py [--rows N] [--classes K] [--rounds R] [--threads T]
"""

from __future__ import annotations

import argparse

import lightgbm
import numpy as np

import softmax_kernels as sk
import softmax_kernels.lightgbm as skl


def make_problem(n_rows, n_classes, n_features=8, seed=0):
    """Gaussian features and labels drawn from a softmax of linear scores of them."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features))
    directions = rng.standard_normal((n_features, n_classes))
    scores = 1.5 * (X @ directions)
    y = np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)  # a draw from softmax(scores)
    return X, y


def held_out_losses(params, train_set, X_valid, y_valid, rounds, use_our_metric):
    """Train a booster; the exact log loss of its held-out margins, and the last value our
    metric recorded on them (None for the built-in objective)."""
    valid_set = lightgbm.Dataset(X_valid, label=y_valid, reference=train_set)
    history = {}
    booster = lightgbm.train(params, train_set, rounds, valid_sets=[valid_set], valid_names=["valid"],
                             feval=skl.multiclass_metric() if use_our_metric else None,
                             callbacks=[lightgbm.record_evaluation(history)])
    loss = float(sk.loss(booster.predict(X_valid, raw_score=True), y_valid, reduction="mean"))
    return loss, history["valid"]["exact_mlogloss"][-1] if use_our_metric else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    X, y = make_problem(args.rows, args.classes)
    n_train = args.rows * 3 // 4
    params = {"num_class": args.classes, "num_threads": args.threads, "num_leaves": 15, "learning_rate": 0.2,
              "deterministic": True, "force_row_wise": True, "seed": 0, "verbose": -1, "metric": "None"}
    objectives = {
        "multiclass": dict(params, objective="multiclass", boost_from_average=False),
        "softmax_kernels, hessian='lightgbm'": dict(
            params, objective=skl.multiclass_objective(hessian="lightgbm", num_threads=args.threads)),
        "softmax_kernels, hessian='exact'": dict(params, objective=skl.multiclass_objective(num_threads=args.threads)),
    }
    print(f"{args.rows} rows ({n_train} for training), {args.classes} classes, {args.rounds} rounds")
    print(f"{'objective':38s} {'held-out log loss':>18s} {'exact_mlogloss recorded':>24s}")
    results = {}
    for name, objective_params in objectives.items():
        train_set = lightgbm.Dataset(X[:n_train], label=y[:n_train])
        loss, recorded = held_out_losses(objective_params, train_set, X[n_train:], y[n_train:], args.rounds,
                                         use_our_metric=name != "multiclass")
        results[name] = loss
        print(f"{name:38s} {loss:18.10f} {'' if recorded is None else f'{recorded:.10f}':>24s}")
    return results


if __name__ == "__main__":
    main()
