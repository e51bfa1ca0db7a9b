"""softmax_kernels.torch: cross_entropy equals torch.nn.functional.cross_entropy for every option,
shape and dtype, in value, gradient and double backward; it keeps the digits of confident rows;
it runs under torch.compile(fullgraph=True) and torch.func.grad; gradcheck and gradgradcheck pass."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
skt = pytest.importorskip("softmax_kernels.torch")

import softmax_kernels as sk  # noqa: E402
from helpers import example_module  # noqa: E402

TOLERANCE = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-11, atol=1e-13)}
# (input shape, class-index target shape): (C,), (N, C), (N, C, d1), (N, C, d1, d2)
SHAPES = [((5,), ()), ((7, 5), (7,)), ((3, 4, 2), (3, 2)), ((2, 3, 2, 3), (2, 2, 3))]
OPTIONS = [
    dict(weight=weight, ignore_index=ignore, label_smoothing=eps, reduction=reduction)
    for weight, ignore, eps, reduction in itertools.product(
        [False, True], [-100, 1], [0.0, 0.15], ["none", "sum", "mean"])
]


def _problem(shape, target_shape, dtype, soft, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    if soft:
        target = torch.softmax(torch.randn(*shape, generator=generator, dtype=dtype), dim=0 if len(shape) == 1 else 1)
    else:
        target = torch.randint(0, n_classes, target_shape, generator=generator)
        if target.dim():
            target.view(-1)[0] = 1  # a row that ignore_index=1 drops
    weight = torch.rand(n_classes, generator=generator, dtype=dtype) + 0.5
    return x, target, weight


def _both(x, target, weight, options):
    kwargs = dict(options, weight=weight if options["weight"] else None)
    if target.is_floating_point():
        kwargs.pop("ignore_index")
    return skt.cross_entropy(x, target, **kwargs), F.cross_entropy(x, target, **kwargs)


@pytest.mark.parametrize("shape, target_shape", SHAPES, ids=lambda s: str(s))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
def test_value_gradient_and_double_backward_match_torch(shape, target_shape, dtype, soft):
    x, target, weight = _problem(shape, target_shape, dtype, soft)
    v = torch.randn(*shape, dtype=dtype)
    for options in OPTIONS:
        if soft and options["ignore_index"] == 1:
            continue
        if not target.dim() and options["ignore_index"] == 1 and options["reduction"] == "mean":
            continue  # a lone ignored element: torch's 0/0 mean, ours NaN too; compared elsewhere
        xx = x.clone().requires_grad_()
        ours, theirs = _both(xx, target, weight, options)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        torch.testing.assert_close(ours, theirs, **TOLERANCE[dtype], msg=str(options))
        (g_ours,) = torch.autograd.grad(ours.sum(), xx, create_graph=True)
        (g_theirs,) = torch.autograd.grad(theirs.sum(), xx, create_graph=True)
        torch.testing.assert_close(g_ours, g_theirs, **TOLERANCE[dtype], msg=str(options))
        (hv_ours,) = torch.autograd.grad((g_ours * v).sum(), xx, retain_graph=True)
        (hv_theirs,) = torch.autograd.grad((g_theirs * v).sum(), xx)
        torch.testing.assert_close(hv_ours, hv_theirs, **TOLERANCE[dtype], msg=str(options))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_confident_rows_keep_their_digits_where_torch_returns_zero(dtype):
    x = torch.tensor([[50.0, 0.0, -3.0]], dtype=dtype, requires_grad=True)
    target = torch.tensor([0])
    ours = skt.cross_entropy(x, target)
    assert float(F.cross_entropy(x, target)) == 0.0
    expected = float(sk.reference.loss(x.detach().numpy().astype(np.float64), np.array([0]), reduction="mean"))
    assert abs(float(ours) - expected) <= 4 * torch.finfo(dtype).eps * expected
    (gradient,) = torch.autograd.grad(ours, x)
    assert gradient[0, 1] > 0  # s_1 = exp(-50) / S, kept; torch's softmax keeps it too, but not the loss


def test_gradcheck_and_gradgradcheck_pass_in_float64():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 3, 1, -100, 2])
    probabilities = torch.softmax(torch.randn(5, 4, dtype=torch.float64, generator=generator), dim=1)
    weight = torch.rand(4, dtype=torch.float64, generator=generator) + 0.5
    for target, options in [(labels, dict(weight=weight, label_smoothing=0.1)), (labels, dict(reduction="none")),
                            (probabilities, dict(reduction="sum"))]:
        assert torch.autograd.gradcheck(lambda x: skt.cross_entropy(x, target, **options), (x,))
        assert torch.autograd.gradgradcheck(lambda x: skt.cross_entropy(x, target, **options), (x,))


def test_hessian_vector_products_and_torch_func_grad_use_the_operator():
    x = torch.randn(6, 5, dtype=torch.float64)
    target = torch.randint(0, 5, (6,))
    v = torch.randn(6, 5, dtype=torch.float64)
    _, ours = torch.autograd.functional.hvp(lambda z: skt.cross_entropy(z, target), x, v)
    _, theirs = torch.autograd.functional.hvp(lambda z: F.cross_entropy(z, target), x, v)
    torch.testing.assert_close(ours, theirs, **TOLERANCE[torch.float64])
    torch.testing.assert_close(torch.func.grad(lambda z: skt.cross_entropy(z, target))(x),
                               torch.func.grad(lambda z: F.cross_entropy(z, target))(x), **TOLERANCE[torch.float64])


def _third_derivative(loss, x, v):
    """d/dx of (d/dx (d/dx loss . v) . v): the third derivative contracted twice with v."""
    xx = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss(xx), xx, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), xx, create_graph=True)
    return torch.autograd.grad((hv * v).sum(), xx)[0]


def test_third_derivatives_match_torch_to_plain_arithmetic():
    x = torch.randn(4, 3, dtype=torch.float64)
    target = torch.randint(0, 3, (4,))
    v = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(_third_derivative(lambda z: skt.cross_entropy(z, target), x, v),
                               _third_derivative(lambda z: F.cross_entropy(z, target), x, v), rtol=1e-8, atol=1e-10)


def test_third_derivatives_take_targets_and_weights_of_another_dtype():
    x = torch.randn(4, 3, dtype=torch.float64)
    v = torch.randn(4, 3, dtype=torch.float64)
    target = torch.softmax(torch.randn(4, 3), dim=1)  # float32 soft targets for float64 logits
    weight = torch.rand(3) + 0.5
    mixed = _third_derivative(lambda z: skt.cross_entropy(z, target, weight=weight, label_smoothing=0.1), x, v)
    same = _third_derivative(
        lambda z: skt.cross_entropy(z, target.double(), weight=weight.double(), label_smoothing=0.1), x, v)
    torch.testing.assert_close(mixed, same, rtol=0, atol=0)


def test_torch_compile_fullgraph_runs_forward_and_backward():
    x = torch.randn(8, 4, dtype=torch.float32)
    target = torch.randint(0, 4, (8,))
    compiled = torch.compile(lambda z: skt.cross_entropy(z, target, label_smoothing=0.1), fullgraph=True)
    xx = x.clone().requires_grad_()
    loss = compiled(xx)
    loss.backward()
    torch.testing.assert_close(loss, F.cross_entropy(x, target, label_smoothing=0.1), **TOLERANCE[torch.float32])
    xt = x.clone().requires_grad_()
    F.cross_entropy(xt, target, label_smoothing=0.1).backward()
    torch.testing.assert_close(xx.grad, xt.grad, **TOLERANCE[torch.float32])


def test_operators_pass_torch_library_opcheck():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 2, 1, 1, 0])
    for op in (torch.ops.softmax_kernels.cross_entropy.default,
               torch.ops.softmax_kernels.cross_entropy_with_gradient.default):
        torch.library.opcheck(op, (x, target, None, -100, "mean", 0.0))
    torch.library.opcheck(torch.ops.softmax_kernels.cross_entropy_hvp.default,
                          (torch.randn(5, 3, dtype=torch.float64), x, target, None, -100, "none", 0.0))


def test_other_dtypes_and_target_gradients_fall_back_to_torch():
    x = torch.randn(6, 4)
    target = torch.randint(0, 4, (6,))
    torch.testing.assert_close(skt.cross_entropy(x.half(), target), F.cross_entropy(x.half(), target))
    probabilities = torch.softmax(torch.randn(6, 4), dim=1).requires_grad_()
    loss = skt.cross_entropy(x, probabilities)
    (target_gradient,) = torch.autograd.grad(loss, probabilities)  # torch's own function: differentiable
    torch.testing.assert_close(target_gradient, torch.autograd.grad(F.cross_entropy(x, probabilities),
                                                                    probabilities)[0])


def test_zero_copies_for_contiguous_float_rows():
    x = torch.randn(64, 5, dtype=torch.float64)
    logits, _, _ = skt._rows(x, torch.zeros(64, dtype=torch.long))
    assert logits.data_ptr() == x.data_ptr()
    channels_last = torch.randn(4, 3, 5, dtype=torch.float64).movedim(-1, 1)  # (N, C, d) with C last in memory
    logits, _, _ = skt._rows(channels_last, torch.zeros(4, 3, dtype=torch.long))
    assert logits.data_ptr() == channels_last.data_ptr()


def test_kernels_use_torchs_thread_count(monkeypatch):
    requested = []
    for name in ("loss", "loss_gradient", "hessian_vector_product", "hessian"):
        function = getattr(sk, name)
        monkeypatch.setattr(sk, name, lambda *a, _function=function, **k: requested.append(k["num_threads"])
                            or _function(*a, **k))
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        skt.cross_entropy(x.detach(), target)
        (gradient,) = torch.autograd.grad(skt.cross_entropy(x, target), x, create_graph=True)
        torch.autograd.grad(gradient.sum(), x)
        skt.hessian(x.detach(), target)
    finally:
        torch.set_num_threads(previous)
    assert requested == [1, 1, 1, 1]


@pytest.mark.parametrize("layout", ["packed_upper", "full"])
def test_curvature_wrappers_equal_the_numpy_functions(layout):
    x = torch.randn(3, 4, 2, dtype=torch.float64)  # torch's (N, C, d) layout
    target = torch.randint(0, 4, (3, 2))
    loss, gradient, hessians = skt.loss_gradient_hessian(x, target, label_smoothing=0.1, layout=layout)
    z = x.movedim(1, -1).numpy()
    expected = sk.loss_gradient_hessian(z, target.numpy(), label_smoothing=0.1, reduction="mean", layout=layout)
    np.testing.assert_allclose(loss.numpy(), expected[0], rtol=1e-15)
    np.testing.assert_allclose(gradient.movedim(1, -1).numpy(), expected[1], rtol=1e-15)
    np.testing.assert_allclose(hessians.numpy(), expected[2], rtol=1e-15)
    torch.testing.assert_close(gradient, torch.func.grad(lambda z: F.cross_entropy(z, target, label_smoothing=0.1))(x))
    np.testing.assert_allclose(skt.hessian(x, layout=layout).numpy(), sk.hessian(z, reduction="mean", layout=layout),
                               rtol=1e-15)


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda: skt.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])), ValueError,
         "y: expected labels in [0, 3) or equal to ignore_index=-100, got y[3] = 3"),
        (lambda: skt.cross_entropy(torch.randn(4, 3), torch.zeros(5, dtype=torch.long)), ValueError,
         "target: expected class indices of shape (4,)"),
        (lambda: skt.cross_entropy(torch.randn(4, 3), torch.zeros(4, 2)), ValueError,
         "target: expected class probabilities of input's shape (4, 3)"),
        (lambda: skt.cross_entropy(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), reduction="avg"), ValueError,
         "reduction: expected one of"),
        (lambda: skt.cross_entropy(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), label_smoothing=2.0),
         ValueError, "label_smoothing: expected a float in [0, 1]"),
        (lambda: skt.hessian(torch.randn(4, 3).half()), TypeError, "input: softmax_kernels.torch computes curvature"),
    ],
)
def test_bad_input_raises_and_names_the_argument(call, error, fragment):
    with pytest.raises(error) as raised:
        call()
    assert fragment in str(raised.value)


def test_example_newton_cg_reaches_torchs_optimum(capsys):
    with example_module("torch_newton_cg") as example:
        results = example.main(["--rows", "3000", "--features", "6", "--classes", "4"])
    (theirs, their_gradient, _), (ours, our_gradient, _) = results.values()
    assert abs(ours - theirs) <= 1e-12 * abs(theirs)
    assert our_gradient <= 1e-8 and their_gradient <= 1e-8
    assert "softmax_kernels.torch.cross_entropy" in capsys.readouterr().out
