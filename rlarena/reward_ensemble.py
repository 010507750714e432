"""Reward model from pairwise preferences (Christiano et al. 2017): an MLP ensemble on (observation, action).

Each member predicts a per-step reward ``r(o, a)``; a segment's score is the sum over its steps and the
Bradley-Terry model (``rlarena.preferences``) turns two scores into a preference probability. Training follows
the paper:

* every member sees its own bootstrap resample of the labels (each label gets a Poisson(1) weight per
  member); the labels a member did not draw (about 1/e of them) are its held-out validation set;
* optional 10% label-noise model, ties as 0.5/0.5 targets, L2 (optionally adapted to keep the validation
  loss between 1.1x and 1.5x the training loss, as in the paper) or dropout;
* the reward handed to the RL algorithm is the ensemble mean of the members' rewards, each normalized to zero
  mean and unit std over the labeled segments' steps, then normalized again as a whole.

Episodes that terminate (a pendulum falls, a hopper tumbles) make segments shorter than the rest. Summing
fewer steps would leave the reward of "being over" undefined, and zero-mean normalization could then make
ending an episode look good. So each member also learns one reward per step spent in the terminal,
absorbing state: a segment that ended early scores its steps plus ``absorbing`` times that reward (the
steps it would have had). The RL algorithm gets that reward forever after termination (folded into the
terminal step as ``gamma / (1 - gamma) * r_absorbing``); shifting every reward by the same constant, as the
normalization does, then changes no preference between policies.

Inputs are standardized with the statistics of the labeled steps, refreshed at each training round (so the
function is fixed between rounds, whatever the policy visits meanwhile).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rlarena.errors import ConfigError, MissingFileError, check, check_positive, check_unit
from rlarena.preferences import (
    LabeledPair,
    PreferenceRewardModel,
    Segment,
    bradley_terry_loss,
    preference_accuracy,
)


@dataclass
class RewardModelConfig:
    ensemble_size: int = 3
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    learning_rate: float = 3e-4
    batch_size: int = 64  # labeled pairs per gradient step
    epochs: int = 10  # passes over the labels per training round
    max_steps_per_round: int = 1000  # caps the cost of a round once the label set is large
    label_noise: float = 0.1  # the paper's "10% of labels are uniformly random"
    l2: float = 1e-3  # coefficient of the summed squared weights (biases excluded)
    adaptive_l2: bool = True  # keep validation loss within [1.1, 1.5] x training loss (paper)
    dropout: float = 0.0
    validation: str = "bootstrap"  # bootstrap: out-of-bag labels per member; holdout: a shared held-out share
    validation_fraction: float = 0.2  # for validation=holdout
    # A saved reward model to start from (it then relabels from the first update): the MLP ensemble of
    # `rlarena reward-from-labels` (reward_model.pt, same input size and ensemble size), or on text the
    # model of `rlarena reward-model` (rm.pt). null: from scratch.
    init: str | None = None

    def __post_init__(self) -> None:
        check(self.ensemble_size >= 1, f"reward_model.ensemble_size must be >= 1, got {self.ensemble_size}")
        check(
            len(self.hidden_sizes) >= 1 and all(h > 0 for h in self.hidden_sizes),
            f"reward_model.hidden_sizes must be positive, got {self.hidden_sizes}",
        )
        check_positive("reward_model.learning_rate", self.learning_rate)
        check(self.batch_size >= 1, f"reward_model.batch_size must be >= 1, got {self.batch_size}")
        check(self.epochs >= 1, f"reward_model.epochs must be >= 1, got {self.epochs}")
        check(self.max_steps_per_round >= 1, "reward_model.max_steps_per_round must be >= 1")
        check(
            0 <= self.label_noise < 1, f"reward_model.label_noise must be in [0, 1), got {self.label_noise}"
        )
        check(self.l2 >= 0 and math.isfinite(self.l2), f"reward_model.l2 must be >= 0, got {self.l2}")
        check(0 <= self.dropout < 1, f"reward_model.dropout must be in [0, 1), got {self.dropout}")
        check(
            self.validation in ("bootstrap", "holdout"),
            f"reward_model.validation must be bootstrap|holdout, got {self.validation!r}",
        )
        check_unit("reward_model.validation_fraction", self.validation_fraction)
        if self.init is not None and not os.path.isfile(self.init):
            raise MissingFileError(f"reward_model.init: no reward model at {self.init!r}")
        check(
            self.validation == "bootstrap" or self.validation_fraction < 1,
            "reward_model.validation_fraction must be < 1 with validation=holdout",
        )


class RewardMLP(nn.Module):
    """One ensemble member: ``[..., d] -> [...]`` (leaky ReLU, as in the paper's MuJoCo predictor)."""

    def __init__(self, input_dim: int, hidden_sizes: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        sizes = [input_dim, *hidden_sizes]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.01)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class RewardEnsemble(nn.Module):
    """The ensemble, with its input standardization and output normalization as buffers (saved with it)."""

    def __init__(self, input_dim: int, cfg: RewardModelConfig) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.cfg = cfg
        m = cfg.ensemble_size
        self.members = nn.ModuleList(
            RewardMLP(input_dim, list(cfg.hidden_sizes), cfg.dropout) for _ in range(m)
        )
        self.absorbing = nn.Parameter(torch.zeros(m))  # per-step reward after termination, per member
        self.register_buffer("in_mean", torch.zeros(input_dim))
        self.register_buffer("in_std", torch.ones(input_dim))
        self.register_buffer("member_mean", torch.zeros(m))
        self.register_buffer("member_std", torch.ones(m))
        self.register_buffer("out_mean", torch.zeros(()))
        self.register_buffer("out_std", torch.ones(()))

    def member_rewards(self, x: torch.Tensor) -> torch.Tensor:
        """Raw per-step rewards of every member, ``[M, ...]`` for inputs ``[..., d]``."""
        z = (x - self.in_mean) / self.in_std
        return torch.stack([member(z) for member in self.members])

    def member_scores(
        self, x: torch.Tensor, mask: torch.Tensor, absorbing: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Segment scores of every member, ``[M, B]`` for ``x [B, L, d]``: the rewards of the valid steps plus
        ``absorbing [B]`` steps of the member's terminal-state reward."""
        scores = (self.member_rewards(x) * mask).sum(-1)
        if absorbing is not None:
            scores = scores + self.absorbing[:, None] * absorbing
        return scores

    @torch.no_grad()
    def absorbing_reward(self) -> float:
        """The terminal state's per-step reward on the scale of :meth:`predict`."""
        r = (self.absorbing - self.member_mean) / self.member_std
        return float((r.mean() - self.out_mean) / self.out_std)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The reward for RL: mean of the normalized member rewards, renormalized (shape ``x[..., 0]``)."""
        was_training = self.training
        self.eval()
        r = self.member_rewards(x)
        shape = (-1,) + (1,) * (r.dim() - 1)
        r = (r - self.member_mean.view(shape)) / self.member_std.view(shape)
        out = (r.mean(0) - self.out_mean) / self.out_std
        self.train(was_training)
        return out

    @torch.no_grad()
    def fit_normalization(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        """Zero mean, unit std over the valid steps of ``x`` (``[B, L, d]``), per member and for the mean."""
        was_training = self.training
        self.eval()
        valid = x[mask.bool()]
        r = self.member_rewards(valid)  # [M, S]
        self.member_mean.copy_(r.mean(1))
        self.member_std.copy_(
            r.std(1).clamp_min(1e-6) if r.shape[1] > 1 else torch.ones_like(self.member_mean)
        )
        ens = ((r - self.member_mean[:, None]) / self.member_std[:, None]).mean(0)
        self.out_mean.copy_(ens.mean())
        self.out_std.copy_(ens.std().clamp_min(1e-6) if ens.numel() > 1 else torch.ones(()))
        self.train(was_training)

    def l2_penalty(self) -> torch.Tensor:
        """Sum of squared weights (biases excluded), averaged over members."""
        weights = [p for name, p in self.named_parameters() if name.endswith("weight")]
        return torch.stack([w.pow(2).sum() for w in weights]).sum() / len(self.members)


def _pad(rows: list[np.ndarray], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step arrays ``[L_i, ...]`` zero padded to ``[B, length, ...]`` (float32), and the mask
    ``[B, length]`` (1 on the real steps)."""
    x = torch.zeros(len(rows), length, *rows[0].shape[1:], dtype=torch.float32)
    mask = torch.zeros(len(rows), length, dtype=torch.float32)
    for i, row in enumerate(rows):
        x[i, : len(row)] = torch.from_numpy(row)
        mask[i, : len(row)] = 1.0
    return x, mask


def padded_features(
    segments: list[Segment], length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features ``[B, L, d]`` (zero padded), mask ``[B, L]`` and absorbing steps ``[B]`` of segments; ``L`` is
    ``length``, or the longest segment's."""
    x, mask = _pad([s.features() for s in segments], length or max(len(s) for s in segments))
    return x, mask, torch.tensor([float(s.absorbing) for s in segments])


class PreferenceDataset:
    """Labeled pairs, padded into tensors on demand, with one bootstrap weight per (member, label).

    A weight of 0 means the member holds that label out: it is that member's validation data.
    """

    def __init__(
        self, ensemble_size: int, validation: str = "bootstrap", validation_fraction: float = 0.2
    ) -> None:
        self.ensemble_size = ensemble_size
        self.validation = validation
        self.validation_fraction = validation_fraction
        self.pairs: list[LabeledPair] = []
        self._weights: list[torch.Tensor] = []  # one [M] tensor per pair
        self._cache: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def has_absorbing(self) -> bool:
        return any(p.a.absorbing or p.b.absorbing for p in self.pairs)

    def add(self, pair: LabeledPair, generator: torch.Generator) -> None:
        m = self.ensemble_size
        if self.validation == "bootstrap":
            w = torch.poisson(torch.ones(m), generator=generator)  # online bootstrap (Oza & Russell)
        else:
            held_out = torch.rand((), generator=generator) < self.validation_fraction
            w = torch.zeros(m) if held_out else torch.ones(m)
        self.pairs.append(pair)
        self._weights.append(w)
        self._cache = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """``xa, xb [n, L, d]``, masks ``ma, mb [n, L]``, absorbing steps ``ka, kb [n]``, ``target [n]``,
        ``weight [M, n]``."""
        if self._cache is None:
            length = max(max(len(p.a), len(p.b)) for p in self.pairs)  # both sides padded alike
            xa, ma, ka = padded_features([p.a for p in self.pairs], length)
            xb, mb, kb = padded_features([p.b for p in self.pairs], length)
            self._cache = {
                "xa": xa,
                "xb": xb,
                "ma": ma,
                "mb": mb,
                "ka": ka,
                "kb": kb,
                "target": torch.tensor([p.target for p in self.pairs], dtype=torch.float32),
                "weight": torch.stack(self._weights, dim=1),
            }
        return self._cache

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loadable with ``weights_only=True``)."""
        if not self.pairs:
            return {"n": 0}
        t = self.tensors()
        true_a = [p.a.true_rewards for p in self.pairs]
        true_b = [p.b.true_rewards for p in self.pairs]
        has_true = all(r is not None for r in true_a + true_b)
        state = {
            "n": len(self.pairs),
            "obs_dim": int(self.pairs[0].a.obs.shape[1]),
            "len_a": torch.tensor([len(p.a) for p in self.pairs]),
            "len_b": torch.tensor([len(p.b) for p in self.pairs]),
            "ended_a": torch.tensor([p.a.ended for p in self.pairs]),
            "ended_b": torch.tensor([p.b.ended for p in self.pairs]),
            **{k: t[k] for k in ("xa", "xb", "ka", "kb", "target", "weight")},
        }
        if has_true:
            length = t["xa"].shape[1]
            state.update(true_a=_pad(true_a, length)[0], true_b=_pad(true_b, length)[0])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pairs, self._weights, self._cache = [], [], None
        d = int(state.get("obs_dim", 0))
        for i in range(int(state["n"])):
            segs = []
            for side in ("a", "b"):
                n_steps = int(state[f"len_{side}"][i])
                x = state[f"x{side}"][i, :n_steps].numpy()
                true = state[f"true_{side}"][i, :n_steps].numpy() if f"true_{side}" in state else None
                ended, absorbing = bool(state[f"ended_{side}"][i]), int(state[f"k{side}"][i])
                segs.append(Segment(x[:, :d], x[:, d:], true, ended=ended, absorbing=absorbing))
            self.pairs.append(LabeledPair(segs[0], segs[1], float(state["target"][i])))
            self._weights.append(state["weight"][:, i].clone())


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = weights.sum()
    return (values * weights).sum() / total if total > 0 else values.sum() * 0.0


def evaluate_reward_model(
    model: RewardEnsemble, data: dict[str, torch.Tensor], label_noise: float
) -> dict[str, float]:
    """Training and held-out (weight 0) loss and accuracy, averaged over members (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        sa = model.member_scores(data["xa"], data["ma"], data["ka"])
        sb = model.member_scores(data["xb"], data["mb"], data["kb"])
    model.train(was_training)
    target = data["target"].expand_as(sa)
    losses = bradley_terry_loss(sa, sb, target, label_noise, reduction="none")
    acc = preference_accuracy(sa, sb, target)
    train_w = data["weight"]
    val_w = (data["weight"] == 0).float()
    strict = ~torch.isnan(acc)
    acc0 = torch.nan_to_num(acc)

    def mean_over(w: torch.Tensor, x: torch.Tensor) -> float:
        return float(x.mul(w).sum() / w.sum()) if w.sum() > 0 else math.nan

    return {
        "train_loss": mean_over(train_w, losses),
        "train_accuracy": mean_over(train_w * strict, acc0),
        "val_loss": mean_over(val_w, losses),
        "val_accuracy": mean_over(val_w * strict, acc0),
        "val_pairs": float(val_w.sum()),
    }


class RewardModelTrainer(PreferenceRewardModel):
    """Owns the model, the dataset, the optimizer and the adaptive L2 coefficient."""

    def __init__(self, input_dim: int, cfg: RewardModelConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG stream
            torch.manual_seed(seed)
            self.model = RewardEnsemble(input_dim, cfg)
        self.data = PreferenceDataset(cfg.ensemble_size, cfg.validation, cfg.validation_fraction)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate)
        self.l2 = cfg.l2
        self.rounds = 0
        self.last_metrics: dict[str, float] = {}
        if cfg.init is not None:
            self._warm_start(cfg.init)

    def _warm_start(self, path: str) -> None:
        saved = load_reward_ensemble(path)
        if saved.input_dim != self.model.input_dim or len(saved.members) != len(self.model.members):
            raise ConfigError(
                f"reward_model.init: {path!r} reads {saved.input_dim} features with {len(saved.members)} "
                f"members; this run needs {self.model.input_dim} and {len(self.model.members)}"
            )
        self.model.load_state_dict(saved.state_dict())
        self.warm_started = True

    @property
    def num_labels(self) -> int:
        return len(self.data)

    def extra_metrics(self) -> dict[str, float]:
        if self.trained and self.data.has_absorbing:  # only learned where some segment ended early
            return {"absorbing_reward": self.model.absorbing_reward()}
        return {}

    def add(self, pairs: list[LabeledPair]) -> None:
        for p in pairs:
            if p.a.features().shape[1] != self.model.input_dim:
                raise ValueError(
                    f"segment features have {p.a.features().shape[1]} dims, "
                    f"the model expects {self.model.input_dim}"
                )
            self.data.add(p, self.generator)

    def fit(self) -> dict[str, float]:
        """One training round over the current labels; returns loss/accuracy metrics."""
        if len(self.data) == 0:
            return {}
        cfg, model = self.cfg, self.model
        data = self.data.tensors()
        n = len(self.data)
        # Standardize inputs with the labeled steps (both sides), fixed until the next round.
        steps = torch.cat([data["xa"][data["ma"].bool()], data["xb"][data["mb"].bool()]])
        model.in_mean.copy_(steps.mean(0))
        model.in_std.copy_(
            steps.std(0).nan_to_num(1.0).clamp_min(1e-3) if len(steps) > 1 else torch.ones_like(model.in_std)
        )

        batch = min(cfg.batch_size, n)
        num_steps = min(cfg.epochs * math.ceil(n / batch), cfg.max_steps_per_round)
        seed = int(torch.randint(0, 2**31 - 1, (), generator=self.generator))
        model.train()
        with torch.random.fork_rng(devices=[]):  # dropout draws from a seeded stream of its own
            torch.manual_seed(seed)
            for _ in range(num_steps):
                idx = torch.randint(0, n, (batch,), generator=self.generator)
                sa = model.member_scores(data["xa"][idx], data["ma"][idx], data["ka"][idx])  # [M, B]
                sb = model.member_scores(data["xb"][idx], data["mb"][idx], data["kb"][idx])
                target = data["target"][idx].expand_as(sa)
                losses = bradley_terry_loss(sa, sb, target, cfg.label_noise, reduction="none")
                w = data["weight"][:, idx]
                loss = torch.stack([_weighted_mean(losses[m], w[m]) for m in range(len(w))]).sum()
                if self.l2 > 0:
                    loss = loss + self.l2 * model.l2_penalty() * len(w)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()

        model.fit_normalization(torch.cat([data["xa"], data["xb"]]), torch.cat([data["ma"], data["mb"]]))
        metrics = evaluate_reward_model(model, data, cfg.label_noise)
        if cfg.adaptive_l2 and math.isfinite(metrics["val_loss"]) and metrics["train_loss"] > 0:
            ratio = metrics["val_loss"] / metrics["train_loss"]
            if ratio > 1.5:  # overfitting: regularize more
                self.l2 = min(self.l2 * 1.5 if self.l2 > 0 else 1e-4, 10.0)
            elif ratio < 1.1:
                self.l2 = self.l2 / 1.5
        self.rounds += 1
        metrics.update(l2=self.l2, labels=float(n), train_steps=float(num_steps))
        self.last_metrics = metrics
        return metrics

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.predict(features)

    @torch.no_grad()
    def disagreement(self, a: list[Segment], b: list[Segment]) -> torch.Tensor:
        """Variance across members of P(a > b), per candidate pair (the paper's query selection)."""
        self.model.eval()
        sa = self.model.member_scores(*padded_features(a))
        sb = self.model.member_scores(*padded_features(b))
        p = torch.sigmoid(sa - sb)
        return p.var(0, unbiased=False)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "data": self.data.state_dict(),
            "generator": self.generator.get_state(),
            "l2": self.l2,
            "rounds": self.rounds,
            "last_metrics": dict(self.last_metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.data.load_state_dict(state["data"])
        self.generator.set_state(state["generator"])
        self.l2 = float(state["l2"])
        self.rounds = int(state["rounds"])
        self.last_metrics = {k: float(v) for k, v in state.get("last_metrics", {}).items()}


def save_reward_ensemble(path: str, trainer: RewardModelTrainer, extra: dict[str, Any] | None = None) -> None:
    """A self-describing checkpoint: weights, normalization, config and input size."""
    from dataclasses import asdict

    from rlarena.io import atomic_torch_save

    atomic_torch_save(
        path,
        {
            "input_dim": trainer.model.input_dim,
            "config": asdict(trainer.cfg),
            "model": trainer.model.state_dict(),
            **(extra or {}),
        },
    )


def load_reward_ensemble(path: str) -> RewardEnsemble:
    from rlarena.io import safe_torch_load

    state = safe_torch_load(path)
    model = RewardEnsemble(int(state["input_dim"]), RewardModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model
