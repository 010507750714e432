"""Every registered algorithm x every registered environment runs a few updates.

New plugins are covered automatically: the grid comes from the registry. Hyper-parameters are shrunk only
for the keys an algorithm has, and an environment may list extra smoke settings in its config
(``smoke_overrides``, e.g. a tiny model for text).
"""

from __future__ import annotations

import json

import pytest

from rlarena.bench.train import load_config, run_training
from rlarena.registry import get_algorithm, list_algorithms, list_envs

SHRINK = {
    "num_steps": 32,
    "num_envs": 2,
    "num_minibatches": 4,
    "update_epochs": 2,
    "vf_epochs": 2,
    "vf_minibatches": 2,
}


@pytest.mark.parametrize("env", list_envs())
@pytest.mark.parametrize("algo", list_algorithms())
def test_every_algorithm_runs_on_every_env(algo, env, tmp_path):
    fields = get_algorithm(algo).Config.__dataclass_fields__
    overrides = [f"algo={algo}", f"env={env}", "total_steps=128", "eval.episodes=1", "eval.every_steps=0"]
    overrides += ["progress=false", "tensorboard=false"]
    overrides += [f"algo.{k}={v}" for k, v in SHRINK.items() if k in fields]
    cfg = load_config(overrides)
    for key, value in (cfg.env.get("smoke_overrides") or {}).items():
        cfg = load_config([*overrides, f"{key}={json.dumps(value) if isinstance(value, str) else value}"])
    summary = run_training(cfg, tmp_path / "run", explicit_keys={f"algo.{k}" for k in SHRINK})
    assert summary["steps_done"] >= 128
    assert len(summary["eval_returns"]) == 1
