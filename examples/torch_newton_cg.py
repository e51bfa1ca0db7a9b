"""Newton-CG for a linear softmax classifier in PyTorch, with softmax_kernels.torch.cross_entropy.

The loss is ``cross_entropy(X @ W.T + b, y) + alpha/2 |W|^2``. Each Newton step solves
H p = -g by conjugate gradients, where every Hessian-vector product is a double backward
through the loss (``torch.autograd.grad`` with ``create_graph=True``): with our operator the
kernels compute it, with ``torch.nn.functional.cross_entropy`` torch's autograd does. Both runs
start from zero and take the same steps; the script prints the final objective, gradient norm
and time of each.

Run:  python examples/torch_newton_cg.py [--rows N] [--features D] [--classes K] [--threads T]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import softmax_kernels.torch as skt


def make_problem(n_rows, n_features, n_classes, seed=0):
    """Gaussian features and labels drawn from a softmax of linear scores of them (float64)."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n_rows, n_features, generator=generator, dtype=torch.float64)
    scores = 2.0 * X @ torch.randn(n_features, n_classes, generator=generator, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(torch.rand(scores.shape, generator=generator, dtype=torch.float64)))
    return X, torch.argmax(scores + gumbel, dim=1)


def objective(loss_function, X, y, parameters, alpha):
    W, b = parameters
    return loss_function(X @ W.T + b, y) + 0.5 * alpha * (W * W).sum()


def conjugate_gradient(hessian_vector_product, g, iterations, tolerance):
    """Approximately solve H p = -g (H symmetric positive definite)."""
    p = [torch.zeros_like(part) for part in g]
    r = [-part for part in g]
    d = [part.clone() for part in r]
    rr = sum((part * part).sum() for part in r)
    for _ in range(iterations):
        Hd = hessian_vector_product(d)
        step = rr / sum((a * b).sum() for a, b in zip(d, Hd))
        p = [a + step * b for a, b in zip(p, d)]
        r = [a - step * b for a, b in zip(r, Hd)]
        rr_new = sum((part * part).sum() for part in r)
        if rr_new.sqrt() <= tolerance:
            break
        d = [a + (rr_new / rr) * b for a, b in zip(r, d)]
        rr = rr_new
    return p


def newton_cg(loss_function, X, y, n_classes, alpha=1e-3, steps=8, cg_iterations=30):
    """Newton steps with CG-solved directions; returns the final objective and gradient norm."""
    parameters = [torch.zeros(n_classes, X.shape[1], dtype=X.dtype, requires_grad=True),
                  torch.zeros(n_classes, dtype=X.dtype, requires_grad=True)]
    for _ in range(steps):
        value = objective(loss_function, X, y, parameters, alpha)
        g = torch.autograd.grad(value, parameters, create_graph=True)

        def hessian_vector_product(v):
            return torch.autograd.grad(g, parameters, grad_outputs=v, retain_graph=True)

        direction = conjugate_gradient(hessian_vector_product, [part.detach() for part in g], cg_iterations,
                                       tolerance=1e-12)
        with torch.no_grad():
            for parameter, step in zip(parameters, direction):
                parameter += step
    value = objective(loss_function, X, y, parameters, alpha)
    g = torch.autograd.grad(value, parameters)
    return float(value.detach()), float(torch.sqrt(sum((part * part).sum() for part in g)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y = make_problem(args.rows, args.features, args.classes)
    results = {}
    for name, loss_function in (("torch.nn.functional.cross_entropy", F.cross_entropy),
                                ("softmax_kernels.torch.cross_entropy", skt.cross_entropy)):
        start = time.perf_counter()
        value, gradient_norm = newton_cg(loss_function, X, y, args.classes)
        results[name] = (value, gradient_norm, time.perf_counter() - start)
        print(f"{name:38s} objective {value:.15f}  |gradient| {gradient_norm:.2e}  "
              f"{results[name][2]:.2f} s")
    return results


if __name__ == "__main__":
    main()
