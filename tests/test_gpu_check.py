"""scripts/gpu-check.sh where there is no GPU: its dry run checks what it can and skips every GPU step with a
message, exits 0, and writes a JSON with each step's status; a failing step stops it with one line.
The GPU run itself needs the device machine (docs/performance.md, "Running the GPU check")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check.sh"
WHEELS = REPO / ".gpu-wheels"
GPU_STEPS = ("install_wheels", "build", "tests", "bench", "train")
DRY_STEPS = ("syntax", "resolve_wheels", "nvcc_compile", "tree_size", "bench_selftest")

# The two tests that read the dry run share one (about 12 s): on one xdist worker (make test: loadgroup).
pytestmark = pytest.mark.xdist_group(name="gpu_check")

sys.path.insert(0, str(REPO / "scripts"))
import gpu_check  # noqa: E402  (scripts/ is no package)


def run_check(out: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    environ = {**os.environ, "PYTHON": sys.executable, **env}
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(out), *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, json.loads((out / "gpu-check.json").read_text())


def steps(doc: dict) -> dict[str, dict]:
    assert all(s["status"] in ("ok", "failed", "skipped") for s in doc["steps"])
    return {s["name"]: s for s in doc["steps"]}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    return run_check(tmp_path_factory.mktemp("dry"), "--dry-run")


def test_dry_run_checks_what_it_can_and_skips_the_gpu_steps(dry_run):
    proc, doc = dry_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["mode"] == "dry-run" and doc["ok"] and doc["failed_step"] is None
    by_name = steps(doc)
    assert list(by_name) == ["detect", *DRY_STEPS, *GPU_STEPS]
    for name in GPU_STEPS:
        assert by_name[name]["status"] == "skipped"
        assert by_name[name]["message"] == "skipped: no GPU (dry run)"
    for name in ("syntax", "tree_size", "bench_selftest"):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert by_name["detect"]["figures"]["gpu"] is False
    tree = by_name["tree_size"]["figures"]
    assert tree["fits_needed"] and tree["needed_mib"] <= 64  # what the check needs fits the device tool
    assert by_name["nvcc_compile"]["status"] == ("ok" if by_name["detect"]["figures"]["nvcc"] else "skipped")
    assert "gpu-check: done" in proc.stdout


def test_dry_run_resolves_the_wheel_set_offline_for_python_312(dry_run):
    if not WHEELS.is_dir():
        pytest.skip(".gpu-wheels/ is absent (make gpu-wheels gathers it; CI does not)")
    _, doc = dry_run
    step = steps(doc)["resolve_wheels"]
    assert step["status"] == "ok", step["message"]
    figures = step["figures"]
    assert figures["problems"] == [] and "torch" not in figures["carried"]  # the image's CUDA torch stays
    assert {"gymnasium", "mujoco-core", "hydra-core"} <= set(figures["carried"])


def test_without_the_wheels_folder_that_check_is_skipped_with_why(tmp_path):
    proc, doc = run_check(
        tmp_path, "--dry-run", "--only", "resolve_wheels", GPU_WHEELS=str(tmp_path / "none")
    )
    assert proc.returncode == 0
    step = steps(doc)["resolve_wheels"]
    assert step["status"] == "skipped" and "make gpu-wheels" in step["message"]


def test_no_gpu_is_detected_cleanly(tmp_path):
    # Without the flag the script looks for a GPU; where this machine has one, pretend it has not.
    env = {"GPU_CHECK_NO_GPU": "1"} if shutil.which("nvidia-smi") else {}
    proc, doc = run_check(tmp_path, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by_name = steps(doc)
    assert list(by_name) == ["detect", *GPU_STEPS]
    why = by_name["detect"]["figures"]["why_not"]
    assert why in ("nvidia-smi not found", "GPU_CHECK_NO_GPU=1", "torch.cuda.is_available() is false")
    assert f"no GPU ({why})" in proc.stdout
    assert all(by_name[n]["status"] == "skipped" and why in by_name[n]["message"] for n in GPU_STEPS)
    assert (tmp_path / "gpu-check.log").read_text().count("skipped: no GPU") == len(GPU_STEPS)


def test_a_failing_step_stops_the_run_with_one_line(tmp_path):
    empty = tmp_path / "wheels"
    empty.mkdir()  # a wheels folder without the wheels: pip cannot resolve the set
    proc, doc = run_check(tmp_path / "out", "--dry-run", GPU_WHEELS=str(empty))
    assert proc.returncode == 1
    by_name = steps(doc)
    assert not doc["ok"] and doc["failed_step"] == "resolve_wheels"
    failed = by_name["resolve_wheels"]
    assert failed["status"] == "failed" and "cannot resolve" in failed["message"]
    later = DRY_STEPS[2:] + GPU_STEPS
    assert all(by_name[n]["message"] == "not run: step resolve_wheels failed" for n in later)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu-check: FAILED at step resolve_wheels: pip cannot")


def test_a_spent_budget_stops_before_the_step(tmp_path):
    proc, doc = run_check(tmp_path, "--dry-run", GPU_CHECK_BUDGET_S="0")
    assert proc.returncode == 1 and doc["failed_step"] == "syntax"
    assert "budget of 0s" in steps(doc)["syntax"]["message"]


def _fake_wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    meta += "\nA description: a line below the headers is no requirement.\nRequires-Dist: not-a-header\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", meta)


def test_the_wheel_closure_names_what_is_missing(tmp_path):
    _fake_wheel(tmp_path, "alpha", "1.0", ["beta>=2", "numpy>=99", "gamma", "delta; python_version < '3.9'"])
    _fake_wheel(tmp_path, "beta", "1.5", ["mujoco-studio==4.0.1", "extra-only; extra == 'viewer'"])
    (tmp_path / "reqs.txt").write_text("# the set\nalpha==1.0\nbeta==1.5\n")
    (tmp_path / "image.txt").write_text("numpy==2.5.2\npackaging\n")
    figures, problems = gpu_check.check_wheels(tmp_path, tmp_path / "reqs.txt", tmp_path / "image.txt")
    assert problems == [
        "alpha needs beta>=2, the carried wheel is 1.5",
        "alpha needs numpy>=99, the image has 2.5.2",
        "alpha needs gamma: neither carried nor on the image",
    ]
    assert figures["wheels"] == 2 and figures["from_image"] == ["numpy"]
