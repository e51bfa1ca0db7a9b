"""softmax_kernels in PyTorch: ``cross_entropy`` as a real operator, and curvature as tensors.

``cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
label_smoothing=0.0)`` has the signature, shapes and semantics of
``torch.nn.functional.cross_entropy`` (class axis 1; input (C,), (N, C) or (N, C, d1, ...);
class-index or class-probability targets; torch's weighted mean), with the package's
accuracy: a confident row's loss keeps its digits instead of rounding to 0.

It is built from operators registered with ``torch.library`` (``softmax_kernels::*``), each
with a fake (meta) implementation and autograd, so it runs under
``torch.compile(fullgraph=True)`` without graph breaks and under ``torch.func.grad``:

* forward, when a gradient will be needed: loss and gradient in one pass of the kernels
  (``loss_gradient``), the gradient kept for the backward, which only scales it (for the usual
  ``loss.backward()`` of a reduced loss, whose incoming gradient is 1, it returns the kept
  gradient itself, without a copy: modifying ``x.grad`` in place and then calling backward again
  through the same retained graph raises autograd's in-place error);
* forward otherwise: the loss alone;
* double backward (``create_graph=True``, ``torch.autograd.functional.hvp``, Newton-CG,
  influence functions): the kernels' Hessian-vector product.

Zero copies where memory allows: the kernels read the tensors' memory through NumPy; an
(N, C, d1, ...) input is laid out with the class axis last first (free when it already is in
memory). The kernels run on ``torch.get_num_threads()`` threads: ``torch.set_num_threads``
does not reach the kernels' OpenMP runtime (torch ships its own), so each call passes the count
on. Where the kernels do not apply, ``cross_entropy`` calls torch's own ``cross_entropy``
instead, by design and documented: tensors not on the CPU, dtypes other than float32/float64,
and targets or class weights that require a gradient (whose derivatives the kernels do not
compute).

``loss_gradient_hessian`` and ``hessian`` return the per-element Hessians as tensors (packed or
full), with the class dimensions last. Install with ``pip install "softmax_kernels[torch]"``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

try:
    import torch
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError('softmax_kernels.torch needs PyTorch: pip install "softmax_kernels[torch]"') from _error

import softmax_kernels as _sk

__all__ = ["cross_entropy", "loss_gradient_hessian", "hessian"]

Tensor = torch.Tensor


# ---- the operators: logits (M, C) contiguous, targets (M,) class indices or (M, C) probabilities ----


def _options(target: Tensor, weight: Optional[Tensor], ignore_index: int, label_smoothing: float) -> dict:
    """The kernels' options for torch's: ignore_index applies to class indices only; the
    kernels use as many threads as torch's intra-op pool (``torch.set_num_threads``)."""
    options = {"label_smoothing": label_smoothing, "num_threads": torch.get_num_threads()}
    if weight is not None:
        options["class_weight"] = weight.detach().numpy()
    if not target.is_floating_point():
        options["ignore_index"] = ignore_index
    return options


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().numpy()


def _loss_shape(logits: Tensor, reduction: str) -> tuple:
    return (logits.shape[0],) if reduction == "none" else ()


@torch.library.custom_op("softmax_kernels::cross_entropy", mutates_args=(), device_types="cpu")
def _loss_op(logits: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
             label_smoothing: float) -> Tensor:
    loss = _sk.loss(_numpy(logits), _numpy(target), reduction=reduction,
                    **_options(target, weight, ignore_index, label_smoothing))
    return torch.from_numpy(np.asarray(loss))


@_loss_op.register_fake
def _(logits, target, weight, ignore_index, reduction, label_smoothing):
    return logits.new_empty(_loss_shape(logits, reduction))


@torch.library.custom_op("softmax_kernels::cross_entropy_with_gradient", mutates_args=(), device_types="cpu")
def _loss_gradient_op(logits: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
                      label_smoothing: float) -> tuple[Tensor, Tensor]:
    loss, gradient = _sk.loss_gradient(_numpy(logits), _numpy(target), reduction=reduction,
                                       **_options(target, weight, ignore_index, label_smoothing))
    return torch.from_numpy(np.asarray(loss)), torch.from_numpy(gradient)


@_loss_gradient_op.register_fake
def _(logits, target, weight, ignore_index, reduction, label_smoothing):
    return logits.new_empty(_loss_shape(logits, reduction)), torch.empty_like(logits)


@torch.library.custom_op("softmax_kernels::cross_entropy_hvp", mutates_args=(), device_types="cpu")
def _hvp_op(v: Tensor, logits: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
            label_smoothing: float) -> Tensor:
    """H v of the (reduced) loss; per row for reduction "none"."""
    product = _sk.hessian_vector_product(_numpy(logits), _numpy(v).astype(logits.numpy().dtype, copy=False),
                                         _numpy(target), reduction=reduction,
                                         **_options(target, weight, ignore_index, label_smoothing))
    return torch.from_numpy(product)


@_hvp_op.register_fake
def _(v, logits, target, weight, ignore_index, reduction, label_smoothing):
    return torch.empty_like(logits)


# ---- autograd: in torch.autograd.Function classes (with setup_context, so that torch.func's
# transforms can use them), and registered on the operators themselves with the same functions.


def _save_inputs(ctx, inputs, output):
    logits, target, weight, ignore_index, reduction, label_smoothing = inputs
    ctx.save_for_backward(logits, target, weight, output[1])
    ctx.options = (ignore_index, reduction, label_smoothing)
    ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not zeros


def _scaled(gradient: Tensor, grad_loss: Tensor, reduction: str) -> Tensor:
    """The gradient of the loss times the incoming gradient (per row for "none"). The usual
    ``loss.backward()`` of a reduced loss passes 1: outside tracing (torch.compile) and without a
    graph of higher derivatives, the saved gradient is then returned as it is (no copy; autograd
    checks that it is not modified before another backward through the same graph)."""
    if reduction != "none":
        tracing = type(grad_loss) is not torch.Tensor or torch.compiler.is_compiling()  # fake or functional
        if not tracing and not torch.is_grad_enabled() and grad_loss.numel() == 1 and float(grad_loss) == 1.0:
            return gradient
        return gradient * grad_loss
    return gradient * grad_loss.unsqueeze(-1)


def _loss_gradient_backward(ctx, grad_loss, grad_gradient):
    """d/dz of <grad_loss, loss> + <grad_gradient, gradient>: the saved gradient scaled, and
    where the gradient output is itself differentiated (double backward), H grad_gradient."""
    logits, target, weight, gradient = ctx.saved_tensors
    result = None
    if grad_loss is not None:
        result = _scaled(gradient, grad_loss, ctx.options[1])
    if grad_gradient is not None:
        product = _HessianVectorProduct.apply(grad_gradient, logits, target, weight, *ctx.options)
        result = product if result is None else result + product
    return result, None, None, None, None, None


def _row_coefficients(logits: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
                      label_smoothing: float) -> Tensor:
    """c = sum_k a_k of each row, divided by torch's "mean" denominator (for the third derivative)."""
    n_classes = logits.shape[1]
    class_weight = torch.ones(n_classes, dtype=logits.dtype) if weight is None else weight.to(logits.dtype)
    if target.is_floating_point():
        c = ((1 - label_smoothing) * target.to(logits.dtype) + label_smoothing / n_classes) @ class_weight
        denominator = logits.new_tensor(float(logits.shape[0]))
    else:
        kept = target != ignore_index
        label_weight = torch.where(kept, class_weight[torch.where(kept, target, 0)], 0)
        c = label_weight * (1 - label_smoothing) + kept * (label_smoothing / n_classes) * class_weight.sum()
        denominator = label_weight.sum()
    return c / denominator if reduction == "mean" else c


def _save_hvp_inputs(ctx, inputs, output):
    v, logits, target, weight, ignore_index, reduction, label_smoothing = inputs
    ctx.save_for_backward(v, logits, target, weight)
    ctx.options = (ignore_index, reduction, label_smoothing)
    ctx.set_materialize_grads(False)


def _hvp_backward(ctx, grad_product):
    """H is symmetric, so d<w, H v>/dv = H w (the kernels); d<w, H v>/dz, a third derivative, is
    c s_j [w_j v_j - s.(w v) - (w_j - s.w)(s.v) - (s.w)(v_j - s.v)], in plain torch arithmetic."""
    if grad_product is None:
        return (None,) * 7
    v, logits, target, weight = ctx.saved_tensors
    d_v = _HessianVectorProduct.apply(grad_product, logits, target, weight, *ctx.options)
    s = torch.softmax(logits, dim=1)
    w = grad_product
    s_w, s_v, s_wv = (s * w).sum(1, keepdim=True), (s * v).sum(1, keepdim=True), (s * w * v).sum(1, keepdim=True)
    c = _row_coefficients(logits, target, weight, *ctx.options).unsqueeze(1)
    d_logits = c * s * (w * v - s_wv - (w - s_w) * s_v - s_w * (v - s_v))
    return d_v, d_logits, None, None, None, None, None


class _LossGradient(torch.autograd.Function):
    """(loss, gradient) of the rows, differentiable any number of times."""

    @staticmethod
    def forward(logits, target, weight, ignore_index, reduction, label_smoothing):
        return _loss_gradient_op(logits, target, weight, ignore_index, reduction, label_smoothing)

    setup_context = staticmethod(_save_inputs)
    backward = staticmethod(_loss_gradient_backward)


class _HessianVectorProduct(torch.autograd.Function):
    @staticmethod
    def forward(v, logits, target, weight, ignore_index, reduction, label_smoothing):
        return _hvp_op(v, logits, target, weight, ignore_index, reduction, label_smoothing)

    setup_context = staticmethod(_save_hvp_inputs)
    backward = staticmethod(_hvp_backward)


def _loss_backward(ctx, grad_loss):
    if grad_loss is None:
        return None, None, None, None, None, None
    logits, target, weight = ctx.saved_tensors
    _, gradient = _LossGradient.apply(logits, target, weight, *ctx.options)
    return _scaled(gradient, grad_loss, ctx.options[1]), None, None, None, None, None


def _save_loss_inputs(ctx, inputs, output):
    logits, target, weight, ignore_index, reduction, label_smoothing = inputs
    ctx.save_for_backward(logits, target, weight)
    ctx.options = (ignore_index, reduction, label_smoothing)
    ctx.set_materialize_grads(False)


_loss_op.register_autograd(_loss_backward, setup_context=_save_loss_inputs)
_loss_gradient_op.register_autograd(_loss_gradient_backward, setup_context=_save_inputs)
_hvp_op.register_autograd(_hvp_backward, setup_context=_save_hvp_inputs)


# ---- torch's layout -------------------------------------------------------------------------------


def _torch_fallback_reason(input: Tensor, target: Tensor, weight: Optional[Tensor]) -> str | None:
    """Why the kernels do not apply to these tensors (torch's own function then runs), or None."""
    if input.device.type != "cpu" or target.device.type != "cpu":
        return "a tensor is not on the CPU"
    if input.dtype not in (torch.float32, torch.float64):
        return f"input has dtype {input.dtype}"
    if target.is_floating_point() and target.requires_grad:
        return "target requires a gradient"
    if weight is not None and weight.requires_grad:
        return "weight requires a gradient"
    return None


def _rows(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, tuple]:
    """(logits (M, C) contiguous, targets (M,) or (M, C), batch shape) for torch's layouts."""
    if input.dim() == 0:
        raise ValueError("input: expected shape (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    n_classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    logits = input.unsqueeze(0) if input.dim() == 1 else input.movedim(1, -1)
    batch_shape = tuple(logits.shape[:-1]) if input.dim() > 1 else ()
    soft = target.is_floating_point()
    if soft:
        if target.shape != input.shape:
            raise ValueError(f"target: expected class probabilities of input's shape {tuple(input.shape)} "
                             f"or class indices of shape {_index_shape(input)}, got {tuple(target.shape)}")
        rows = (target.unsqueeze(0) if target.dim() == 1 else target.movedim(1, -1)).reshape(-1, n_classes)
    else:
        if tuple(target.shape) != _index_shape(input):
            raise ValueError(f"target: expected class indices of shape {_index_shape(input)} or class "
                             f"probabilities of input's shape {tuple(input.shape)}, got {tuple(target.shape)}")
        rows = target.reshape(-1)
    return logits.reshape(-1, n_classes).contiguous(), rows.contiguous(), batch_shape


def _index_shape(input: Tensor) -> tuple:
    return () if input.dim() == 1 else (input.shape[0],) + tuple(input.shape[2:])


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """``torch.nn.functional.cross_entropy`` with softmax_kernels' kernels (see the module docstring).

    The derivatives are the kernels' too: the backward scales the gradient computed with the
    loss, and the double backward is the kernels' Hessian-vector product.
    """
    if _torch_fallback_reason(input, target, weight) is not None:
        return torch.nn.functional.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
                                                 reduction=reduction, label_smoothing=label_smoothing)
    logits, targets, batch_shape = _rows(input, target)
    if weight is not None:
        weight = weight.detach().to(input.dtype).contiguous()
    arguments = (logits, targets, weight, int(ignore_index), reduction, float(label_smoothing))
    if torch.is_grad_enabled() and input.requires_grad:
        loss = _LossGradient.apply(*arguments)[0]
    else:
        loss = _loss_op(*arguments)
    return loss.reshape(batch_shape) if reduction == "none" else loss


# ---- curvature as tensors -------------------------------------------------------------------------


def _curvature_arguments(input, target, weight, ignore_index, label_smoothing):
    """(logits (M, C), targets or None, batch shape, the kernels' options) of a curvature call."""
    indices = torch.zeros(_index_shape(input), dtype=torch.long) if target is None else target
    reason = _torch_fallback_reason(input, indices, weight)
    if reason is not None:
        raise TypeError(f"input: softmax_kernels.torch computes curvature of CPU float32/float64 tensors only; "
                        f"{reason}")
    logits, targets, batch_shape = _rows(input, indices)
    if target is None:
        return _numpy(logits), None, batch_shape, {"num_threads": torch.get_num_threads()}
    return _numpy(logits), _numpy(targets), batch_shape, _options(targets, weight, ignore_index, label_smoothing)


def _to_torch_layout(gradient: np.ndarray, input: Tensor, batch_shape: tuple) -> Tensor:
    """A (M, C) gradient back in input's layout (class axis 1)."""
    tensor = torch.from_numpy(gradient).reshape(batch_shape + (gradient.shape[-1],))
    return tensor.squeeze(0) if input.dim() == 1 else tensor.movedim(-1, 1)


def loss_gradient_hessian(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, ignore_index: int = -100,
                          reduction: str = "mean", label_smoothing: float = 0.0, layout: str = "packed_upper"):
    """(loss, gradient of input's shape, Hessians) of cross_entropy, as tensors without autograd.

    The Hessians have the shape of the class-index target plus (C(C+1)/2,) (packed) or (C, C)
    ("full"), in the layouts of ``softmax_kernels.hessian``; they are those of the reduced loss.
    """
    logits, targets, batch_shape, options = _curvature_arguments(input, target, weight, ignore_index,
                                                                 label_smoothing)
    loss, gradient, hessian_rows = _sk.loss_gradient_hessian(logits, targets, reduction=reduction, layout=layout,
                                                             **options)
    loss = torch.from_numpy(np.asarray(loss))
    loss = loss.reshape(batch_shape) if reduction == "none" else loss
    hessians = torch.from_numpy(hessian_rows).reshape(batch_shape + hessian_rows.shape[1:])
    return loss, _to_torch_layout(gradient, input, batch_shape), hessians


def hessian(input: Tensor, target: Optional[Tensor] = None, weight: Optional[Tensor] = None, ignore_index: int = -100,
            reduction: str = "mean", label_smoothing: float = 0.0, layout: str = "packed_upper") -> Tensor:
    """The Hessians of cross_entropy (target=None: of log-sum-exp, c = 1 per element), as in
    `loss_gradient_hessian`."""
    logits, targets, batch_shape, options = _curvature_arguments(input, target, weight, ignore_index,
                                                                 label_smoothing)
    hessian_rows = _sk.hessian(logits, targets, reduction=reduction, layout=layout, **options)
    return torch.from_numpy(hessian_rows).reshape(batch_shape + hessian_rows.shape[1:])
