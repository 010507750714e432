"""Reward from preferences: Bradley-Terry, labelers, segments, schedule, reward model, plugin, label store."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from rlarena.algorithms.base import AlgoConfig, Algorithm, ConfigError
from rlarena.algorithms.preference import PreferenceConfig, PreferenceLearning, label_target
from rlarena.algorithms.preference.labelers import HumanLabeler, LabelerConfig, SyntheticLabeler
from rlarena.envs.gym_preferences import StepSegments, cut_segments
from rlarena.label_store import LabelStore
from rlarena.preferences import (
    LabeledPair,
    Segment,
    boltzmann_preference,
    bradley_terry_loss,
    preference_accuracy,
    preference_probability,
)
from rlarena.registry import ALGORITHMS
from rlarena.reward_ensemble import RewardModelConfig, RewardModelTrainer, padded_features
from rlarena.rollout import RolloutBatch

torch.set_num_threads(1)


# ---- Bradley-Terry ---------------------------------------------------------------------------------------


def test_bradley_terry_loss_and_gradient_match_hand_calculation():
    # diff = a - b = [1, 0, -2]; sigmoid(diff) = [0.7310586, 0.5, 0.1192029]
    # losses: -ln 0.7310586 = 0.3132617, -ln 0.5 = 0.6931472, -ln(1 - 0.1192029) = 0.1269280; mean 0.3777790
    a = torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    loss = bradley_terry_loss(a, b, target)
    assert loss.item() == pytest.approx(0.3777790, abs=1e-6)
    loss.backward()
    # d loss / d a_i = (sigmoid(diff_i) - target_i) / n = [-0.0896471, 0, 0.0397343]; d/d b = minus that
    assert a.grad.tolist() == pytest.approx([-0.0896471, 0.0, 0.0397343], abs=1e-6)
    assert b.grad.tolist() == pytest.approx([0.0896471, 0.0, -0.0397343], abs=1e-6)
    per_pair = bradley_terry_loss(a.detach(), b.detach(), target, reduction="none")
    assert per_pair.tolist() == pytest.approx([0.3132617, 0.6931472, 0.1269280], abs=1e-6)


def test_bradley_terry_with_label_noise_matches_hand_calculation():
    # P = 0.9 * sigmoid(1) + 0.05 = 0.9 * 0.7310586 + 0.05 = 0.7079527; loss = -ln P = 0.3453780
    # d loss / d a = -(0.9 * sigmoid(1) * (1 - sigmoid(1))) / P = -(0.9 * 0.1966119) / 0.7079527 = -0.2499471
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.0], dtype=torch.float64)
    loss = bradley_terry_loss(a, b, torch.tensor([1.0], dtype=torch.float64), label_noise=0.1)
    assert loss.item() == pytest.approx(0.3453780, abs=1e-6)
    loss.backward()
    assert a.grad.item() == pytest.approx(-0.2499471, abs=1e-6)


def test_noise_model_probabilities():
    big = torch.tensor([1e4])
    zero = torch.tensor([0.0])
    assert preference_probability(zero, zero, 0.1).item() == pytest.approx(0.5)
    assert preference_probability(big, zero, 0.1).item() == pytest.approx(0.95)  # 10% answer at random
    assert preference_probability(zero, big, 0.1).item() == pytest.approx(0.05)
    d = torch.tensor([0.3])
    assert preference_probability(d, zero).item() == pytest.approx(torch.sigmoid(d).item())
    # The noise floor bounds the loss of a confidently wrong prediction: -ln(0.05) instead of ~1e4.
    assert bradley_terry_loss(zero, big, torch.tensor([1.0]), 0.1).item() == pytest.approx(
        -math.log(0.05), rel=1e-5
    )
    with pytest.raises(ValueError):
        preference_probability(zero, zero, 1.0)


def test_accuracy_ignores_ties():
    acc = preference_accuracy(
        torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 0.5])
    )
    assert acc[:2].tolist() == [1.0, 0.0] and math.isnan(acc[2].item())


@pytest.mark.parametrize(
    "case, score_a, score_b, target, expected",
    [
        ("agree", [2.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]),
        ("disagree", [0.0, 2.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]),
        # A model tie is half right whichever side the label picks (it once counted as right for "b wins").
        ("model tie", [1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.5, 0.5]),
        ("label tie", [2.0, 1.0], [1.0, 1.0], [0.5, 0.5], [math.nan, math.nan]),
    ],
)
def test_accuracy_per_pair(case, score_a, score_b, target, expected):
    acc = preference_accuracy(torch.tensor(score_a), torch.tensor(score_b), torch.tensor(target))
    assert acc.dtype == torch.float32
    assert acc.tolist() == pytest.approx(expected, nan_ok=True), case


# ---- labelers --------------------------------------------------------------------------------------------


def test_boltzmann_preference():
    assert boltzmann_preference(np.array([2.0, 1.0, 1.0]), np.array([1.0, 2.0, 1.0]), 0.0).tolist() == [
        1.0,
        0.0,
        0.5,
    ]
    p = boltzmann_preference(np.array([1.0]), np.array([0.0]), 2.0)
    assert p[0] == pytest.approx(1 / (1 + math.exp(-0.5)))


def test_synthetic_labeler_exact_noisy_and_ties():
    n = 4000
    ra, rb = np.ones(n), np.zeros(n)
    exact = SyntheticLabeler(LabelerConfig(), seed=0).label(ra, rb)
    assert (exact == 1.0).all()
    assert SyntheticLabeler(LabelerConfig(), seed=0).label(np.array([3.0]), np.array([3.0])).tolist() == [0.5]
    random = SyntheticLabeler(LabelerConfig(error_rate=1.0), seed=0).label(ra, rb)
    assert set(np.unique(random)) == {0.0, 1.0} and abs(random.mean() - 0.5) < 0.04
    boltz = SyntheticLabeler(LabelerConfig(temperature=1.0), seed=0).label(ra, rb)
    assert abs(boltz.mean() - 1 / (1 + math.exp(-1.0))) < 0.03  # sigmoid(1) = 0.731
    ties = SyntheticLabeler(LabelerConfig(tie_margin=1.5), seed=0).label(ra, rb)
    assert (ties == 0.5).all()
    again = SyntheticLabeler(LabelerConfig(temperature=1.0), seed=0).label(ra, rb)
    assert (again == boltz).all(), "same seed, same labels"


def _segment(rng: np.random.Generator, length: int = 5, obs_dim: int = 3, ended: bool = False) -> Segment:
    return Segment(
        rng.normal(size=(length, obs_dim)), rng.normal(size=(length, 1)), rng.normal(size=length), ended=ended
    )


def test_synthetic_labeler_records_to_store(tmp_path):
    rng = np.random.default_rng(0)
    labeler = SyntheticLabeler(LabelerConfig(store=str(tmp_path / "labels.sqlite")), seed=0)
    pairs = [(_segment(rng), _segment(rng)) for _ in range(6)]
    labeler.ask(pairs)
    got = labeler.poll()
    assert len(got) == 6 and labeler.pending == 0
    for p, (a, b) in zip(got, pairs):
        assert p.target == (1.0 if a.true_return > b.true_return else 0.0)
    with LabelStore(tmp_path / "labels.sqlite") as store:
        assert store.counts()["labels"] == 6
        assert [p.target for p in store.labeled_pairs()] == [p.target for p in got]


def test_segment_round_trips_through_bytes_and_json():
    rng = np.random.default_rng(1)
    seg = Segment(
        rng.normal(size=(4, 3)), rng.normal(size=(4, 2)), rng.normal(size=4), rng.normal(size=(4, 5)), True, 3
    )
    for back in (
        Segment.from_bytes(seg.to_bytes()),
        Segment.from_json(json.loads(json.dumps(seg.to_json()))),
    ):
        assert np.array_equal(back.obs, seg.obs) and np.array_equal(back.actions, seg.actions)
        assert np.array_equal(back.true_rewards, seg.true_rewards) and np.allclose(back.states, seg.states)
        assert back.ended and back.absorbing == 3
    with pytest.raises(ValueError):
        Segment(np.zeros((2, 3)), np.zeros((2, 1)), absorbing=2)  # only an ended segment has absorbing steps


# ---- segments and schedule -------------------------------------------------------------------------------


def test_cut_segments_respect_episode_boundaries():
    T, N, L = 40, 3, 8
    obs = np.arange(T * N, dtype=np.float32).reshape(T, N, 1)
    actions = np.zeros((T, N, 1), np.float32)
    dones = np.zeros((T, N), bool)
    terminated = np.zeros((T, N), bool)
    dones[[5, 20], 0] = terminated[[5, 20], 0] = True  # env 0: terminations
    dones[12, 1] = True  # env 1: a time limit at t=12
    segs = cut_segments(obs, actions, dones, terminated, L, 300, torch.Generator().manual_seed(0))
    assert len(segs) == 300
    for s in segs:
        t0, n = s.meta["t0"], s.meta["env_index"]
        end = t0 + len(s)
        assert end <= T and np.array_equal(s.obs[:, 0], obs[t0:end, n, 0])
        assert not dones[t0 : end - 1, n].any(), "a segment never runs across an episode end"
        if len(s) < L:
            assert terminated[end - 1, n] and s.ended and s.absorbing == L - len(s)
        else:
            assert s.absorbing == 0
    assert any(s.ended for s in segs) and any(not s.ended for s in segs)


def _cfg(**kw) -> PreferenceConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PreferenceConfig), kw))


def test_label_schedule_front_loads_and_finishes_on_time():
    cfg = _cfg(total_labels=700, initial_fraction=0.25, label_decay=0.25, label_horizon=0.9)
    targets = [label_target(cfg, p / 100) for p in range(101)]
    assert targets[0] == 175 and targets[90] == 700 and targets[-1] == 700
    assert all(b >= a for a, b in zip(targets, targets[1:]))
    first_half, second_half = targets[45] - targets[0], targets[90] - targets[45]
    assert first_half > 1.5 * second_half, "the rate decays"


# ---- configuration ---------------------------------------------------------------------------------------


def test_config_takes_inner_values_and_forwards_shared_keys():
    cfg = _cfg(num_steps=512, inner_overrides={"update_epochs": 3, "policy": {"hidden_sizes": [32]}})
    inner = cfg.inner_config()
    assert type(inner).__name__ == "PPOConfig" and inner.num_steps == 512 and inner.update_epochs == 3
    assert cfg.num_steps == 512 and cfg.num_envs == inner.num_envs and cfg.policy.hidden_sizes == [32]
    assert cfg.gamma == inner.gamma and cfg.normalize_observations == inner.normalize_observations


def test_preference_yaml_matches_the_config():
    from rlarena.bench.train import build_algo_config, load_config

    cfg = build_algo_config(load_config(["algo=preference", "env=hopper"]), explicit_keys=set())
    assert isinstance(cfg, PreferenceConfig) and cfg.inner == "ppo" and cfg.total_labels == 700
    assert cfg.num_steps == cfg.inner_config().num_steps


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"total_labels": 0}, "total_labels"),
        ({"inner": "nope"}, "unknown algorithm"),
        ({"inner": "preference"}, "another algorithm"),
        ({"inner_overrides": {"clip_coef": -1.0}}, "clip_coef"),
        ({"inner_overrides": {"no_such_key": 1}}, "no_such_key"),
        ({"num_steps": 64, "inner_overrides": {"num_steps": 32}}, "set both"),
        ({"segment_length": 0}, "segment_length"),
        ({"selection": "best"}, "selection"),
        ({"initial_fraction": 1.5}, "initial_fraction"),
        ({"label_horizon": 0.0}, "label_horizon"),
        ({"labeler": {"kind": "oracle"}}, "labeler.kind"),
        ({"labeler": {"kind": "human"}}, "labeler.store"),
        ({"labeler": {"error_rate": 2.0}}, "error_rate"),
        ({"labeler": {"wait": "sometimes"}}, "labeler.wait"),
        ({"reward_model": {"ensemble_size": 0}}, "ensemble_size"),
        ({"reward_model": {"label_noise": 1.0}}, "label_noise"),
        ({"reward_model": {"validation": "kfold"}}, "validation"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**overrides)


# ---- reward model ----------------------------------------------------------------------------------------


def _linear_segments(rng: np.random.Generator, n: int, w: np.ndarray, length: int = 20) -> list[Segment]:
    segs = []
    for _ in range(n):
        offset = rng.normal(size=len(w))  # segments differ in where they are, like policies' visits do
        x = offset + 0.5 * rng.normal(size=(length, len(w)))
        segs.append(Segment(x[:, :-2], x[:, -2:], x @ w))
    return segs


def test_reward_model_ranks_held_out_segments_of_a_linear_reward():
    rng = np.random.default_rng(0)
    w = rng.normal(size=8)
    labeler = SyntheticLabeler(LabelerConfig(), seed=0)
    train = _linear_segments(rng, 600, w)
    pairs = list(zip(train[0::2], train[1::2]))
    labeler.ask(pairs)
    trainer = RewardModelTrainer(8, RewardModelConfig(epochs=40), seed=0)
    trainer.add(labeler.poll())
    metrics = trainer.fit()
    assert metrics["val_accuracy"] > 0.85 and metrics["labels"] == 300

    held_out = _linear_segments(rng, 200, w)
    x, m, k = padded_features(held_out)
    predicted = (trainer.predict(x) * m).sum(1).numpy()
    rho = spearmanr(predicted, [s.true_return for s in held_out]).statistic
    assert rho >= 0.9, f"Spearman {rho:.3f}"

    # Predicted rewards are normalized to zero mean and unit std over the labeled steps.
    data = trainer.data.tensors()
    steps = torch.cat([data["xa"][data["ma"].bool()], data["xb"][data["mb"].bool()]])
    r = trainer.predict(steps)
    assert abs(r.mean().item()) < 1e-4 and r.std().item() == pytest.approx(1.0, abs=1e-3)


def test_reward_model_learns_the_terminal_state_from_short_segments():
    # True reward 1 per step alive; segments that ended early are worse. Scores of short segments are only
    # comparable through the absorbing reward, which must come out below the reward of staying alive.
    rng = np.random.default_rng(0)
    segs = []
    for _ in range(300):
        length = int(rng.integers(2, 11))
        ended = length < 10
        segs.append(
            Segment(
                rng.normal(size=(length, 3)),
                rng.normal(size=(length, 1)),
                np.ones(length),
                ended=ended,
                absorbing=10 - length if ended else 0,
            )
        )
    labeler = SyntheticLabeler(LabelerConfig(), seed=0)
    labeler.ask(list(zip(segs[0::2], segs[1::2])))
    trainer = RewardModelTrainer(4, RewardModelConfig(epochs=30), seed=0)
    trainer.add(labeler.poll())
    assert trainer.fit()["val_accuracy"] > 0.8
    assert trainer.model.absorbing_reward() < -1.0  # well below the (zero-mean) reward of being alive


def test_bootstrap_weights_hold_out_about_one_in_e():
    trainer = RewardModelTrainer(4, RewardModelConfig(), seed=0)
    rng = np.random.default_rng(0)
    trainer.add([LabeledPair(_segment(rng), _segment(rng), 1.0) for _ in range(2000)])
    held_out = (trainer.data.tensors()["weight"] == 0).float().mean().item()
    assert held_out == pytest.approx(math.exp(-1), abs=0.02)


# ---- the plugin ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SpyConfig(AlgoConfig):
    name: str = "pref_spy"
    num_steps: int = 64


class SpyAlgorithm(Algorithm):
    """Records what the preference plugin hands to its inner algorithm."""

    Config = SpyConfig

    def __init__(self, cfg, policy, *, seed=0):
        super().__init__(cfg, policy, seed=seed)
        self.batches: list[RolloutBatch] = []

    def update(self, batch):
        self.batches.append(batch)
        return {"spy": 1.0}


@pytest.fixture
def spy():
    ALGORITHMS.register("pref_spy", SpyAlgorithm, override=True)
    yield
    ALGORITHMS._items.pop("pref_spy", None)


def _fake_batch(rng: np.random.Generator, T: int = 64, N: int = 2) -> RolloutBatch:
    raw_obs = torch.tensor(rng.normal(size=(T, N, 3)), dtype=torch.float32)
    actions = torch.tensor(rng.normal(size=(T, N, 1)), dtype=torch.float32)
    dones = torch.zeros(T, N)
    dones[rng.integers(0, T, size=3), 0] = 1.0
    true = raw_obs[..., 0] + 0.5 * actions[..., 0]
    return RolloutBatch(
        obs=raw_obs * 0.1,
        actions=actions,
        logp=torch.zeros(T, N),
        values=torch.zeros(T, N),
        rewards=true * 1000.0,
        dones=dones,
        last_value=torch.zeros(N),
        bootstrap_values=torch.zeros(T, N),
        info={"raw_rewards": true, "raw_obs": raw_obs, "episode_returns": [1.0, 2.0], "stat/x": 3.0},
    )


def _plugin(**kw) -> PreferenceLearning:
    cfg = _cfg(inner="pref_spy", total_labels=40, segment_length=6, label_horizon=0.5, **kw)
    algo = PreferenceLearning(cfg, torch.nn.Linear(1, 1), seed=0)
    algo.attach(StepSegments(obs_dim=3, act_dim=1, settings=algo.settings()))  # the fake batch's sizes
    return algo


def test_plugin_relabels_and_never_shows_the_true_reward(spy):
    rng = np.random.default_rng(0)
    algo = _plugin()
    assert algo.rollout_length == 64  # the inner algorithm's
    corr = []
    for i in range(6):
        algo.set_progress(i / 6)
        batch = _fake_batch(rng)
        metrics = algo.update(batch)
        seen = algo.inner.batches[-1]
        assert "raw_rewards" not in seen.info and "episode_returns" not in seen.info and "stat/x" in seen.info
        assert not torch.equal(seen.rewards, batch.rewards)
        assert "raw_rewards" in batch.info, (
            "the caller's batch is left alone (the loop logs its true returns)"
        )
        assert algo.inner.progress == algo.progress
        corr.append(metrics["pref/reward_corr"])
    assert metrics["pref/labels"] == 40 and metrics["pref/asked"] == 40 and metrics["spy"] == 1.0
    assert corr[-1] > 0.6 and corr[-1] > corr[0] + 0.3, f"predicted reward should track the true one: {corr}"


def test_plugin_state_dict_round_trips_with_weights_only(spy, tmp_path):
    rng = np.random.default_rng(0)
    algo = _plugin()
    for i in range(3):
        algo.set_progress(i / 6)
        algo.update(_fake_batch(rng))
    torch.save(algo.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    fresh = _plugin()
    fresh.load_state_dict(state)
    batch = _fake_batch(np.random.default_rng(5))
    for a in (algo, fresh):
        a.set_progress(0.6)
        a.update(batch)
    assert torch.equal(algo.inner.batches[-1].rewards, fresh.inner.batches[-1].rewards)
    assert len(fresh.reward_model.data) == len(algo.reward_model.data)


def test_disagreement_selection_takes_the_most_disputed_pairs(spy):
    rng = np.random.default_rng(0)
    algo = _plugin(selection="disagreement")
    algo.update(_fake_batch(rng))  # trains the reward model on the initial labels
    segments = [_segment(rng, obs_dim=3) for _ in range(20)]
    pairs = [(segments[i], segments[i + 1]) for i in range(0, 20, 2)]
    variance = torch.arange(10, dtype=torch.float32)
    algo.reward_model.disagreement = lambda a, b: variance  # pair i has variance i
    chosen = algo._select(pairs, 3)
    assert [next(i for i, s in enumerate(segments) if s is a) // 2 for a, _ in chosen] == [9, 8, 7]
    real = RewardModelTrainer(4, RewardModelConfig(), seed=0).disagreement(segments[:4], segments[4:8])
    assert real.shape == (4,) and (real >= 0).all()


# ---- the human labeler and the store ---------------------------------------------------------------------


def test_human_labeler_waits_for_labels_or_gives_up(tmp_path):
    store_path = str(tmp_path / "labels.sqlite")
    rng = np.random.default_rng(0)
    labeler = HumanLabeler(LabelerConfig(kind="human", store=store_path, timeout_s=0.3, poll_s=0.05))
    labeler.ask([(_segment(rng), _segment(rng)) for _ in range(3)])
    assert labeler.pending == 3
    start = time.monotonic()
    assert labeler.poll(wait_for=1) == [] and time.monotonic() - start >= 0.3  # gave up, training goes on

    def answer():
        time.sleep(0.2)
        with LabelStore(store_path) as other:  # another process in real life: the web page
            other.add_label(1, "right")
            other.add_label(2, "skip")

    labeler.cfg = dataclasses.replace(labeler.cfg, timeout_s=10.0)
    threading.Thread(target=answer).start()
    got = labeler.poll(wait_for=2)
    assert [(p.query_id, p.target) for p in got] == [(1, 0.0)]  # the skip counts as answered, not as a label
    assert labeler.pending == 1

    again = HumanLabeler(
        LabelerConfig(kind="human", store=store_path)
    )  # a restarted trainer reuses the store
    assert again.asked == 3 and [p.query_id for p in again.poll()] == [1]


def test_store_is_append_only_and_first_answer_wins(tmp_path):
    rng = np.random.default_rng(0)
    with LabelStore(tmp_path / "s.sqlite") as store:
        (qid,) = store.add_queries([(_segment(rng), _segment(rng))])
        assert store.add_label(qid, "left") is True
        assert store.add_label(qid, "right") is False
        with pytest.raises(KeyError):
            store.add_label(999, "left")
        with pytest.raises(ValueError):
            store.add_label(qid, "maybe")
        assert store.labeled_pairs()[0].target == 1.0
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    for sql in ("UPDATE labels SET choice = 'right'", "DELETE FROM labels", "DELETE FROM queries"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from rlarena.label_store import LabelStore
    from rlarena.preferences import Segment
    store = LabelStore(sys.argv[1])
    seg = Segment(np.zeros((3, 2)), np.zeros((3, 1)))
    i = 0
    while True:
        (qid,) = store.add_queries([(seg, seg)])
        store.add_label(qid, ("left", "right", "equal")[i % 3])
        print(qid, flush=True)  # acknowledged: add_label returned, so the commit is on disk
        i += 1
    """
)


def test_killed_writer_loses_no_acknowledged_label(tmp_path):
    path = tmp_path / "labels.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    try:
        for line in proc.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) >= 25:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown: as in a crash
        proc.wait()
    with LabelStore(path) as store:
        stored = {p.query_id for p in store.labeled_pairs()}
        assert set(acknowledged) <= stored
        assert store.counts()["labels"] >= 25


# ---- the offline reward-model command --------------------------------------------------------------------


def test_reward_model_command_trains_from_a_store_and_from_jsonl(tmp_path, capsys):
    from rlarena.bench.reward_model_cli import main, train_from_labels_file
    from rlarena.reward_ensemble import load_reward_ensemble

    rng = np.random.default_rng(0)
    w = rng.normal(size=8)
    store_path = tmp_path / "labels.sqlite"
    labeler = SyntheticLabeler(LabelerConfig(store=str(store_path)), seed=0)
    segs = _linear_segments(rng, 200, w)
    labeler.ask(list(zip(segs[0::2], segs[1::2])))

    assert main([f"labels={store_path}", f"out={tmp_path / 'rm'}", "epochs=30", "ensemble_size=2"]) == 0
    shown = json.loads(capsys.readouterr().out.split("\nsaved")[0])
    assert shown["pairs"] == 100 and shown["true_return_spearman"] > 0.8
    model = load_reward_ensemble(str(tmp_path / "rm" / "reward_model.pt"))
    assert len(model.members) == 2
    assert json.loads((tmp_path / "rm" / "metrics.json").read_text())["pairs"] == 100

    with LabelStore(store_path) as store:
        assert store.export_jsonl(tmp_path / "labels.jsonl") == 100
    _, metrics = train_from_labels_file(tmp_path / "labels.jsonl", {"epochs": 5})
    assert metrics["pairs"] == 100

    assert main(["labels=/no/such/file.jsonl"]) == 2
    assert main([f"labels={store_path}", "no_such_option=1"]) == 2
    assert main([f"labels={store_path}", "ensemble_size=0"]) == 2
    assert main([f"labels={store_path}", "hidden_sizes=64,x"]) == 2
    assert "hidden_sizes='64,x': expected list[int]" in capsys.readouterr().err


def test_key_values_parse_int_lists():
    from rlarena.bench.keyvalue import parse_key_values

    for text in ("32,16", "[32,16]", "[32, 16]"):
        assert parse_key_values(RewardModelConfig, [f"hidden_sizes={text}"]).hidden_sizes == [32, 16]
    args = ["adaptive_l2=false", "learning_rate=1e-3", "validation=holdout"]
    cfg = parse_key_values(RewardModelConfig, args)
    assert (cfg.adaptive_l2, cfg.learning_rate, cfg.validation) == (False, 1e-3, "holdout")
    with pytest.raises(ValueError, match="unknown key 'hiden_sizes'"):
        parse_key_values(RewardModelConfig, ["hiden_sizes=32"])


def test_reward_from_labels_is_a_command_of_its_own(capsys):
    from rlarena.bench.cli import main as rlarena

    assert rlarena(["reward-from-labels", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: rlarena reward-from-labels labels=<file>" in out
    assert "epochs               100" in out  # the offline defaults
    # `reward-model` is the text pipeline's step 2 only: labels= there names the command to use, in one line.
    assert rlarena(["reward-model", "labels=labels.sqlite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`rlarena reward-from-labels labels=<file> ...`" in err
    assert rlarena(["reward-model", "--help"]) == 0 and "Step 2" in capsys.readouterr().out


# ---- end to end through the training command -------------------------------------------------------------


def test_train_command_runs_preference_with_a_store(cli, tmp_path, tiny_overrides):
    store = tmp_path / "labels.sqlite"
    cli(
        "train",
        "algo=preference",
        "env=invertedpendulum",
        f"hydra.run.dir={tmp_path}/run",
        "algo.total_labels=12",
        "algo.segment_length=5",
        "algo.label_horizon=0.5",
        f"algo.labeler.store={store}",
        *tiny_overrides,
        cwd=tmp_path,
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train[-1]["pref/labels"] == 12 and "rm/val_accuracy" in train[-1]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["algorithm"]["reward_model"] is not None
    with LabelStore(store) as s:
        assert s.counts()["labels"] == 12 and s.status()["budget"] == 12


def test_training_with_the_human_labeler_waits_for_and_uses_store_labels(tmp_path):
    """The human path without a browser: a 'person' answers queries in the store while training waits."""
    from rlarena.bench.train import load_config, run_training

    store_path = tmp_path / "labels.sqlite"
    stop = threading.Event()

    def person():  # prefers the larger true return, skips every fifth query
        with LabelStore(store_path) as store:
            while not stop.is_set():
                query = store.next_pending()
                if query is None:
                    time.sleep(0.02)
                    continue
                better = "left" if query.a.true_return >= query.b.true_return else "right"
                store.add_label(query.id, "skip" if query.id % 5 == 0 else better)

    LabelStore(store_path).close()  # created before the person looks at it
    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    overrides = [
        *("algo=preference", "env=invertedpendulum", "total_steps=2048", "algo.num_steps=512"),
        *("algo.total_labels=20", "algo.segment_length=5", "algo.label_horizon=0.5"),
        *("algo.labeler.kind=human", f"algo.labeler.store={store_path}", "algo.labeler.wait=always"),
        *("algo.labeler.timeout_s=60", "algo.labeler.poll_s=0.02"),
        *("eval.episodes=1", "eval.every_steps=0", "progress=false", "tensorboard=false"),
    ]
    try:
        run_training(load_config(overrides), tmp_path / "run", explicit_keys=set())
    finally:
        stop.set()
        thread.join()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["kind"] == "train"][-1]
    with LabelStore(store_path) as store:
        counts, status = store.counts(), store.status()
    assert counts["queries"] == 20 and counts["pending"] == 0 and counts["skipped"] == 4
    assert last["pref/labels"] == counts["labels"] == 16 and last["pref/pending"] == 0
    assert status["budget"] == 20 and status["labels"] == 16 and 0 <= status["val_accuracy"] <= 1
