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
    "num_minibatches": 2,
    "update_epochs": 2,
    "vf_epochs": 2,
    "vf_minibatches": 2,
}


def _grid() -> list[tuple[str, str]]:
    """Every (algorithm, env) pair, minus those an algorithm declares it does not take: a plugin may set
    ``layouts = ("flat",)`` when it needs vector observations (preference learning on raw text is not
    defined; on text, learning from preferences is the reward-model env option)."""
    pairs = []
    for algo in list_algorithms():
        layouts = getattr(get_algorithm(algo), "layouts", ("flat", "sequence"))
        for env in list_envs():
            if env.startswith("text/") and "sequence" not in layouts:
                continue
            pairs.append((algo, env))
    return pairs


def run_smoke(algo: str, env: str, run_dir) -> dict:
    """A few updates of ``algo`` on ``env`` with the grid's shrunk settings; returns the run's summary."""
    fields = get_algorithm(algo).Config.__dataclass_fields__
    overrides = [f"algo={algo}", f"env={env}", "total_steps=128", "eval.episodes=1", "eval.every_steps=0"]
    overrides += ["progress=false", "tensorboard=false"]
    overrides += [f"algo.{k}={v}" for k, v in SHRINK.items() if k in fields]
    explicit = {f"algo.{k}" for k in SHRINK} | {"total_steps", "eval.episodes", "eval.every_steps"}
    env_smoke = load_config(overrides).env.get("smoke_overrides") or {}
    overrides = [o for o in overrides if o.split("=")[0] not in env_smoke]
    overrides += [
        f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in env_smoke.items()
    ]
    cfg = load_config(overrides)
    return run_training(cfg, run_dir, explicit_keys=explicit | set(env_smoke))


@pytest.mark.parametrize("algo, env", _grid())
def test_every_algorithm_runs_on_every_env(algo, env, tmp_path):
    summary = run_smoke(algo, env, tmp_path / "run")
    assert summary["steps_done"] >= 128
    assert len(summary["eval_returns"]) == 1
