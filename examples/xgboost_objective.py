"""XGBoost with the softmax_kernels multiclass objective and exact log-loss metric.

Trains three boosters on the same synthetic data, all from margins 0 (``base_score=0``):
XGBoost's built-in ``multi:softprob``, ours with XGBoost's Hessian factor (h = 2 s (1 - s):
the same trees, to float32 rounding) and ours with the exact Hessian diagonal s (1 - s)
(larger steps). Prints each one's exact log loss on held-out rows, computed by
``softmax_kernels.loss`` on the raw margins, and for ours also the custom metric's value as
XGBoost recorded it in the last round (to 6 decimals).

Run:  python examples/xgboost_objective.py [--rows N] [--classes K] [--rounds R] [--threads T]
"""

from __future__ import annotations

import argparse

import numpy as np
import xgboost

import softmax_kernels as sk
import softmax_kernels.xgboost as skx


def make_problem(n_rows, n_classes, n_features=8, seed=0):
    """Gaussian features and labels drawn from a softmax of linear scores of them."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features))
    directions = rng.standard_normal((n_features, n_classes))
    scores = 1.5 * (X @ directions)
    y = np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)  # a draw from softmax(scores)
    return X, y


def held_out_losses(params, train_set, valid_set, rounds, objective=None):
    """Train a booster; the exact log loss of its held-out margins, and the last value our
    metric recorded on them (None for the built-in objective)."""
    metric = skx.multiclass_metric() if objective is not None else None
    history = {}
    booster = xgboost.train(params, train_set, rounds, evals=[(valid_set, "valid")], obj=objective,
                            custom_metric=metric, evals_result=history, verbose_eval=False)
    margins = booster.predict(valid_set, output_margin=True)
    loss = float(sk.loss(margins.astype(np.float64), valid_set.get_label().astype(np.int64), reduction="mean"))
    recorded = history["valid"]["exact_mlogloss"][-1] if objective is not None else None
    return loss, recorded


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    X, y = make_problem(args.rows, args.classes)
    n_train = args.rows * 3 // 4
    train_set = xgboost.DMatrix(X[:n_train], label=y[:n_train], nthread=args.threads)
    valid_set = xgboost.DMatrix(X[n_train:], label=y[n_train:], nthread=args.threads)
    params = {"num_class": args.classes, "nthread": args.threads, "max_depth": 4, "eta": 0.2,
              "tree_method": "hist", "base_score": 0.0, "seed": 0}
    custom = dict(params, disable_default_eval_metric=True)
    objectives = {
        "multi:softprob": None,
        "softmax_kernels, hessian='xgboost'": skx.multiclass_objective(hessian="xgboost", num_threads=args.threads),
        "softmax_kernels, hessian='exact'": skx.multiclass_objective(num_threads=args.threads),
    }
    print(f"{args.rows} rows ({n_train} for training), {args.classes} classes, {args.rounds} rounds")
    print(f"{'objective':38s} {'held-out log loss':>18s} {'exact_mlogloss recorded':>24s}")
    results = {}
    for name, objective in objectives.items():
        objective_params = dict(params, objective="multi:softprob") if objective is None else custom
        loss, recorded = held_out_losses(objective_params, train_set, valid_set, args.rounds, objective)
        results[name] = loss
        print(f"{name:38s} {loss:18.10f} {'' if recorded is None else f'{recorded:.6f}':>24s}")
    return results


if __name__ == "__main__":
    main()
