"""metrics.jsonl at a bounded rate: at most ``metrics.train_rows`` training rows, each the mean of a window of
updates, written the same by a run that was interrupted and resumed (issue 31: run files small enough to
commit hundreds of runs)."""

from __future__ import annotations

import numpy as np
import pytest

from rlarena.algorithms.ppo import PPO
from rlarena.bench.results import read_metrics
from rlarena.bench.train import load_config, resume_training, run_training

# 20 updates of 64 steps; checkpoints at steps 320, 640, 960
RUN = [
    "env=invertedpendulum",
    "total_steps=1280",
    "algo.num_steps=64",
    "algo.num_minibatches=4",
    "algo.update_epochs=2",
    "checkpoint.every_steps=320",
    "eval.every_steps=0",
    "eval.episodes=2",
    "progress=false",
    "tensorboard=false",
]
TIMING = ("steps_per_sec", "time_s")


def _train_rows(run_dir) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run_dir) if r["kind"] == "train"
    ]


def test_train_rows_are_bounded_and_average_their_updates(tmp_path):
    every = run_training(
        load_config([*RUN, "metrics.train_rows=100"]), tmp_path / "every", explicit_keys=set()
    )
    capped = run_training(
        load_config([*RUN, "metrics.train_rows=3"]), tmp_path / "capped", explicit_keys=set()
    )
    assert every["eval_returns"] == capped["eval_returns"]  # logging changes nothing the run computes
    per_update, rows = _train_rows(tmp_path / "every"), _train_rows(tmp_path / "capped")
    assert [r["step"] for r in per_update] == [64 * i for i in range(1, 21)]
    # ceil(20 / 3) = 7 updates a row; the last row holds the rest
    assert [(r["step"], r["updates"]) for r in rows] == [(448, 7), (896, 7), (1280, 6)]
    for row, window in zip(rows, [per_update[:7], per_update[7:14], per_update[14:]], strict=True):
        assert row["value_loss"] == pytest.approx(np.mean([u["value_loss"] for u in window]), rel=1e-12)
        assert row["episode_return_mean"] == window[-1]["episode_return_mean"]  # the loop's latest figure
        assert row["learning_rate"] == window[-1]["learning_rate"]


def test_a_run_resumed_mid_window_writes_the_same_rows(tmp_path, monkeypatch):
    capped = [*RUN, "metrics.train_rows=3"]
    run_training(load_config(capped), tmp_path / "whole", explicit_keys=set())

    calls, real_update = {"n": 0}, PPO.update

    def crashing_update(self, batch):
        calls["n"] += 1
        if (
            calls["n"] == 12
        ):  # after the checkpoint at update 10 (step 640), inside the window of updates 8-14
            raise RuntimeError("simulated crash")
        return real_update(self, batch)

    monkeypatch.setattr(PPO, "update", crashing_update)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(load_config(capped), tmp_path / "resumed", explicit_keys=set())
    monkeypatch.setattr(PPO, "update", real_update)
    resume_training(tmp_path / "resumed")
    assert _train_rows(tmp_path / "resumed") == _train_rows(tmp_path / "whole")
