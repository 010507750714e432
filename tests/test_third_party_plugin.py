"""The worked example of docs/adding-an-algorithm.md: a third-party package, installed, found and trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "rlarena-minimal-pg"


def test_third_party_algorithm_installs_registers_and_trains(tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}

    def rlarena(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rlarena.bench.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    listing = rlarena("list")
    assert (
        "minimal_pg" in listing.stdout
        and "entry point rlarena_minimal_pg.algorithm:MinimalPG" in listing.stdout
    )

    run = tmp_path / "run"
    proc = rlarena(
        "train",
        "algo=minimal_pg",
        "env=invertedpendulum",
        "total_steps=2048",
        "eval.episodes=2",
        "progress=false",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == "minimal_pg" and summary["steps_done"] == 2048
    config = (run / "config.yaml").read_text()
    assert "num_steps: 256" in config  # the plugin's preset algo/minimal_pg.yaml was used

    bad = rlarena(
        "train", "algo=minimal_pg", "algo.vf_coef=-1", "progress=false", f"hydra.run.dir={tmp_path}/bad"
    )
    assert bad.returncode != 0 and "vf_coef must be >= 0" in bad.stderr
