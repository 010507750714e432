"""Bradley-Terry preference model (Christiano et al. 2017), shared by every reward model in the project.

A segment's score is the sum of predicted rewards over it (MuJoCo) or the reward model's output for a whole
response (text). The probability that ``a`` is preferred to ``b`` is ``sigmoid(score_a - score_b)``; with the
paper's label-noise model a labeler answers uniformly at random with probability ``label_noise``:
``P(a > b) = (1 - label_noise) * sigmoid(score_a - score_b) + label_noise / 2``.

The module also holds what labelers, label stores and reward models exchange: a :class:`Segment` (a piece of
trajectory, or one response to a prompt), the label vocabulary (``left`` = segment ``a``, ``right`` = ``b``,
``equal``, ``skip``) and the targets those labels mean for the loss.

And the contract between the ``preference`` algorithm and an environment family (:class:`PreferenceSupport`):
the environment, not the algorithm, says what a comparable unit is (MuJoCo: a window of steps inside one
episode; text: a whole response, compared only with responses to the same prompt), which reward model reads
it (:class:`PreferenceRewardModel`: an MLP ensemble on observation-action features; the text environment's
transformer), and how the model's predictions go back into a batch (MuJoCo: every step's reward; text: the
response's score at its last token, the per-token KL penalty kept).
"""

from __future__ import annotations

import io
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from rlarena.rollout import RolloutBatch

SegmentUnit = Literal["steps", "response"]

# A label is the probability that the left segment (``a``) is preferred; ``skip`` carries no information
# (the paper's "incomparable") and never reaches the loss.
CHOICES: dict[str, float | None] = {"left": 1.0, "right": 0.0, "equal": 0.5, "skip": None}


def choice_to_target(choice: str) -> float | None:
    if choice not in CHOICES:
        raise ValueError(f"unknown label {choice!r}; expected one of {', '.join(CHOICES)}")
    return CHOICES[choice]


def target_to_choice(target: float) -> str:
    return {1.0: "left", 0.0: "right", 0.5: "equal"}[float(target)]


def preference_probability(
    score_a: torch.Tensor, score_b: torch.Tensor, label_noise: float = 0.0
) -> torch.Tensor:
    """P(segment a is preferred to segment b), elementwise."""
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    return (1.0 - label_noise) * torch.sigmoid(score_a - score_b) + 0.5 * label_noise


def bradley_terry_loss(
    score_a: torch.Tensor,
    score_b: torch.Tensor,
    target: torch.Tensor,
    label_noise: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy between the labels and the Bradley-Terry model (mean, or per pair with ``"none"``).

    ``target`` is the labeled probability that ``a`` is preferred: 1 (a), 0 (b) or 0.5 (equally good).
    """
    if not (score_a.shape == score_b.shape == target.shape):
        raise ValueError(
            f"shapes differ: {tuple(score_a.shape)}, {tuple(score_b.shape)}, {tuple(target.shape)}"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    diff = score_a - score_b
    if label_noise == 0.0:  # exact, numerically stable path
        return F.binary_cross_entropy_with_logits(diff, target.to(diff.dtype), reduction=reduction)
    p = preference_probability(score_a, score_b, label_noise)
    return F.binary_cross_entropy(p, target.to(p.dtype), reduction=reduction)


def preference_accuracy(score_a: torch.Tensor, score_b: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per pair, how far the model agrees with the label: 1 where it orders the pair as the label does, 0
    where it orders it the other way, 1/2 where it scores both the same; NaN where the label is a tie
    (``target == 0.5``: there is no order to agree with). The one accuracy of every reward model here."""
    model = (score_a > score_b).to(torch.float32) - (score_a < score_b).to(torch.float32)  # +1, -1 or 0
    label = (target > 0.5).to(torch.float32) - (target < 0.5).to(torch.float32)
    agree = 0.5 * (1.0 + model * label)
    return torch.where(label == 0, torch.full_like(agree, float("nan")), agree)


def boltzmann_preference(return_a: np.ndarray, return_b: np.ndarray, temperature: float) -> np.ndarray:
    """P(a > b) of a Boltzmann-rational labeler, ``sigmoid((R_a - R_b) / temperature)`` (0: larger wins)."""
    diff = np.asarray(return_a, dtype=np.float64) - np.asarray(return_b, dtype=np.float64)
    if temperature == 0:
        return np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    return 0.5 * (1.0 + np.tanh(diff / (2.0 * temperature)))  # sigmoid without overflow


@dataclass(eq=False)  # identity, not array equality
class Segment:
    """What a labeler compares and a reward model scores: a piece of one episode, or one text response.

    ``unit="steps"`` (MuJoCo): ``obs`` are raw (unnormalized) observations ``[L, obs_dim]`` and ``actions``
    ``[L, act_dim]``; ``states`` (simulator ``qpos ++ qvel`` per step) let a person's page render the segment
    as a clip. ``ended`` says the episode terminated at its last step; ``absorbing`` is how many steps the
    segment would have had after that (it stands for a full-length segment whose tail sits in the terminal,
    absorbing state, where the true reward is 0).

    ``unit="response"`` (text): ``obs`` are the prompt's token ids ``[P]`` and ``actions`` the response's
    ``[L]`` (no padding); ``display`` holds what a person reads instead of a clip (``prompt`` and
    ``response`` as text).

    Either way ``true_rewards`` (per step; a response has one, its task score) serve the synthetic labeler and
    evaluation only.
    """

    obs: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray | None = None
    states: np.ndarray | None = None
    ended: bool = False
    absorbing: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # env_id, where it was cut from, ...
    unit: SegmentUnit = "steps"
    display: dict[str, str] | None = None  # text: {"prompt": ..., "response": ...}

    def __post_init__(self) -> None:
        if self.unit == "response":
            self.obs = np.asarray(self.obs, dtype=np.int64).reshape(-1)
            self.actions = np.asarray(self.actions, dtype=np.int64).reshape(-1)
            if len(self.actions) == 0:
                raise ValueError("a response segment needs at least one response token")
        elif self.unit == "steps":
            self.obs = np.asarray(self.obs, dtype=np.float32)
            actions = np.asarray(self.actions, dtype=np.float32)
            self.actions = actions.reshape(len(actions), -1)
            if self.obs.ndim != 2 or len(self.obs) != len(self.actions) or len(self.obs) == 0:
                raise ValueError(
                    f"segment needs obs [L, d] and actions [L, k], got {self.obs.shape}, {actions.shape}"
                )
        else:
            raise ValueError(f"segment unit must be 'steps' or 'response', got {self.unit!r}")
        if self.true_rewards is not None:
            self.true_rewards = np.asarray(self.true_rewards, dtype=np.float32).reshape(-1)
        if self.states is not None:
            self.states = np.asarray(self.states, dtype=np.float64)
        self.ended = bool(self.ended)
        self.absorbing = int(self.absorbing)
        if self.absorbing < 0 or (self.absorbing and not self.ended):
            raise ValueError("only a segment that ended can have absorbing steps (>= 0)")
        if self.display is not None:
            self.display = {str(k): str(v) for k, v in dict(self.display).items()}

    def __len__(self) -> int:
        """Steps, or the response's tokens."""
        return len(self.actions)

    @property
    def true_return(self) -> float:
        if self.true_rewards is None:
            return math.nan
        return float(self.true_rewards.sum())

    def features(self) -> np.ndarray:
        """Reward-model input per step: observation and action side by side, ``[L, obs_dim + act_dim]``."""
        if self.unit != "steps":
            raise TypeError("a response segment has token ids, not per-step features")
        return np.concatenate([self.obs, self.actions], axis=1)

    # ---- serialization (label stores, JSONL files) -------------------------------------------------------

    def to_bytes(self) -> bytes:
        arrays = {
            "obs": self.obs,
            "actions": self.actions,
            "ended": np.asarray(self.ended),
            "absorbing": np.asarray(self.absorbing),
            "unit": np.asarray(self.unit),
        }
        if self.true_rewards is not None:
            arrays["true_rewards"] = self.true_rewards
        if self.states is not None:
            arrays["states"] = self.states
        if self.display is not None:
            arrays["display"] = np.asarray(json.dumps(self.display))
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # exact floats, no pickle
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, meta: dict[str, Any] | None = None) -> Segment:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(
                obs=z["obs"],
                actions=z["actions"],
                true_rewards=z.get("true_rewards"),
                states=z.get("states"),
                ended=bool(z["ended"]),
                absorbing=int(z["absorbing"]) if "absorbing" in z else 0,
                meta=dict(meta or {}),
                unit=str(z["unit"]) if "unit" in z else "steps",
                display=json.loads(str(z["display"])) if "display" in z else None,
            )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "obs": self.obs.tolist(),
            "actions": self.actions.tolist(),
            "ended": self.ended,
            "absorbing": self.absorbing,
        }
        if self.true_rewards is not None:
            out["true_rewards"] = self.true_rewards.tolist()
        if self.states is not None:
            out["states"] = self.states.tolist()
        if self.meta:
            out["meta"] = self.meta
        if self.unit != "steps":
            out["unit"] = self.unit
        if self.display is not None:
            out["display"] = self.display
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Segment:
        return cls(
            obs=d["obs"],
            actions=d["actions"],
            true_rewards=d.get("true_rewards"),
            states=d.get("states"),
            ended=bool(d.get("ended", False)),
            absorbing=int(d.get("absorbing", 0)),
            meta=dict(d.get("meta") or {}),
            unit=d.get("unit", "steps"),
            display=d.get("display"),
        )


@dataclass(eq=False)
class LabeledPair:
    """Two segments and the labeled probability that ``a`` (shown on the left) is preferred."""

    a: Segment
    b: Segment
    target: float
    query_id: int | None = None


# ---- the contract between algo=preference and an environment family --------------------------------------


@dataclass
class PreferenceSettings:
    """What ``algo=preference`` tells an environment about segments and the reward model it wants."""

    segment_length: int = 25  # steps per segment (families whose unit is a whole response ignore it)
    absorbing: bool = True  # learn a reward for the terminal state (steps segments that ended early)
    gamma: float = 0.99  # the inner algorithm's discount (the absorbing state's reward, folded in)
    reward_model: Any = None  # rlarena.reward_ensemble.RewardModelConfig: the reward model's settings


class PreferenceRewardModel(ABC):
    """A reward model learned online from labeled pairs, trained by the shared Bradley-Terry loss."""

    rounds: int = 0  # training rounds done
    warm_started: bool = False  # started from a saved reward model (RewardModelConfig.init)
    last_metrics: dict[str, float]

    @property
    def trained(self) -> bool:
        """Whether it predicts anything yet (until then the rewards it gives are zeros)."""
        return self.rounds > 0 or self.warm_started

    @property
    @abstractmethod
    def num_labels(self) -> int:
        """Labeled pairs it learns from (skips excluded)."""

    @abstractmethod
    def add(self, pairs: list[LabeledPair]) -> None:
        """Add labeled pairs to the training data."""

    @abstractmethod
    def fit(self) -> dict[str, float]:
        """One training round over the labels so far; metrics (``val_accuracy``: held-out pairs)."""

    @abstractmethod
    def disagreement(self, a: list[Segment], b: list[Segment]) -> torch.Tensor:
        """Per candidate pair, how uncertain the model is about which side wins (larger: ask a person)."""

    def extra_metrics(self) -> dict[str, float]:
        """Model-specific figures to log (e.g. the learned reward of the terminal state)."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Relabeled:
    """A batch's rewards with the environment's task reward replaced by the reward model's prediction."""

    rewards: torch.Tensor  # [T, N] float64, what the inner algorithm optimizes (env penalties kept)
    predicted: torch.Tensor  # [U] the model's reward per labeled unit (step or response), for logging
    true: torch.Tensor | None = None  # [U] the true reward of the same units (logging only), if known


class PreferenceSupport(ABC):
    """How an environment family takes part in learning from preferences (``Environment.preference_support``).

    The algorithm asks it for candidate pairs, hands them to a labeler, trains the model it makes, and has it
    relabel every batch; the algorithm itself knows nothing of observations, tokens or simulators.
    """

    unit: SegmentUnit

    @abstractmethod
    def candidate_pairs(
        self, batch: RolloutBatch, count: int, generator: torch.Generator
    ) -> list[tuple[Segment, Segment]]:
        """Up to ``count`` random pairs of comparable segments cut from ``batch``."""

    @abstractmethod
    def make_reward_model(self, seed: int) -> PreferenceRewardModel:
        """A fresh reward model for this family's segments (seeded)."""

    @abstractmethod
    def relabel(self, batch: RolloutBatch, model: PreferenceRewardModel) -> Relabeled:
        """The batch's rewards as the model predicts them (zeros while it is untrained)."""
