"""Hyper-parameter search: experiment=ppo_search through the Optuna sweeper, a few tiny trials."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import yaml

pytest.importorskip(
    "hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper not installed (extra: search)"
)

from rlarena.bench.train import RunResult  # noqa: E402


def test_run_result_is_the_objective():
    assert float(RunResult(eval_return_mean=12.5, status="finished")) == 12.5
    assert math.isnan(float(RunResult(status="failed", error="boom")))
    assert RunResult(status="failed")["status"] == "failed"  # still the summary dict for everything else


def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    args = [
        "train",
        "--multirun",
        "experiment=ppo_search",
        "env=invertedpendulum",
        "total_steps=256",
        "algo.num_steps=128",
        "algo.num_minibatches=2",
        "eval.episodes=2",
        "tensorboard=false",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=1",
        "hydra.launcher.n_jobs=1",
        f"hydra.sweep.dir={tmp_path}/search",
    ]
    env = {**os.environ, "MUJOCO_GL": "egl"}
    out = subprocess.run(
        [sys.executable, "-m", "rlarena.bench.cli", *args], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = sorted((tmp_path / "search").glob("*/summary.json"))
    assert len(summaries) == 3
    returns = [json.loads(p.read_text())["eval_return_mean"] for p in summaries]
    result = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(max(returns))
    assert {"algo.learning_rate", "algo.clip_coef", "algo.update_epochs", "algo.gae_lambda"} == set(
        result["best_params"]
    )
