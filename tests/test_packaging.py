"""The release configuration agrees with itself: the jobs of .github/workflows/wheels.yml build the
platforms, architectures and build identifiers of pyproject.toml's [tool.cibuildwheel], threaded
everywhere, each wheel testing itself against the compiled backend (skipped outside the source tree,
and without PyYAML, tomllib or, for the identifiers, cibuildwheel)."""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
WORKFLOW = REPO / ".github" / "workflows" / "wheels.yml"
PLATFORMS = ("linux", "macos", "windows")

if not (PYPROJECT.exists() and WORKFLOW.exists()):
    pytest.skip("no pyproject.toml and wheels workflow beside the tests (installed package)", allow_module_level=True)
yaml = pytest.importorskip("yaml")
tomllib = pytest.importorskip("tomllib")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


@pytest.fixture(scope="module")
def config(pyproject) -> dict:
    return pyproject["tool"]["cibuildwheel"]


@pytest.fixture(scope="module")
def jobs() -> list:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return workflow["jobs"]["wheels"]["strategy"]["matrix"]["include"]


def _build_identifiers(platform: str, archs: str) -> list:
    """What cibuildwheel would build from pyproject.toml for the platform and architectures."""
    if importlib.util.find_spec("cibuildwheel") is None:
        pytest.skip("cibuildwheel is not installed")
    env = {name: value for name, value in os.environ.items() if not name.startswith("CIBW_")}
    done = subprocess.run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform,
                           "--archs", archs, str(REPO)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_workflow_jobs_are_the_platforms_and_architectures_of_pyproject(config, jobs):
    configured = {(platform, arch) for platform in PLATFORMS for arch in config[platform]["archs"]}
    assert {(job["platform"], job["arch"]) for job in jobs} == configured
    assert len(jobs) == len(configured), "a platform and architecture built by two jobs"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_workflow_jobs_build_every_build_identifier(platform, config, jobs, pyproject):
    everything = _build_identifiers(platform, " ".join(config[platform]["archs"]))
    per_job = [_build_identifiers(platform, job["arch"]) for job in jobs if job["platform"] == platform]
    assert all(per_job), "a job that builds nothing"
    assert sorted(sum(per_job, [])) == sorted(everything)
    # Every CPython from requires-python's floor to the newest classified one, and nothing else.
    floor = int(re.fullmatch(r">=3\.(\d+)", pyproject["project"]["requires-python"]).group(1))
    versions = {int(identifier.split("-")[0][3:]) for identifier in everything}
    assert versions == set(range(floor, max(versions) + 1)) and all(i.startswith("cp3") for i in everything)
    if platform == "linux":
        assert {identifier.split("-")[1].split("_")[0] for identifier in everything} == {"manylinux", "musllinux"}


def test_macos_wheels_are_threaded_with_a_vendored_libomp(config, jobs):
    macos = config["macos"]
    assert "SOFTMAX_KERNELS_OPENMP" not in macos["environment"], "the macOS wheels are the serial build"
    assert "$OPENMP_PREFIX/include" in macos["environment"]["CFLAGS"]
    assert "$OPENMP_PREFIX/lib" in macos["environment"]["LDFLAGS"]
    assert any(command.startswith("delocate-wheel") for command in macos["repair-wheel-command"])
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["wheels"]["steps"]
    macos_steps = [step for step in steps if "macOS" in step.get("if", "")]
    assert any("llvm-openmp" in step.get("with", {}).get("create-args", "") for step in macos_steps)
    assert any("OPENMP_PREFIX=" in step.get("run", "") for step in macos_steps)
    assert all(job.get("deployment_target") for job in jobs if job["platform"] == "macos")


def test_wheels_carry_their_openmp_runtime_license(config):
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["wheels"]["steps"]
    for platform in ("linux", "macos"):
        license_steps = [step for step in steps if platform.lower() in step.get("if", "").lower()
                         and "wheel_licenses/openmp-runtime.txt" in step.get("run", "")]
        assert license_steps, f"no step writes the {platform} runtime's license"
        repair = config[platform]["repair-wheel-command"]
        assert any("tools/add_wheel_license.py" in command and "wheel_licenses/openmp-runtime.txt" in command
                   for command in repair)


def test_wheels_test_themselves_against_the_compiled_backend(config, pyproject):
    assert config["environment"]["SOFTMAX_KERNELS_BACKEND"] == "compiled"
    for platform in PLATFORMS:
        environment = config.get(platform, {}).get("environment", config["environment"])
        assert environment["SOFTMAX_KERNELS_BACKEND"] == "compiled", platform
    assert config["test-sources"] == ["tests"] and "pytest" in config["test-command"]
    assert re.search(r"\btests\b", config["test-command"]) and "{project}" not in config["test-command"]
    extra = {re.split(r"[<>=\[]", requirement)[0] for requirement in pyproject["project"]["optional-dependencies"]["test"]}
    assert set(config["test-requires"]) <= extra
