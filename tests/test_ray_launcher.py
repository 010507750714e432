"""A sweep through hydra/launcher=ray_cluster against a real Ray head, then a leaderboard over it.

Ray listens on the host's address even when told 127.0.0.1, so the head only ever runs inside a private
network namespace with loopback alone (``unshare -n``, ``ip link set lo up``); where no namespace can be
made, or Ray is not installed (extra ``ray``, which ``make test`` installs), the test says so and skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip(
    "hydra_plugins.hydra_ray_launcher", reason="hydra-ray-launcher not installed (extra: ray)"
)

RAY = Path(sys.executable).parent / "ray"


def _namespace_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespace_available(), reason="cannot make a private network namespace (unshare -n)")
def test_two_job_sweep_on_a_ray_head_then_leaderboard(tmp_path):
    sweep = tmp_path / "sweep"
    ray_tmp = Path(f"/tmp/rlarena-ray-{os.getpid()}")  # Ray's socket paths must stay short
    train = [
        sys.executable, "-m", "rlarena.bench.cli", "train", "--multirun", "hydra/launcher=ray_cluster",
        "algo=ppo", "env=invertedpendulum", "seed=0,1", "total_steps=256", "algo.num_steps=128",
        "algo.num_minibatches=2", "eval.episodes=2", "eval.every_steps=0", "tensorboard=false",
        "progress=false", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    script = textwrap.dedent(
        f"""
        set -e
        ip link set lo up
        {RAY} start --head --node-ip-address=127.0.0.1 --port=6390 --num-cpus=2 --include-dashboard=false \\
            --disable-usage-stats --object-store-memory=100000000 --temp-dir={ray_tmp}
        trap '{RAY} stop --force >/dev/null 2>&1; rm -rf {ray_tmp}' EXIT
        RAY_ADDRESS=127.0.0.1:6390 {" ".join(train)}
        """
    )
    env = {**os.environ, "MUJOCO_GL": "egl"}
    out = subprocess.run(
        ["unshare", "-n", "bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    summaries = sorted(sweep.glob("*/summary.json"))
    assert [json.loads(p.read_text())["seed"] for p in summaries] == [0, 1]

    board = subprocess.run(
        [sys.executable, "-m", "rlarena.bench.cli", "leaderboard", str(sweep), "--out", str(tmp_path / "lb")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert board.returncode == 0, board.stderr[-2000:]
    assert "| ppo |" in (tmp_path / "lb" / "leaderboard.md").read_text()
