"""Peer plugins (algorithms/peers/): stable-baselines3 / sb3-contrib run under rlarena's protocol.

Each peer trains a smoke budget on InvertedPendulum into a run directory the leaderboard reads; the adapter
acts as the peer's own ``predict``; a killed peer run resumes bit-identically; bad settings are refused
before a run directory exists."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="the peers extra (make test installs it)")
pytest.importorskip("sb3_contrib", reason="the peers extra (make test installs it)")

from rlarena.algorithms.peers.sb3 import SB3PPO, SB3Policy  # noqa: E402
from rlarena.bench.results import load_run, read_metrics  # noqa: E402
from rlarena.bench.train import (  # noqa: E402
    build,
    load_config,
    resume_training,
    run_training,
    validate,
)
from rlarena.errors import ConfigError  # noqa: E402

SMOKE = [
    "env=invertedpendulum",
    "total_steps=512",
    "algo.num_steps=128",
    "eval.every_steps=256",
    "eval.episodes=2",
    "checkpoint.every_steps=256",
    "progress=false",
    "tensorboard=false",
]
# sb3_a2c keeps rlarena's A2C rollout (8 envs x 8 steps); TRPO's value minibatches must divide 128 samples.
PEERS = {
    "sb3_ppo": ["algo.num_minibatches=4", "algo.update_epochs=2"],
    "sb3_a2c": [],
    "sb3_trpo": ["algo.vf_minibatches=4"],
}


@pytest.mark.parametrize("algo", sorted(PEERS))
def test_peer_trains_into_a_run_directory_the_leaderboard_reads(tmp_path, algo):
    overrides = [*SMOKE, f"algo={algo}", *PEERS[algo]]
    if algo == "sb3_a2c":
        overrides.remove("algo.num_steps=128")
    summary = run_training(load_config(overrides), tmp_path / "run", explicit_keys=set())
    library = "sb3-contrib" if algo == "sb3_trpo" else "stable-baselines3"
    assert summary["implementation"] == library and summary["implementation_version"].startswith("2.")
    assert summary["steps_done"] == 512 and np.isfinite(summary["eval_return_mean"])
    records = read_metrics(tmp_path / "run")
    evals = [r["step"] for r in records if r["kind"] == "eval"]
    assert evals == [256, 512]  # rlarena's evaluation, at eval.every_steps and at the end
    train = [r for r in records if r["kind"] == "train"]
    assert train and all("episode_return_mean" in r for r in train)
    run = load_run(tmp_path / "run")
    assert run.algo == algo and run.env == "invertedpendulum"


def test_adapter_acts_as_the_peers_predict():
    built = build(load_config([*SMOKE, "algo=sb3_ppo"]), explicit_keys=set())
    policy = built.policy
    assert isinstance(policy, SB3Policy)
    obs = np.random.default_rng(0).normal(size=(64, *built.env.observation_space.shape)).astype(np.float32)
    with torch.no_grad():
        ours = policy.act(torch.as_tensor(obs), deterministic=True).action.numpy()
    theirs, _ = policy.model.predict(obs, deterministic=True)
    # the environment clips the Gaussian's mode to the action box, as predict() does
    np.testing.assert_array_equal(built.env._env_action(torch.as_tensor(ours)), theirs)
    built.env.close()


def test_a_killed_peer_run_resumes_bit_identically(tmp_path, monkeypatch):
    overrides = [*SMOKE, "algo=sb3_ppo", *PEERS["sb3_ppo"], "eval.every_steps=0"]
    straight = run_training(load_config(overrides), tmp_path / "straight", explicit_keys=set())

    real_update, calls = SB3PPO.update, {"n": 0}

    def crash_on_the_fourth(self, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated kill")
        return real_update(self, batch)

    monkeypatch.setattr(SB3PPO, "update", crash_on_the_fourth)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_training(load_config(overrides), tmp_path / "killed", explicit_keys=set())
    monkeypatch.setattr(SB3PPO, "update", real_update)
    resumed = resume_training(tmp_path / "killed")
    assert resumed["resumed_from_step"] == 256
    assert resumed["eval_returns"] == straight["eval_returns"]

    def train_rows(run):
        return [
            {k: v for k, v in r.items() if k not in ("time_s", "steps_per_sec")}
            for r in read_metrics(tmp_path / run)
            if r["kind"] == "train"
        ]

    assert train_rows("killed") == train_rows("straight")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["env=text/format", "env.sft_checkpoint=untrained"], "text tasks need the language model"),
        (["algo.compiled_update=false"], "cannot be honoured by algo=sb3_ppo: it selects rlarena"),
        (["algo.policy.shared=true"], "no shared actor-critic trunk"),
        (["algo.num_minibatches=3"], "num_minibatches=3 does not divide the 2048 samples"),
    ],
)
def test_settings_a_peer_cannot_honour_are_refused_before_a_run_directory(tmp_path, cli, overrides, message):
    run_dir = tmp_path / "run"
    proc = cli("train", "algo=sb3_ppo", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists()


def test_trpo_peer_refuses_a_gradient_clip_it_has_not(tmp_path, cli):
    proc = cli("train", "algo=sb3_trpo", "algo.max_grad_norm=1.0", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not clip the value function's gradient" in proc.stderr


def test_a_missing_peer_library_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sb3_contrib" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"sb3_contrib, which is not installed: pip install"):
        validate(load_config(["algo=sb3_trpo"]), set())


def test_peer_defaults_run_the_peers_own_constructor_defaults():
    cfg = load_config([*SMOKE, "algo=sb3_a2c", "algo.peer_defaults=true"])
    built = build(cfg, explicit_keys=set())
    model = built.policy.model
    assert built.algo.rollout_length == 5 and model.learning_rate == 7e-4  # SB3 A2C's own n_steps and lr
    assert json.dumps(model.policy_kwargs, default=str).count("RMSprop") == 1
    built.env.close()
