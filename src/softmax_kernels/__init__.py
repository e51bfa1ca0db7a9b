"""softmax_kernels: softmax cross-entropy loss, gradient, packed Hessian and
Hessian-vector products for batches of logits, fast and accurate to a few ulps.

The backend is chosen at import by ``SOFTMAX_KERNELS_BACKEND``:
``compiled`` (the extension, or fail loudly), ``numpy`` (the reference), or unset
(the extension if importable, else the reference with a warning).
"""

import os as _os
import warnings as _warnings

from . import _api, reference
from ._operations import PUBLIC_NAMES as _PUBLIC_NAMES
from ._api import pack, unpack
from ._version import __version__

__all__ = list(_PUBLIC_NAMES) + ["pack", "unpack", "show_config", "reference", "__version__"]

_BACKEND_VARIABLE = "SOFTMAX_KERNELS_BACKEND"
_requested = _os.environ.get(_BACKEND_VARIABLE, "").strip().lower()
if _requested not in ("", "compiled", "numpy"):
    raise ImportError(f"{_BACKEND_VARIABLE} must be 'compiled', 'numpy' or unset, got {_requested!r}")

try:
    from . import _kernels
except ImportError as _error:
    if _requested == "compiled":
        raise ImportError(
            f"{_BACKEND_VARIABLE}=compiled but the compiled extension softmax_kernels._kernels "
            f"cannot be imported: {_error}"
        ) from _error
    _kernels = None
    if _requested == "":
        _warnings.warn(
            f"softmax_kernels: the compiled extension is unavailable ({_error}); using the slow NumPy "
            f"reference. Set {_BACKEND_VARIABLE}=numpy to silence this warning.",
            RuntimeWarning,
            stacklevel=2,
        )

BACKEND = "numpy" if _requested == "numpy" or _kernels is None else "compiled"

if BACKEND == "compiled":
    globals().update(_api.build_public_api(_kernels.run, __name__))
else:
    globals().update({name: getattr(reference, name) for name in _PUBLIC_NAMES})


def show_config() -> dict:
    """Facts about this installation: version, backend, build and threads.

    Returns a dict with ``version``, ``backend`` ("compiled" or "numpy"),
    ``compiled`` (whether the extension imported), ``openmp`` (built with
    OpenMP), ``max_threads`` (what ``num_threads=None`` uses now) and ``simd``
    (the instruction set the kernels use).
    """
    config = {
        "version": __version__,
        "backend": BACKEND,
        "compiled": _kernels is not None,
        "openmp": False,
        "max_threads": 1,
        "simd": "none",
    }
    if _kernels is not None:
        config.update(_kernels.build_info())
    return config
