"""Deep RL from human preferences (Christiano et al. 2017) as a wrapper around any on-policy algorithm.

Each update:

1. if the label schedule asks for more labels, have the environment cut candidate pairs of comparable
   segments from the rollout, pick pairs among them (at random, or those the reward model is least sure of
   among ``candidate_factor`` times as many) and hand them to the labeler;
2. add the labels that came back to the dataset and train the reward model;
3. have the environment replace the batch's rewards with the reward model's, scale them by the running std
   of their discounted return when ``normalize_rewards`` is on (what the environment does for true rewards,
   lost once they are replaced), and call ``inner.update``.

What a segment is, which reward model reads it and how its predictions go back into the batch belong to the
environment family (``Environment.preference_support``, the contract in ``rlarena/preferences.py``): on
MuJoCo a window of ``segment_length`` steps inside one episode, an MLP ensemble, every step's reward
(envs/gym_preferences.py); on text a whole response, compared with other responses to the same prompt
(``responses_per_prompt`` per prompt), the text reward model, the response's score at its last token with
the KL penalty kept (envs/text/preferences.py). This file has no branch on either.

The inner algorithm never sees the environment's reward: it is removed from the batch it gets and only
logged here (``pref/reward_corr``: how well the predicted reward tracks the true one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from rlarena.normalize import RunningMeanStd
from rlarena.preferences import PreferenceRewardModel, PreferenceSettings, PreferenceSupport, Segment
from rlarena.registry import UnknownPluginError, get_algorithm, register_algorithm
from rlarena.reward_ensemble import RewardModelConfig
from rlarena.rollout import Environment, RolloutBatch

from ..base import AlgoConfig, Algorithm, ConfigError, PolicyConfig, check, check_unit
from .labelers import Labeler, LabelerConfig, make_labeler

# AlgoConfig's fields belong to the inner algorithm. PreferenceConfig redeclares each as nullable: left
# unset (null) it takes the inner value; set, it is forwarded. Either way the training loop reads the inner
# algorithm's values. (A field added to AlgoConfig without a nullable copy here fails at import.)
INNER_FIELDS = tuple(f.name for f in fields(AlgoConfig) if f.name != "name")
# What the inner algorithm must not see: the environment's reward in any form.
TRUE_REWARD_KEYS = ("raw_rewards", "episode_returns")
T = TypeVar("T")


def sub_config(cls: type[T], value: T | dict[str, Any] | None, name: str) -> T:
    """A nested config (``labeler``, ``reward_model``) from a config object or a plain dict (a YAML file, the
    command line); ``None`` gives the defaults."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    try:
        return cls(**dict(value))
    except TypeError as exc:
        raise ConfigError(f"invalid {name} config: {exc}") from None


def build_inner_config(name: str, overrides: dict[str, Any]) -> AlgoConfig:
    """The inner algorithm's Config: its defaults, then ``overrides``, validated as the training loop does."""
    from omegaconf import OmegaConf

    try:
        cls = get_algorithm(name)
    except UnknownPluginError as exc:
        raise ConfigError(f"algo.inner: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise ConfigError(f"algo.inner: {name!r} is not an Algorithm")
    if "name" in overrides:
        raise ConfigError("algo.inner_overrides.name: set the inner algorithm with algo.inner")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Config), overrides))
    except ConfigError as exc:
        raise ConfigError(f"invalid inner config for {name!r}: {exc}") from None
    except Exception as exc:  # OmegaConf's type and key errors
        raise ConfigError(f"invalid inner config for {name!r}: {exc}".strip()) from None


@dataclass
class PreferenceConfig(AlgoConfig):
    name: str = "preference"
    # The inner on-policy algorithm and its hyper-parameters (its Config defaults, then these overrides).
    inner: str = "ppo"
    inner_overrides: dict[str, Any] = field(default_factory=dict)
    # AlgoConfig's fields (INNER_FIELDS): null = the inner algorithm's value.
    num_envs: int | None = None
    num_steps: int | None = None
    gamma: float | None = None
    gae_lambda: float | None = None
    learning_rate: float | None = None
    anneal_lr: bool | None = None
    max_grad_norm: float | None = None
    normalize_observations: bool | None = None
    normalize_rewards: bool | None = None
    policy: PolicyConfig | None = None
    # Segments and queries.
    segment_length: int = 25  # steps (InvertedPendulum: 1 s; the paper used 1-2 s of simulated time)
    responses_per_prompt: int = 4  # text: responses sampled per prompt, compared in pairs (InstructGPT: 4-9)
    absorbing: bool = True  # learn a reward for the terminal state (see reward_model.py)
    selection: str = "disagreement"  # random | disagreement (variance of P(a > b) across the ensemble)
    candidate_factor: int = 10  # disagreement: candidate pairs per query
    # Label budget and schedule: `initial_fraction` of the labels before the first update, the rest at a rate
    # proportional to 1 / (label_decay + progress / label_horizon), finished at `label_horizon` of training.
    total_labels: int = 700
    initial_fraction: float = 0.25
    label_decay: float = 0.25
    label_horizon: float = 0.9
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)

    def __post_init__(self) -> None:
        check(
            isinstance(self.inner, str) and self.inner != "preference",
            f"algo.inner must name another algorithm, got {self.inner!r}",
        )
        overrides = dict(self.inner_overrides or {})
        for key in INNER_FIELDS:
            value = getattr(self, key)
            if value is None:
                continue
            value = asdict(value) if is_dataclass(value) else value
            if key in overrides and overrides[key] != value:
                raise ConfigError(
                    f"{key} is set both as algo.{key}={value} and algo.inner_overrides.{key}={overrides[key]}"
                )
            overrides[key] = value
        self._inner = build_inner_config(self.inner, overrides)
        self.inner_overrides = overrides
        for key in INNER_FIELDS:  # the training loop builds the env and the policy from these
            setattr(self, key, getattr(self._inner, key))
        self.labeler = sub_config(LabelerConfig, self.labeler, "labeler")
        self.reward_model = sub_config(RewardModelConfig, self.reward_model, "reward_model")
        super().__post_init__()
        check(self.segment_length >= 1, f"segment_length must be >= 1, got {self.segment_length}")
        check(
            self.responses_per_prompt >= 2,
            f"responses_per_prompt must be >= 2 (pairs of responses), got {self.responses_per_prompt}",
        )
        check(
            self.selection in ("random", "disagreement"),
            f"selection must be random|disagreement, got {self.selection!r}",
        )
        check(self.candidate_factor >= 1, f"candidate_factor must be >= 1, got {self.candidate_factor}")
        check(
            isinstance(self.total_labels, int) and self.total_labels >= 1,
            f"total_labels must be >= 1, got {self.total_labels}",
        )
        check_unit("initial_fraction", self.initial_fraction)
        check(self.label_decay > 0, f"label_decay must be > 0, got {self.label_decay}")
        check_unit("label_horizon", self.label_horizon, closed_low=False)

    @classmethod
    def with_env_defaults(
        cls, algo: dict[str, Any], defaults: dict[str, Any], explicit: set[str]
    ) -> dict[str, Any]:
        """Its own keys as every algorithm does; the inner algorithm's other keys (e.g. a text family's
        ``num_minibatches`` for PPO) go to ``inner_overrides``, unless set there on the command line."""
        algo = super().with_env_defaults(algo, defaults, explicit)
        try:
            inner_cls = get_algorithm(algo.get("inner", cls.inner))
        except UnknownPluginError:
            return algo  # validation names the bad algo.inner
        own, inner_known = set(cls.__dataclass_fields__), set(inner_cls.Config.__dataclass_fields__)
        overrides = dict(algo.get("inner_overrides") or {})
        for key, value in defaults.items():
            if key not in own and key in inner_known and f"algo.inner_overrides.{key}" not in explicit:
                overrides.setdefault(key, value)
        return {**algo, "inner_overrides": overrides}

    def inner_config(self) -> AlgoConfig:
        if not hasattr(self, "_inner"):
            self._inner = build_inner_config(self.inner, dict(self.inner_overrides))
        return self._inner

    @property
    def initial_labels(self) -> int:
        return round(self.total_labels * self.initial_fraction)


def label_target(cfg: PreferenceConfig, progress: float) -> int:
    """Labels that should have been asked for by ``progress`` (fraction of training done)."""
    initial = cfg.initial_labels
    x = min(max(progress, 0.0) / cfg.label_horizon, 1.0)
    share = math.log1p(x / cfg.label_decay) / math.log1p(1.0 / cfg.label_decay)  # rate ~ 1 / (decay + x)
    return min(cfg.total_labels, initial + math.floor((cfg.total_labels - initial) * share + 1e-9))


_not_nullable = [f.name for f in fields(PreferenceConfig) if f.name in INNER_FIELDS and f.default is not None]
if _not_nullable:  # the contract above, enforced where it is written
    raise TypeError(f"PreferenceConfig must redeclare {_not_nullable} with default None")


@register_algorithm("preference")
class PreferenceLearning(Algorithm):
    Config = PreferenceConfig
    needs_simulator_states: ClassVar[bool] = True  # segments carry them: the labeling page renders clips

    @classmethod
    def env_settings(cls, cfg: AlgoConfig) -> dict[str, Any]:
        assert isinstance(cfg, PreferenceConfig)
        return {**super().env_settings(cfg), "responses_per_prompt": cfg.responses_per_prompt}

    def __init__(self, cfg: PreferenceConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.inner: Algorithm = get_algorithm(cfg.inner)(cfg.inner_config(), policy, seed=seed)
        self.labeler: Labeler = make_labeler(cfg.labeler, seed=seed + 1)
        self.support: PreferenceSupport | None = None  # the environment's part: see connect()
        self.reward_model: PreferenceRewardModel | None = None
        self.seed = seed
        self.last_rm_metrics: dict[str, float] = {}
        self.return_rms = RunningMeanStd(())
        self._discounted: np.ndarray | None = None  # running discounted predicted return per environment

    # ---- the environment's part -------------------------------------------------------------------------

    def settings(self) -> PreferenceSettings:
        cfg = self.cfg
        return PreferenceSettings(cfg.segment_length, cfg.absorbing, cfg.gamma, cfg.reward_model)

    def connect(self, env: Environment) -> None:
        support = env.preference_support(self.settings())
        if support is None:
            raise ConfigError(
                f"algo=preference does not run on env {env.name!r}: it has no preference support "
                "(Environment.preference_support)"
            )
        self.attach(support)
        self.inner.connect(env)

    def attach(self, support: PreferenceSupport) -> None:
        """Use ``support``'s segments and reward model (``connect`` gets it from the environment)."""
        self.support = support
        self.reward_model = support.make_reward_model(self.seed)

    # ---- delegation -----------------------------------------------------------------------------------

    @property
    def rollout_length(self) -> int:
        return self.inner.rollout_length

    def set_progress(self, fraction: float) -> None:
        super().set_progress(fraction)
        self.inner.set_progress(fraction)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.inner.optimizers()

    # ---- the update -----------------------------------------------------------------------------------

    def _select(self, pairs: list[tuple[Segment, Segment]], want: int) -> list[tuple[Segment, Segment]]:
        rm = self.reward_model
        if self.cfg.selection == "random" or rm is None or not rm.trained or len(pairs) <= want:
            return pairs[:want]
        var = rm.disagreement([a for a, _ in pairs], [b for _, b in pairs])
        top = torch.argsort(var, descending=True, stable=True)[:want]
        return [pairs[i] for i in top.tolist()]

    def _scale_rewards(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Divide by the running std of the discounted return (SB3 VecNormalize, on predicted rewards)."""
        if self._discounted is None or self._discounted.shape != rewards.shape[1:]:
            self._discounted = np.zeros(rewards.shape[1:])
        returns = np.empty(rewards.shape)
        for t in range(len(rewards)):
            self._discounted = self._discounted * self.cfg.gamma + rewards[t]
            returns[t] = self._discounted
            self._discounted[dones[t]] = 0.0
        self.return_rms.update(returns.reshape(-1))
        return rewards / self.return_rms.std

    def _wait_for(self) -> int:
        mode, pending = self.cfg.labeler.wait, self.labeler.pending
        if mode == "always":
            return pending
        if mode == "initial":
            return max(0, min(pending, self.cfg.initial_labels - self.labeler.answered))
        return 0

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        cfg, support, rm = self.cfg, self.support, self.reward_model
        if support is None or rm is None:
            raise RuntimeError("connect(env) (or attach(support)) before the first update")

        # 1. Ask for the labels the schedule calls for.
        want = label_target(cfg, self.progress) - self.labeler.asked
        if want > 0:
            factor = cfg.candidate_factor if cfg.selection == "disagreement" and rm.trained else 1
            candidates = support.candidate_pairs(batch, want * factor, self.generator)
            self.labeler.ask(self._select(candidates, want))
            self.labeler.publish(budget=cfg.total_labels, asked=self.labeler.asked)

        # 2. Train the reward model on what came back.
        new = self.labeler.poll(wait_for=self._wait_for())
        if new:
            rm.add(new)
            self.last_rm_metrics = rm.fit()
            self.labeler.publish(
                budget=cfg.total_labels,
                labels=rm.num_labels,
                val_accuracy=self.last_rm_metrics.get("val_accuracy"),
                rm_rounds=rm.rounds,
            )

        # 3. Relabel and update the inner algorithm, which never sees the true reward.
        relabeled = support.relabel(batch, rm)
        rewards = relabeled.rewards.double().cpu().numpy()
        if cfg.normalize_rewards and rm.trained:
            rewards = self._scale_rewards(rewards, batch.dones.cpu().numpy() > 0.5)
        predicted = torch.from_numpy(rewards).to(device=batch.rewards.device, dtype=batch.rewards.dtype)
        info = {k: v for k, v in batch.info.items() if k not in TRUE_REWARD_KEYS}
        metrics = self.inner.learn(batch.replace(rewards=predicted, info=info))

        metrics.update(
            {
                "pref/labels": float(rm.num_labels),
                "pref/asked": float(self.labeler.asked),
                "pref/pending": float(self.labeler.pending),
                "pref/predicted_reward_mean": float(predicted.mean()),
            }
        )
        metrics.update({f"rm/{k}": float(v) for k, v in self.last_rm_metrics.items()})
        metrics.update({f"pref/{k}": float(v) for k, v in rm.extra_metrics().items()})
        if relabeled.true is not None:  # logging only: how well the prediction tracks the truth
            true = relabeled.true.double().numpy()
            pred = relabeled.predicted.double().numpy()
            if len(true) > 1 and true.std() > 0 and pred.std() > 0:
                metrics["pref/reward_corr"] = float(np.corrcoef(true, pred)[0, 1])
            metrics["pref/true_reward_mean"] = float(true.mean())
        return metrics

    # ---- checkpoints ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_updates": self.num_updates,
            "progress": self.progress,
            "generator": self.generator.get_state(),
            "inner": self.inner.state_dict(),
            "labeler": self.labeler.state_dict(),
            "reward_model": None if self.reward_model is None else self.reward_model.state_dict(),
            "return_rms": self.return_rms.state_dict(),
            "discounted": None if self._discounted is None else torch.from_numpy(self._discounted.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])
        self.progress = float(state["progress"])
        self.generator.set_state(state["generator"])
        self.inner.load_state_dict(state["inner"])
        self.labeler.load_state_dict(state["labeler"])
        self.return_rms.load_state_dict(state["return_rms"])
        self._discounted = None if state["discounted"] is None else state["discounted"].numpy().copy()
        if state["reward_model"] is not None:
            if self.reward_model is None:
                raise RuntimeError("connect(env) (or attach(support)) before loading a reward model")
            self.reward_model.load_state_dict(state["reward_model"])
            self.last_rm_metrics = dict(self.reward_model.last_metrics)
