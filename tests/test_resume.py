"""Resuming a run from its checkpoint: every state restored exactly, an interrupted run finished in place,
a finished run extended, and clear errors for what cannot be resumed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rlarena.algorithms.base import ConfigError
from rlarena.algorithms.ppo import PPO
from rlarena.bench.results import METRICS, _drop_metrics_after, read_metrics
from rlarena.bench.train import (
    _checkpoint_state,
    _restore,
    build,
    load_config,
    resume_training,
    run_training,
)
from rlarena.io import atomic_torch_save, safe_torch_load

OVERRIDES = [
    "env=invertedpendulum",
    "total_steps=640",
    "algo.num_steps=64",  # 10 iterations of 64 steps
    "checkpoint.every_steps=256",  # checkpoints at steps 256 and 512
    "eval.every_steps=0",
    "eval.episodes=2",
    "progress=false",
    "tensorboard=false",
]


def _train_steps(run_dir) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def test_restore_reproduces_every_state_and_the_next_update(tmp_path):
    cfg = load_config(OVERRIDES)
    first = build(cfg, explicit_keys=set())
    first.algo.update(first.env.collect(first.policy, 64))
    batch = first.env.collect(first.policy, 64)
    # the state a checkpoint holds, through a save/load round trip as weights_only=True
    atomic_torch_save(
        tmp_path / "checkpoint.pt", _checkpoint_state(first, step=128, iteration=2, recent=[1.0])
    )
    state = safe_torch_load(tmp_path / "checkpoint.pt")
    np_draw, torch_draw = np.random.rand(), torch.rand(())  # consume both global RNGs after the checkpoint

    second = build(cfg, explicit_keys=set())
    _restore(second, state, tmp_path / "checkpoint.pt")
    assert np.random.rand() == np_draw and torch.equal(torch.rand(()), torch_draw)
    for a, b in zip(first.policy.parameters(), second.policy.parameters()):
        assert torch.equal(a, b)
    assert first.env.state_dict()["obs_rms"] == second.env.state_dict()["obs_rms"]

    # The same batch through both: identical updates (optimizer moments, minibatch order, learning rate).
    first.algo.update(batch)
    second.algo.update(batch)
    for a, b in zip(first.policy.parameters(), second.policy.parameters()):
        assert torch.equal(a, b)
    first.env.close()
    second.env.close()


def test_resume_finishes_an_interrupted_run_in_place(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    calls = {"n": 0}
    real_update = PPO.update

    def crashing_update(self, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # iterations 5 and 6 were logged after the checkpoint at step 256
            raise RuntimeError("simulated crash")
        return real_update(self, batch)

    monkeypatch.setattr(PPO, "update", crashing_update)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(load_config(OVERRIDES), run_dir, explicit_keys=set())
    assert not (run_dir / "summary.json").exists()
    assert _train_steps(run_dir) == [64 * i for i in range(1, 7)]
    monkeypatch.setattr(PPO, "update", real_update)
    config_before = (run_dir / "config.yaml").read_text()
    (run_dir / "failed.json").write_text('{"error": "simulated crash"}')  # as a sweep job would leave

    summary = resume_training(run_dir)
    assert summary["steps_done"] == 640 and summary["resumed_from_step"] == 256
    assert summary == json.loads((run_dir / "summary.json").read_text())
    # each iteration logged once: the records past the checkpoint were dropped, then re-made
    assert _train_steps(run_dir) == [64 * i for i in range(1, 11)]
    assert (run_dir / "config.yaml").read_text() == config_before
    assert not (run_dir / "failed.json").exists()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 640


def test_resume_extends_a_finished_run(tmp_path):
    run_dir = tmp_path / "run"
    run_training(load_config(OVERRIDES), run_dir, explicit_keys=set())
    again = resume_training(run_dir)  # nothing to do: the finished summary comes back
    assert again["steps_done"] == 640 and "resumed_from_step" not in again
    longer = resume_training(run_dir, total_steps=768)
    assert longer["steps_done"] == 768 and longer["resumed_from_step"] == 640
    assert _train_steps(run_dir) == [64 * i for i in range(1, 13)]
    assert "total_steps: 768" in (run_dir / "config.yaml").read_text()


def test_resume_keeps_the_effective_hyperparameters(tmp_path):
    # A text task sets num_envs etc. through env.algo_defaults; config.yaml shows the algo yaml's values
    # under algo, so the resumed run must take them from the checkpoint.
    overrides = [
        "env=text/format",
        "env.sft_checkpoint=untrained",
        "env.max_new_tokens=6",  # algo.num_steps follows it (env.algo_defaults)
        "env.algo_defaults.num_envs=8",  # 8 prompts x 6 tokens = 48 steps per iteration
        "algo=reinforce",
        "total_steps=240",
        "checkpoint.every_steps=96",
        "eval.episodes=4",
        "progress=false",
        "tensorboard=false",
    ]
    explicit = {"total_steps", "eval.episodes"}  # else the text task's run_defaults would apply
    run_dir = tmp_path / "run"
    run_training(load_config(overrides), run_dir, explicit_keys=explicit)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["algo_config"]["num_envs"] == 8 and state["algo_config"]["num_steps"] == 6
    assert OmegaConf.load(run_dir / "config.yaml").algo.num_envs != 8
    summary = resume_training(run_dir, total_steps=480)
    assert summary["steps_done"] == 480 and summary["resumed_from_step"] == 240
    assert _train_steps(run_dir) == [48 * i for i in range(1, 11)]


def test_resume_refuses_what_it_cannot_resume(tmp_path, cli):
    proc = cli("resume", str(tmp_path / "nowhere"), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no run directory" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cli("resume", str(tmp_path / "empty"), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no config.yaml and no checkpoint.pt" in proc.stderr
    run_dir = tmp_path / "run"
    run_training(load_config(OVERRIDES), run_dir, explicit_keys=set())
    with pytest.raises(ConfigError, match="total_steps must be a positive integer"):
        resume_training(run_dir, total_steps=-5)


def test_dropping_metrics_past_the_checkpoint_keeps_the_rest(tmp_path):
    file = tmp_path / METRICS
    lines = [json.dumps({"kind": "train", "step": s}) for s in (64, 128, 192)]
    file.write_text("\n".join(lines) + '\n{"kind": "train", "st')  # a torn last line
    _drop_metrics_after(file, 128)
    assert [json.loads(line)["step"] for line in file.read_text().splitlines()] == [64, 128]
