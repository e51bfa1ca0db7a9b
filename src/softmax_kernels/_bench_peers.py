"""The peers a benchmark case is compared with: NumPy written the usual way and SciPy (which
every install with the test extra has), and PyTorch, scikit-learn and JAX where importable, all on
one thread. ``adapters(case, inputs)`` returns name -> zero-argument callable."""

from __future__ import annotations

import importlib
import os

import numpy as np

# What ``pip install "softmax_kernels[peers]"`` brings, by the name it is imported as.
OPTIONAL_PEERS = {"torch": "torch", "scipy": "scipy", "sklearn": "scikit-learn", "jax": "jax"}


def optional(module: str):
    try:
        return importlib.import_module(module)
    except Exception:  # a broken optional install is as good as an absent one
        return None


def missing_peers() -> list:
    """The optional peers that cannot be imported here, by their package names."""
    return [package for module, package in OPTIONAL_PEERS.items() if optional(module) is None]


def _numpy_softmax(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """What a NumPy user writes: exp(z - max) / sum, into out."""
    np.subtract(z, z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _numpy_log_softmax(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.subtract(z, z.max(axis=1, keepdims=True), out=out)
    out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
    return out


def _numpy_dense_hessian(z: np.ndarray) -> np.ndarray:
    """What a careful NumPy user writes: a stable softmax, then diag(s) - s s^T per row."""
    s = np.exp(z - z.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    hess = -s[:, :, None] * s[:, None, :]
    idx = np.arange(z.shape[1])
    hess[:, idx, idx] += s
    return hess


def numpy_adapters(case, inputs: dict) -> dict:
    z = inputs["z"]
    if case.operation in ("softmax", "log_softmax"):
        out = np.empty_like(z)
        function = _numpy_softmax if case.operation == "softmax" else _numpy_log_softmax
        return {"numpy": lambda: function(z, out)}
    if case.operation == "hessian":
        return {"numpy dense": lambda: _numpy_dense_hessian(z)}
    return {}


def scipy_adapters(case, inputs: dict) -> dict:
    special = optional("scipy.special")
    if special is None or case.operation not in ("softmax", "log_softmax"):
        return {}
    function = getattr(special, case.operation)
    return {f"scipy.special.{case.operation}": lambda: function(inputs["z"], axis=1)}


def torch_adapters(case, inputs: dict) -> dict:
    torch = optional("torch")
    if torch is None:
        return {}
    torch.set_num_threads(1)
    z = torch.from_numpy(inputs["z"])
    y = torch.from_numpy(inputs["y"])
    if case.operation in ("softmax", "log_softmax"):
        out = torch.empty_like(z)
        function = getattr(torch, case.operation)
        return {f"torch.{case.operation}": lambda: function(z, 1, out=out)}
    if case.operation == "loss_gradient":

        def loss_gradient():
            zz = z.detach().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(zz, y, reduction="none")
            loss.sum().backward()
            return loss, zz.grad

        return {"torch": loss_gradient}
    func = getattr(torch, "func", None)
    if case.operation == "hessian" and func is not None:
        row_hessian = func.vmap(func.hessian(lambda row: torch.logsumexp(row, dim=0)))
        return {"torch.func vmap(hessian)": lambda: row_hessian(z)}
    return {}


def sklearn_adapters(case, inputs: dict) -> dict:
    loss_module = optional("sklearn._loss.loss")
    if loss_module is None or case.operation != "loss_gradient":
        return {}
    loss = loss_module.HalfMultinomialLoss(n_classes=case.n_classes)
    z = inputs["z"]
    y = inputs["y"].astype(z.dtype)
    return {"scikit-learn": lambda: loss.loss_gradient(y_true=y, raw_prediction=z, n_threads=1)}


def jax_adapters(case, inputs: dict) -> dict:
    # XLA's CPU backend runs its own thread pool; one thread, like everything else here
    # (effective when jax is first imported here).
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    jax = optional("jax")
    if jax is None:
        return {}
    # Without 64-bit mode JAX would silently compute the float64 cases in float32; the mode is
    # process-wide, and float32 inputs stay float32 under it.
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    z = jnp.asarray(inputs["z"])
    if z.dtype != inputs["z"].dtype:
        raise RuntimeError(f"JAX holds the {inputs['z'].dtype} logits as {z.dtype}")
    y = jnp.asarray(inputs["y"])
    if case.operation in ("softmax", "log_softmax"):
        function = jax.jit(lambda x: getattr(jax.nn, case.operation)(x, axis=1))
        return {f"jax jit({case.operation})": lambda: jax.block_until_ready(function(z))}
    if case.operation == "loss_gradient":

        def total_loss(zz, labels):
            log_p = jax.nn.log_softmax(zz, axis=1)
            return -jnp.take_along_axis(log_p, labels[:, None], axis=1).sum()

        # The labels are an argument, as in training: captured, XLA would fold them into constants.
        step = jax.jit(jax.value_and_grad(total_loss))
        return {"jax jit(value_and_grad)": lambda: jax.block_until_ready(step(z, y))}
    if case.operation == "hessian":
        row_hessian = jax.jit(jax.vmap(jax.hessian(jax.nn.logsumexp)))
        return {"jax jit(vmap(hessian))": lambda: jax.block_until_ready(row_hessian(z))}
    return {}


def adapters(case, inputs: dict) -> dict:
    found = {}
    for peers in (numpy_adapters, scipy_adapters, torch_adapters, sklearn_adapters, jax_adapters):
        found.update(peers(case, inputs))
    return found
