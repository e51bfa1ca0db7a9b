"""The backend switch (SOFTMAX_KERNELS_BACKEND) and show_config's report of the installation."""

from __future__ import annotations

import os

import pytest

import softmax_kernels as sk
from helpers import run_python

BACKEND_VARIABLE = "SOFTMAX_KERNELS_BACKEND"


def test_show_config_reports_every_key_with_its_type():
    config = sk.show_config()
    expected_types = dict(version=str, backend=str, compiled=bool, openmp=bool, max_threads=int, simd=str)
    for key, kind in expected_types.items():
        assert key in config, key
        assert type(config[key]) is kind, f"{key}: {type(config[key]).__name__}"
    assert config["version"] == sk.__version__
    assert config["backend"] in ("compiled", "numpy")
    assert config["max_threads"] >= 1
    if config["backend"] == "compiled":
        assert config["compiled"] is True
    if os.environ.get(BACKEND_VARIABLE, "").strip().lower() == "compiled":
        assert config["backend"] == "compiled"


def test_backend_switch_numpy_uses_the_reference():
    code = (
        "import numpy as np, softmax_kernels as sk\n"
        "c = sk.show_config(); assert c['backend'] == 'numpy', c\n"
        "z = np.array([[1.0, 2.0, -1.0]]); y = np.array([1])\n"
        "assert np.array_equal(sk.loss(z, y), sk.reference.loss(z, y))\n"
        "print('ok', c['backend'])\n"
    )
    result = run_python("-c", code, env={BACKEND_VARIABLE: "numpy"})
    assert result.returncode == 0, result.stderr
    assert "ok numpy" in result.stdout


@pytest.mark.parametrize("value", ["bogus", "cython", "numpyy"])
def test_backend_switch_invalid_value_fails_the_import(value):
    result = run_python("-c", "import softmax_kernels", env={BACKEND_VARIABLE: value})
    assert result.returncode != 0
    assert "ImportError" in result.stderr and BACKEND_VARIABLE in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["compiled", None], ids=["compiled", "unset"])
def test_backend_switch_compiled_or_unset_uses_the_extension(value):
    if not sk.show_config()["compiled"]:
        pytest.skip("the compiled extension is not built here")
    code = "import softmax_kernels as sk; print(sk.show_config()['backend'])"
    result = run_python("-W", "error::RuntimeWarning", "-c", code, env={BACKEND_VARIABLE: value})
    assert result.returncode == 0, result.stderr  # and no fallback warning
    assert result.stdout.strip() == "compiled"
