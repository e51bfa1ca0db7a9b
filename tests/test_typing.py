"""Types: the stubs describe the public API, mypy --strict accepts real use and rejects misuse.

The stubs (``__init__.pyi``, ``reference.pyi``) are checked three ways: a typed usage
example passes ``mypy --strict`` (and runs), a file of wrong calls is rejected on exactly
the lines marked ``# error``, and ``mypy.stubtest`` finds the stubs equal to the runtime
signatures of both backends, so the stubs cannot drift from ``_api.build_public_api``.
"""

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import softmax_kernels as sk

pytest.importorskip("mypy")

PACKAGE_DIR = Path(sk.__file__).parent

USAGE_EXAMPLE = '''
"""A typed user of softmax_kernels: one Newton step of multinomial logistic regression."""
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

import softmax_kernels as sk
from softmax_kernels import reference

FloatArray = NDArray[np.floating[Any]]
Layout = Literal["packed_upper", "packed_lower", "full"]


def newton_direction(z: NDArray[np.float64], y: NDArray[np.int64], layout: Layout) -> FloatArray:
    """Loss, gradient and Hessian in one pass; the mean Hessian of row 0 solves for a step."""
    loss, grad, hess = sk.loss_gradient_hessian(
        z, y, sample_weight=np.ones(len(y)), label_smoothing=0.1, reduction="mean", layout=layout
    )
    full = hess[0] if layout == "full" else sk.unpack(hess[0], layout=layout)
    assert loss.ndim == 0 and float(loss) > 0.0
    step: FloatArray = np.linalg.lstsq(full, -grad[0], rcond=None)[0]
    return step


def main() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, 5))
    y = rng.integers(0, 5, 64)
    soft = sk.softmax(z, num_threads=1)
    log_s: FloatArray = sk.log_softmax(z.astype(np.float32), out=None)
    per_row = sk.loss(z, y, class_weight=[1.0, 2.0, 1.0, 1.0, 1.0], ignore_index=-100)
    total = sk.loss(soft, soft, reduction="sum")  # soft targets of z's shape
    grad = sk.gradient(z, y, reduction="mean", out=np.empty_like(z))
    loss, grad2 = sk.loss_gradient(z, y, loss_out=np.empty(64), grad_out=np.empty_like(z))
    packed = sk.hessian(z)  # y=None: the Hessian of log-sum-exp
    full = sk.hessian(z, y, layout="full")
    hv = sk.hessian_vector_product(z, np.ones_like(z), y, num_threads=None)
    diag = sk.hessian_diagonal(z, y)
    layouts: tuple[Layout, ...] = ("packed_upper", "packed_lower", "full")
    for layout in layouts:
        assert newton_direction(z, y, layout).shape == (5,)
    same: NDArray[np.float64] = sk.unpack(sk.pack(np.eye(3), layout="packed_lower"), "packed_lower")
    np.testing.assert_allclose(sk.unpack(packed), full)
    np.testing.assert_allclose(loss, reference.loss(z, y), rtol=1e-12)
    np.testing.assert_allclose(grad2, reference.gradient(z, y), rtol=1e-12)
    ref_loss, ref_grad, ref_hess = reference.loss_gradient_hessian(z, y, layout="full")
    np.testing.assert_allclose(ref_hess, full, rtol=1e-12, atol=1e-15)
    config: dict[str, object] = sk.show_config()
    threads = config["max_threads"]
    assert isinstance(threads, int) and threads >= 1
    version: str = sk.__version__
    backend: str = sk.BACKEND
    assert config["version"] == version and config["backend"] == backend
    assert per_row.shape == (64,) and total.ndim == 0 and grad.shape == hv.shape == diag.shape
    assert log_s.dtype == np.float32 and same.shape == (3, 3) and ref_loss.shape == ref_grad.shape[:1]


if __name__ == "__main__":
    main()
'''

# Every line marked "# error" must be reported, and no other line.
MISUSE_EXAMPLE = '''
import numpy as np

import softmax_kernels as sk
from softmax_kernels import reference

z = np.zeros((4, 3))
y = np.zeros(4, dtype=np.int64)
name = "full"  # a plain str, not one of the layout literals
sk.loss(z, y, reduction=3)  # error
sk.loss(z, y, reduction="average")  # error
sk.loss(z, y, reductoin="mean")  # error
sk.gradient(z, y, None)  # error: the options are keyword-only
sk.hessian(z, layout="packed")  # error
sk.hessian(z, layout=name)  # error
sk.pack(np.eye(3), layout="full")  # error
sk.softmax(z, num_threads=2.0)  # error
sk.softmax(z, out=[0.0, 0.0, 0.0])  # error
reference.hessian_vector_product(z)  # error: v is required
loss, grad = sk.loss_gradient_hessian(z, y)  # error
version: int = sk.__version__  # error
'''


def _mypy_environment() -> dict:
    """Make mypy read the very package under test (an src checkout or an installed one)."""
    env = dict(os.environ)
    parent = PACKAGE_DIR.parent
    if parent.name not in ("site-packages", "dist-packages"):  # mypy refuses those in MYPYPATH
        env["MYPYPATH"] = str(parent)
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch folder with a neutral mypy config and a cache shared by the mypy runs."""
    path = tmp_path_factory.mktemp("typing")
    (path / "mypy.ini").write_text("[mypy]\ncache_dir = .mypy_cache\n")
    return path


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=workdir,
        env=_mypy_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _mypy_strict(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    return _run(workdir, "-m", "mypy", "--config-file", "mypy.ini", "--strict", "--show-error-codes", *targets)


def test_stubs_and_py_typed_ship_with_the_package():
    for name in ("py.typed", "__init__.pyi", "reference.pyi"):
        assert (PACKAGE_DIR / name).is_file(), f"{name} is missing from {PACKAGE_DIR}"


def test_mypy_strict_accepts_the_usage_example_and_the_stubs(workdir):
    (workdir / "usage.py").write_text(textwrap.dedent(USAGE_EXAMPLE))
    # -m checks the stubs themselves too: errors inside an installed package are otherwise silent.
    result = _mypy_strict(workdir, "-m", "softmax_kernels", "-m", "softmax_kernels.reference", "-m", "usage")
    assert result.returncode == 0, f"mypy --strict failed:\n{result.stdout}{result.stderr}"


def test_usage_example_runs(workdir):
    (workdir / "usage_run.py").write_text(textwrap.dedent(USAGE_EXAMPLE))
    result = _run(workdir, "usage_run.py")
    assert result.returncode == 0, f"the usage example failed:\n{result.stdout}{result.stderr}"


def test_mypy_strict_rejects_each_wrong_call(workdir):
    source = textwrap.dedent(MISUSE_EXAMPLE)
    (workdir / "misuse.py").write_text(source)
    result = _mypy_strict(workdir, "misuse.py")
    report = f"mypy output:\n{result.stdout}{result.stderr}"
    assert result.returncode == 1, report
    expected = {number for number, line in enumerate(source.splitlines(), 1) if "# error" in line}
    flagged = {int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error:" in line}
    assert flagged == expected, f"expected errors on lines {sorted(expected)}, got {sorted(flagged)}\n{report}"


def test_package_functions_have_the_reference_signatures():
    # __init__.pyi re-exports reference.pyi's signatures, which stubtest checks against
    # softmax_kernels.reference; this keeps the compiled backend's functions held to them too.
    for name in sk.reference.__all__:
        assert inspect.signature(getattr(sk, name)) == inspect.signature(getattr(sk.reference, name)), name


def test_stubs_match_the_runtime_signatures(workdir):
    # The other submodules have no stubs of their own: stubtest would compare them with
    # themselves (and trip on lru_cache wrappers), and their sources are not under --strict.
    (workdir / "stubtest.ini").write_text(
        "[mypy]\ncache_dir = .mypy_cache_stubtest\n"
        "[mypy-softmax_kernels.*]\nignore_errors = True\n"
        "[mypy-softmax_kernels,softmax_kernels.reference]\nignore_errors = False\n"
    )
    (workdir / "allowlist.txt").write_text("softmax_kernels\\.(?!reference\\.)\\w+\\..*\n")
    result = _run(
        workdir, "-m", "mypy.stubtest", "softmax_kernels", "--mypy-config-file", "stubtest.ini",
        "--allowlist", "allowlist.txt", "--ignore-unused-allowlist",
    )
    assert result.returncode == 0, f"stubtest found differences:\n{result.stdout}{result.stderr}"
