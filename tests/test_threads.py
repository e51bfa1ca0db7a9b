"""Thread control: threadpoolctl sees and limits the OpenMP runtime the kernels use."""

import numpy as np
import pytest

import softmax_kernels as sk

threadpoolctl = pytest.importorskip("threadpoolctl")
pytestmark = pytest.mark.skipif(
    sk.show_config()["backend"] != "compiled" or not sk.show_config()["openmp"],
    reason="needs the compiled extension built with OpenMP",
)


def test_threadpool_info_lists_an_openmp_runtime_after_import():
    apis = {pool["user_api"] for pool in threadpoolctl.threadpool_info()}
    assert "openmp" in apis


@pytest.mark.parametrize("limit", [1, 3])
def test_threadpool_limits_set_the_default_thread_count_and_restore_it(limit):
    before = sk.show_config()["max_threads"]
    with threadpoolctl.threadpool_limits(limits=limit, user_api="openmp"):
        assert sk.show_config()["max_threads"] == limit
        z = np.random.default_rng(0).standard_normal((50_000, 8))
        expected = sk.softmax(z, num_threads=1)
        np.testing.assert_array_equal(sk.softmax(z), expected)  # num_threads=None follows the limit
    assert sk.show_config()["max_threads"] == before
