# Type stubs for softmax_kernels. The public functions are built at import by
# _api.build_public_api for the chosen backend; both backends have the same
# signatures, written once in reference.pyi and re-exported here.

from . import reference as reference
from .reference import gradient as gradient
from .reference import hessian as hessian
from .reference import gradient_hessian_diagonal as gradient_hessian_diagonal
from .reference import hessian_diagonal as hessian_diagonal
from .reference import hessian_sum as hessian_sum
from .reference import hessian_vector_product as hessian_vector_product
from .reference import log_softmax as log_softmax
from .reference import loss as loss
from .reference import loss_gradient as loss_gradient
from .reference import loss_gradient_hessian as loss_gradient_hessian
from .reference import pack as pack
from .reference import softmax as softmax
from .reference import unpack as unpack

__all__ = [
    "softmax",
    "log_softmax",
    "loss",
    "gradient",
    "loss_gradient",
    "hessian",
    "loss_gradient_hessian",
    "hessian_vector_product",
    "hessian_diagonal",
    "gradient_hessian_diagonal",
    "hessian_sum",
    "pack",
    "unpack",
    "show_config",
    "reference",
    "__version__",
]

__version__: str
# Which backend the public functions use: "compiled" or "numpy" (SOFTMAX_KERNELS_BACKEND).
BACKEND: str

def show_config() -> dict[str, object]: ...
