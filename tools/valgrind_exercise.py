"""A short, deterministic tour of every public function for tools/valgrind.sh.

Small inputs (memcheck runs ~50x slower), both dtypes, every target kind and option,
out= arrays, the serial and the OpenMP path, non-finite logits, and every kind of
rejected argument (each must raise before the kernel runs). Exits non-zero if a call
does not behave, so a broken build is not mistaken for a clean memcheck run.
"""

import itertools
import sys

import numpy as np

import softmax_kernels as sk

assert sk.show_config()["backend"] == "compiled", sk.show_config()

TARGET_FUNCTIONS = ("loss", "gradient", "loss_gradient", "hessian", "loss_gradient_hessian",
                    "hessian_diagonal")
LAYOUT_FUNCTIONS = ("hessian", "loss_gradient_hessian")
OPTIONAL_Y = ("hessian", "hessian_diagonal", "hessian_vector_product")


def targets(rng, n_rows, n_classes):
    labels = rng.integers(0, n_classes, size=n_rows)
    soft = rng.random((n_rows, n_classes))
    return {"labels": labels, "labels_int32": labels.astype(np.int32), "soft": soft}


def call(name, z, y, **options):
    function = getattr(sk, name)
    if name == "hessian_vector_product":
        return function(z, np.ones_like(z), y, **options)
    return function(z, y, **options)


def exercise_values(rng):
    for dtype, n_rows, n_classes in itertools.product((np.float32, np.float64), (0, 1, 5), (1, 2, 7)):
        z = rng.standard_normal((n_rows, n_classes)).astype(dtype)
        if n_rows and n_classes > 1:
            z[0, 0] = -np.inf
            z[-1, -1] = 1e30 if dtype == np.float64 else 1e30
        sk.softmax(z)
        sk.log_softmax(z)
        sk.softmax(z.copy(), out=np.empty_like(z))
        zz = z.copy()
        sk.log_softmax(zz, out=zz)  # in place is allowed
        for kind, y in targets(rng, n_rows, n_classes).items():
            for name in TARGET_FUNCTIONS + ("hessian_vector_product",):
                for reduction in ("none", "sum", "mean"):
                    options = {"reduction": reduction}
                    if kind != "soft":
                        options["ignore_index"] = 0
                    call(name, z, y, **options)
                call(name, z, y, sample_weight=np.linspace(0, 1, n_rows), class_weight=np.arange(n_classes) + 1.0,
                     label_smoothing=0.1)
                if name in LAYOUT_FUNCTIONS:
                    for layout in ("packed_upper", "packed_lower", "full"):
                        call(name, z, y, layout=layout)
        for name in OPTIONAL_Y:
            call(name, z, None)
    # NaN logits, a 3-D batch and a non-contiguous input (validation copies it).
    z = rng.standard_normal((2, 3, 4))
    z[0, 1, 2] = np.nan
    y = rng.integers(0, 4, size=(2, 3))
    for name in TARGET_FUNCTIONS:
        call(name, z, y)
    call("loss_gradient_hessian", np.asfortranarray(rng.standard_normal((4, 3))), np.array([0, 1, 2, 0]))


def exercise_out_arrays(rng):
    z = rng.standard_normal((3, 4))
    y = np.array([0, 3, 1])
    sk.loss(z, y, out=np.empty(3))
    sk.loss(z, y, reduction="mean", out=np.empty(()))
    sk.gradient(z, y, out=np.empty((3, 4)))
    sk.loss_gradient(z, y, loss_out=np.empty(3), grad_out=np.empty((3, 4)))
    sk.hessian(z, y, out=np.empty((3, 10)))
    sk.hessian(z, y, layout="full", out=np.empty((3, 4, 4)))
    sk.loss_gradient_hessian(z, y, loss_out=np.empty(3), grad_out=np.empty((3, 4)), hess_out=np.empty((3, 10)))
    sk.hessian_vector_product(z, z, y, out=np.empty((3, 4)))
    sk.hessian_diagonal(z, y, out=np.empty((3, 4)))
    h = sk.hessian(z, y, layout="full")
    for layout in ("packed_upper", "packed_lower"):
        assert np.array_equal(sk.unpack(sk.pack(h, layout), layout), h)


def exercise_threads(rng):
    # 32768 touched elements or more takes the OpenMP path (SERIAL_GRAIN in _kernels.pyx).
    z = rng.standard_normal((256, 128)).astype(np.float32)
    y = rng.integers(0, 128, size=256)
    for threads in (1, 2, None):
        sk.softmax(z, num_threads=threads)
        sk.loss_gradient(z, y, num_threads=threads)
        sk.hessian_diagonal(z, y, num_threads=threads)
    sk.hessian(z[:8, :96], y[:8] % 96, num_threads=2)


def bad_calls(rng):
    z = rng.standard_normal((3, 4))
    y = np.array([0, 3, 1])
    yield lambda: sk.softmax(np.float64(1.0))
    yield lambda: sk.softmax(np.empty((3, 0)))
    yield lambda: sk.softmax(z.astype(np.complex128))
    yield lambda: sk.softmax(np.array([["a", "b"]]))
    yield lambda: sk.softmax(z, out=np.empty((3, 4), dtype=np.float32))
    yield lambda: sk.softmax(z, out=np.empty((4, 3)))
    yield lambda: sk.softmax(z, out=np.empty((4, 3)).T)
    yield lambda: sk.softmax(z, out=[[0.0] * 4] * 3)
    read_only = np.empty((3, 4))
    read_only.flags.writeable = False
    yield lambda: sk.log_softmax(z, out=read_only)
    yield lambda: sk.softmax(z, num_threads=0)
    yield lambda: sk.softmax(z, num_threads=1.5)
    yield lambda: sk.loss(z, np.array([0, 4, 1]))
    yield lambda: sk.loss(z, np.array([0, -1, 1]))
    yield lambda: sk.loss(z, np.array([0, -100, 7]), ignore_index=-100)
    yield lambda: sk.loss(z, np.array([0.5, 1, 2]))
    yield lambda: sk.loss(z, np.array([0, 1]))
    yield lambda: sk.loss(z, "labels")
    yield lambda: sk.loss(z, y, reduction="avg")
    yield lambda: sk.loss(z, y, label_smoothing=1.5)
    yield lambda: sk.loss(z, y, label_smoothing="0.1")
    yield lambda: sk.loss(z, y, sample_weight=np.ones(4))
    yield lambda: sk.loss(z, y, class_weight=np.ones(3))
    yield lambda: sk.loss(z, rng.random((3, 4)), ignore_index=0)
    yield lambda: sk.loss(z, y, ignore_index=1.5)
    yield lambda: sk.gradient(z, y, out=np.empty((3, 5)))
    v = np.ones((3, 4))
    yield lambda: sk.hessian_vector_product(z, v, y, out=v)  # must not overlap the input v
    yield lambda: sk.hessian(z, y, layout="diagonal")
    yield lambda: sk.hessian(z, y, out=np.empty((3, 16)))
    yield lambda: sk.hessian(z, None, label_smoothing=0.1)
    yield lambda: sk.loss_gradient(z, y, loss_out=np.empty(4))
    yield lambda: sk.loss_gradient_hessian(z, y, hess_out=np.empty((3, 4, 4)))
    yield lambda: sk.hessian_vector_product(z, None, y)
    yield lambda: sk.hessian_vector_product(z, np.ones((3, 5)), y)
    yield lambda: sk.hessian_diagonal(z, y, out=np.empty(3))
    yield lambda: sk.pack(np.empty((3, 4, 5)))
    yield lambda: sk.unpack(np.empty((3, 7)))
    yield lambda: sk.pack(np.empty((2, 2)), layout="full")


def exercise_errors(rng):
    for number, bad in enumerate(bad_calls(rng)):
        try:
            bad()
        except (TypeError, ValueError):
            continue
        sys.exit(f"valgrind_exercise: bad call #{number} did not raise TypeError/ValueError")


def exercise_vmath():
    from softmax_kernels import _vmath_accuracy as kernels

    kernels.exp_float32_max_ulp_error(0x3F800000, 0x3F800000 + 4096)
    kernels.exp_float64_max_ulp_error(np.linspace(-700, 700, 257))
    kernels.exp_float64_max_ulp_error(np.empty(0))
    kernels.log1p_float64_max_ulp_error(np.linspace(0, 1e6, 257))


def main():
    rng = np.random.default_rng(5)
    for _ in range(2):  # twice: anything per-call that leaks shows up as a multiple
        exercise_values(rng)
        exercise_out_arrays(rng)
        exercise_threads(rng)
        exercise_errors(rng)
    exercise_vmath()
    print("valgrind_exercise: done")


if __name__ == "__main__":
    main()
