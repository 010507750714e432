"""Every registered algorithm x every registered environment runs a few updates.

New plugins are covered automatically: the grid comes from the registry. Hyper-parameters are shrunk only
for the keys an algorithm has, and an environment may list extra smoke settings in its config
(``smoke_overrides``, e.g. a tiny model for text).
"""

from __future__ import annotations

import json

import pytest

from rlarena.bench.results import flatten
from rlarena.bench.train import load_config, run_training
from rlarena.errors import ConfigError
from rlarena.registry import get_algorithm, list_algorithms, list_envs

SHRINK = {
    "num_steps": 32,
    "num_envs": 2,
    "num_minibatches": 2,
    "update_epochs": 2,
    "vf_epochs": 2,
    "vf_minibatches": 2,
    "responses_per_prompt": 2,
    "group_size": 2,  # rloo, grpo: one group of 2 columns (num_envs must be a multiple)
}


def _grid() -> list[tuple[str, str]]:
    """Every (algorithm, env) pair: every plugin runs on every environment."""
    return [(algo, env) for algo in list_algorithms() for env in list_envs()]


def run_smoke(algo: str, env: str, run_dir) -> dict:
    """A few updates of ``algo`` on ``env`` with the grid's shrunk settings; returns the run's summary."""
    # The shrunk settings reach the algorithm as an env family's algo_defaults would (a wrapper such as
    # algo=preference forwards its inner algorithm's keys).
    shrunk = flatten(get_algorithm(algo).Config.with_env_defaults({}, SHRINK, set()))
    overrides = [f"algo={algo}", f"env={env}", "total_steps=128", "eval.episodes=1", "eval.every_steps=0"]
    overrides += ["progress=false", "tensorboard=false"]
    overrides += [f"++algo.{k}={v}" for k, v in shrunk.items()]
    explicit = {f"algo.{k}" for k in shrunk} | {"total_steps", "eval.episodes", "eval.every_steps"}
    env_smoke = load_config(overrides).env.get("smoke_overrides") or {}
    overrides = [o for o in overrides if o.split("=")[0] not in env_smoke]
    overrides += [
        f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in env_smoke.items()
    ]
    cfg = load_config(overrides)
    return run_training(cfg, run_dir, explicit_keys=explicit | set(env_smoke))


def brings_its_own_policy(algo: str) -> bool:
    """A peer library's algorithm (algorithms/peers/) builds its own network for vector observations."""
    cls = get_algorithm(algo)
    return bool(cls.env_settings(cls.Config()).get("policy_from_algorithm"))


@pytest.mark.parametrize("algo, env", _grid())
def test_every_algorithm_runs_on_every_env(algo, env, tmp_path):
    if brings_its_own_policy(algo) and env.startswith("text/"):
        # refused for its policy, or for a setting of the text family's algo_defaults it cannot honour
        refusal = "text tasks need the language model as the policy|cannot be honoured by algo="
        with pytest.raises(ConfigError, match=refusal):
            run_smoke(algo, env, tmp_path / "run")
        assert not (tmp_path / "run").exists()
        return
    summary = run_smoke(algo, env, tmp_path / "run")
    assert summary["steps_done"] >= 128
    assert len(summary["eval_returns"]) == 1
