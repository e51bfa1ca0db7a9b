"""BLAS's threads for the products the package hands to BLAS (the summed Hessian of long rows,
the linear model): limited to a call's ``num_threads`` where threadpoolctl is installed."""

from __future__ import annotations

import contextlib
import functools


@functools.lru_cache(maxsize=1)
def _threadpool_controller():
    """threadpoolctl's view of the loaded thread pools, made once (None without threadpoolctl)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def blas_threads(num_threads):
    """BLAS limited to num_threads where threadpoolctl is installed (else BLAS's own default);
    None leaves it as it is."""
    controller = None if num_threads is None else _threadpool_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=num_threads, user_api="blas"):
        yield
