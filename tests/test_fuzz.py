"""Fuzzing the public API: random valid calls agree with the reference and keep every
invariant; random invalid calls fail cleanly (fuzz_valid_calls.py and fuzz_invalid_calls.py
say what is drawn and checked). ``tools/fuzz.py`` runs the same strategies for a given time.
"""

import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from fuzz_invalid_calls import build_invalid_call, check_invalid_call, invalid_specs  # noqa: E402
from fuzz_valid_calls import build_valid_call, check_valid_call, valid_specs  # noqa: E402

settings.register_profile(
    "fuzz-ci",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
FUZZ_SETTINGS = settings(settings.get_profile("fuzz-ci"), max_examples=600)


@FUZZ_SETTINGS
@given(valid_specs())
def test_random_valid_calls_match_the_reference_and_keep_every_invariant(spec):
    check_valid_call(build_valid_call(spec))


@FUZZ_SETTINGS
@given(invalid_specs())
def test_random_invalid_calls_raise_a_named_error_and_write_nothing(spec):
    check_invalid_call(build_invalid_call(spec))
