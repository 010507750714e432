"""The training CLI and loop: outputs, determinism, bad input, and PPO actually learning."""

from __future__ import annotations

import json

import pytest

from rlarena import ops
from rlarena.algorithms.base import ConfigError
from rlarena.bench.results import read_metrics
from rlarena.bench.train import build_algo_config, load_config, run_training

SUMMARY_KEYS = {
    "algo",
    "env",
    "seed",
    "total_steps",
    "eval_return_mean",
    "eval_return_std",
    "steps_per_sec",
    "wall_time_s",
}


def test_cli_smoke_writes_run_directory(cli, tmp_path, tiny_overrides):
    proc = cli(
        "train",
        "env=invertedpendulum",
        "seed=3",
        f"hydra.run.dir={tmp_path}/run",
        *tiny_overrides,
        cwd=tmp_path,
    )
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "summary.json"):
        assert (run / name).is_file(), f"{name} missing; stdout:\n{proc.stdout}"
    assert any((run / "tb").iterdir()), "no TensorBoard events"
    summary = json.loads((run / "summary.json").read_text())
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["algo"] == "ppo" and summary["env"] == "invertedpendulum" and summary["seed"] == 3
    assert summary["total_steps"] == 256 and summary["steps_per_sec"] > 0
    assert summary["code_path"] == ops.code_path() and "ATen" in summary["code_path"]
    records = read_metrics(run)
    assert {r["kind"] for r in records} == {"train", "eval"}
    assert all("step" in r for r in records)
    assert not list(run.glob("*.tmp")), "a temporary file was left behind"


def test_checkpoint_loads_with_weights_only(cli, tmp_path, tiny_overrides):
    import torch

    cli("train", "env=invertedpendulum", f"hydra.run.dir={tmp_path}/run", *tiny_overrides, cwd=tmp_path)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"policy", "algorithm", "env", "torch_rng", "numpy_rng", "step"} <= state.keys()
    assert state["env"]["obs_rms"] is not None  # normalizer statistics travel with the checkpoint


def _strip_times(records):
    return [{k: v for k, v in r.items() if k not in ("time_s", "steps_per_sec")} for r in records]


def test_same_seed_gives_identical_metrics(tmp_path):
    overrides = [
        "env=invertedpendulum",
        "total_steps=512",
        "algo.num_steps=128",
        "eval.episodes=2",
        "progress=false",
        "tensorboard=false",
    ]
    cfg = load_config(overrides)
    run_training(cfg, tmp_path / "a", explicit_keys=set())
    run_training(cfg, tmp_path / "b", explicit_keys=set())
    a, b = _strip_times(read_metrics(tmp_path / "a")), _strip_times(read_metrics(tmp_path / "b"))
    assert a == b and len(a) >= 4
    other = load_config([*overrides, "seed=1"])
    run_training(other, tmp_path / "c", explicit_keys=set())
    assert _strip_times(read_metrics(tmp_path / "c")) != a


@pytest.mark.parametrize(
    "override, message",
    [
        ("algo.learning_rate=-0.1", "learning_rate must be > 0"),
        ("algo.clip_coef=0", "clip_coef must be > 0"),
        ("algo.gamma=1.5", "gamma must be in"),
        ("algo.num_envs=abc", "could not be converted"),
        ("+algo.no_such_key=1", "no_such_key"),
    ],
)
def test_invalid_hyperparameters_are_refused_at_config_time(override, message):
    # Types and unknown keys fail while composing (the dataclass is Hydra's schema), ranges in __post_init__.
    with pytest.raises(ConfigError, match=message):
        build_algo_config(load_config([override]), explicit_keys=set())


@pytest.mark.parametrize(
    "args, message",
    [
        (["total_steps=0"], "total_steps must be a positive integer"),
        (["algo.clip_coef=-1"], "clip_coef must be > 0"),
        (["algo=nope"], "Available options"),
        (["env=nope"], "Available options"),
    ],
)
def test_bad_input_fails_before_training(cli, tmp_path, args, message):
    proc = cli("train", f"hydra.run.dir={tmp_path}/run", "progress=false", *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists(), "training started despite bad input"


def test_env_algo_defaults_apply_unless_set_on_command_line():
    cfg = load_config(
        ["env=invertedpendulum", "+env.algo_defaults.num_steps=77", "+env.algo_defaults.not_ppo=1"]
    )
    assert build_algo_config(cfg, explicit_keys=set()).num_steps == 77
    assert build_algo_config(cfg, explicit_keys={"algo.num_steps"}).num_steps == 2048


def test_env_run_defaults_apply_unless_set_on_command_line():
    from rlarena.bench.train import apply_env_run_defaults

    cfg = load_config(
        ["env=invertedpendulum", "+env.run_defaults.total_steps=123", "+env.run_defaults.eval.episodes=7"]
    )
    applied = apply_env_run_defaults(cfg, explicit_keys=set())
    assert applied.total_steps == 123 and applied.eval.episodes == 7 and cfg.total_steps == 300000
    kept = apply_env_run_defaults(cfg, explicit_keys={"total_steps"})
    assert kept.total_steps == 300000 and kept.eval.episodes == 7
