"""The release configuration agrees with itself: the jobs of .github/workflows/wheels.yml build the
platforms, architectures and build identifiers of pyproject.toml's [tool.cibuildwheel], threaded
everywhere, each wheel testing itself against the compiled backend (skipped outside the source tree,
and without PyYAML, tomllib or, for the identifiers, cibuildwheel)."""

import base64
import csv
import hashlib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import zipfile

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


def _license_argument(command: str) -> str:
    """The license file a tools/add_wheel_license.py command adds, as written in the command."""
    return command.split("tools/add_wheel_license.py", 1)[1].split()[1]


def test_wheels_carry_their_openmp_runtime_license(config):
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["wheels"]["steps"]
    expressions = {"linux": "GPL-3.0-or-later WITH GCC-exception-3.1", "macos": "Apache-2.0 WITH LLVM-exception"}
    for platform, expression in expressions.items():
        commands = [c for c in config[platform]["repair-wheel-command"] if "tools/add_wheel_license.py" in c]
        assert len(commands) == 1, f"{platform}: no repair step adds the runtime's license"
        assert f"--expression '{expression}'" in commands[0]
        license_file = _license_argument(commands[0])
        if platform == "linux":  # checked in, the text tools/build_wheels.sh adds too
            assert license_file == "{project}/tools/licenses/libgomp.txt"
            text = (REPO / "tools" / "licenses" / "libgomp.txt").read_text()
            assert "GCC RUNTIME LIBRARY EXCEPTION" in text and "GNU GENERAL PUBLIC LICENSE" in text
            build_wheels = (REPO / "tools" / "build_wheels.sh").read_text()
            assert "tools/licenses/libgomp.txt" in build_wheels and expression in build_wheels
        else:  # downloaded by the workflow for the libomp version it installs
            written = license_file.replace("{project}/", "")
            assert any(written in step.get("run", "") for step in steps if "macOS" in step.get("if", ""))


def test_add_wheel_license_lists_the_text_and_extends_the_license_expression(tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    metadata = "Metadata-Version: 2.4\nName: demo\nLicense-Expression: BSD-3-Clause\nLicense-File: LICENSE\n\nText.\n"
    with zipfile.ZipFile(wheel, "w") as out:
        out.writestr("demo/__init__.py", "")
        out.writestr("demo-1.0.dist-info/METADATA", metadata)
        out.writestr("demo-1.0.dist-info/RECORD", "stale\n")
    license_text = tmp_path / "runtime.txt"
    license_text.write_text("the runtime's license\n")
    command = [sys.executable, str(REPO / "tools" / "add_wheel_license.py"), str(wheel), str(license_text),
               "--as", "demo.libs/runtime-LICENSE", "--expression", "MIT"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(wheel) as result:
        contents = {name: result.read(name) for name in result.namelist()}
    assert contents["demo-1.0.dist-info/licenses/demo.libs/runtime-LICENSE"] == b"the runtime's license\n"
    headers = contents["demo-1.0.dist-info/METADATA"].decode().split("\n\n")[0].split("\n")
    assert "License-Expression: BSD-3-Clause AND (MIT)" in headers
    assert headers[headers.index("License-File: LICENSE") + 1] == "License-File: demo.libs/runtime-LICENSE"
    record = list(csv.reader(contents["demo-1.0.dist-info/RECORD"].decode().splitlines()))
    assert record[-1] == ["demo-1.0.dist-info/RECORD", "", ""]
    assert {row[0] for row in record} == set(contents)
    for name, digest, size in record[:-1]:
        expected = base64.urlsafe_b64encode(hashlib.sha256(contents[name]).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}" and int(size) == len(contents[name]), name
    # A second run would list the license twice: refused, and the wheel is left as it was.
    before = wheel.read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already holds" in again.stderr
    assert wheel.read_bytes() == before


def test_wheels_test_themselves_against_the_compiled_backend(config, pyproject):
    assert config["environment"]["SOFTMAX_KERNELS_BACKEND"] == "compiled"
    for platform in PLATFORMS:
        environment = config.get(platform, {}).get("environment", config["environment"])
        assert environment["SOFTMAX_KERNELS_BACKEND"] == "compiled", platform
    assert config["test-sources"] == ["tests"] and "pytest" in config["test-command"]
    assert re.search(r"\btests\b", config["test-command"]) and "{project}" not in config["test-command"]
    extra = {re.split(r"[<>=\[]", requirement)[0] for requirement in pyproject["project"]["optional-dependencies"]["test"]}
    assert set(config["test-requires"]) <= extra
