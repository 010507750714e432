"""Deep RL from human preferences (Christiano et al. 2017) as a wrapper around any on-policy algorithm.

Each update:

1. cut trajectory segments from the rollout (at most ``segment_length`` steps, inside one episode; a segment
   may end early where the episode terminated, never where a time limit cut it; with ``absorbing`` its missing
   steps count as steps in the terminal state, whose reward the reward model learns too);
2. if the label schedule asks for more labels, pick pairs (at random, or those the reward-model ensemble
   disagrees on most among ``candidate_factor`` times as many random pairs) and hand them to the labeler;
3. add the labels that came back to the dataset and train the reward model;
4. replace the batch's rewards with the reward model's (zero mean, unit std; a terminal step also gets the
   discounted absorbing-state reward ``gamma / (1 - gamma) * r_absorbing``), scaled by the running std of
   their discounted return when ``normalize_rewards`` is on (what the environment does for true rewards,
   lost once they are replaced), and call ``inner.update``.

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
from rlarena.preferences import Segment
from rlarena.registry import UnknownPluginError, get_algorithm, register_algorithm
from rlarena.rollout import RolloutBatch

from ..base import AlgoConfig, Algorithm, ConfigError, PolicyConfig, check, check_unit
from .labelers import Labeler, LabelerConfig, make_labeler
from .reward_model import RewardModelConfig, RewardModelTrainer

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


def cut_segments(
    obs: np.ndarray,
    actions: np.ndarray,
    dones: np.ndarray,
    terminated: np.ndarray,
    length: int,
    count: int,
    generator: torch.Generator,
    true_rewards: np.ndarray | None = None,
    states: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
    absorbing: bool = True,
) -> list[Segment]:
    """Up to ``count`` random segments of ``[T, N]`` rollout arrays, each inside one episode.

    A segment is ``length`` steps, or fewer when its episode terminated inside it (the fall is part of what a
    labeler judges; with ``absorbing`` the missing steps are recorded as spent in the terminal state).
    Windows cut short by a time limit or by the end of the rollout are rejected.
    """
    T, N = dones.shape
    out: list[Segment] = []
    for _ in range(20 * count):
        if len(out) >= count:
            break
        t0 = int(torch.randint(0, T, (), generator=generator))
        n = int(torch.randint(0, N, (), generator=generator))
        hits = np.flatnonzero(dones[t0 : t0 + length, n])
        if hits.size:
            end = t0 + int(hits[0]) + 1
            ended = bool(terminated[end - 1, n])
            if not ended and end - t0 < length:
                continue  # a time limit cut the episode: the segment would look worse than it is
        elif t0 + length > T:
            continue
        else:
            end, ended = t0 + length, False
        out.append(
            Segment(
                obs[t0:end, n],
                actions[t0:end, n],
                None if true_rewards is None else true_rewards[t0:end, n],
                None if states is None else states[t0:end, n],
                ended=ended,
                absorbing=length - (end - t0) if ended and absorbing else 0,
                meta={**(meta or {}), "t0": t0, "env_index": n},
            )
        )
    return out


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


_not_nullable = [f.name for f in fields(PreferenceConfig) if f.name in INNER_FIELDS and f.default is not None]
if _not_nullable:  # the contract above, enforced where it is written
    raise TypeError(f"PreferenceConfig must redeclare {_not_nullable} with default None")


@register_algorithm("preference")
class PreferenceLearning(Algorithm):
    Config = PreferenceConfig
    # Rollout layouts this algorithm accepts: vector observations only (text has its own reward model).
    layouts: ClassVar[tuple[str, ...]] = ("flat",)
    needs_simulator_states: ClassVar[bool] = True  # segments carry them: the labeling page renders clips

    def __init__(self, cfg: PreferenceConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.inner: Algorithm = get_algorithm(cfg.inner)(cfg.inner_config(), policy, seed=seed)
        self.labeler: Labeler = make_labeler(cfg.labeler, seed=seed + 1)
        self.reward_model: RewardModelTrainer | None = None  # built at the first batch: input size from data
        self.seed = seed
        self.last_rm_metrics: dict[str, float] = {}
        self.return_rms = RunningMeanStd(())
        self._discounted: np.ndarray | None = None  # running discounted predicted return per environment

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

    def _rollout_arrays(self, batch: RolloutBatch) -> dict[str, Any]:
        info = batch.info
        obs = info.get("raw_obs", batch.obs)
        if isinstance(obs, dict) or batch.layout != "flat":
            raise TypeError("algo=preference needs flat vector observations (text has its own reward model)")
        obs = _numpy(obs).astype(np.float32)
        actions = _numpy(info.get("env_actions", batch.actions)).astype(np.float32)
        T, N = batch.num_steps, batch.num_envs
        obs, actions = obs.reshape(T, N, -1), actions.reshape(T, N, -1)
        dones = _numpy(batch.dones) > 0.5
        if "terminated" in info:
            terminated = _numpy(info["terminated"]).astype(bool)
        else:  # the collector stores a bootstrap value only where a time limit (not the task) ended it
            boot = _numpy(batch.bootstrap_values) if batch.bootstrap_values is not None else np.zeros((T, N))
            terminated = dones & (boot == 0)
        true = info.get("raw_rewards")
        states = info.get("states")
        return {
            "obs": obs,
            "actions": actions,
            "dones": dones,
            "terminated": terminated,
            "true_rewards": None if true is None else _numpy(true).astype(np.float32),
            "states": None if states is None else _numpy(states),
            "env_id": info.get("env_id"),
        }

    def _select(self, segments: list[Segment], want: int) -> list[tuple[Segment, Segment]]:
        pairs = [(segments[i], segments[i + 1]) for i in range(0, len(segments) - 1, 2)]
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
        cfg = self.cfg
        arrays = self._rollout_arrays(batch)
        features = np.concatenate([arrays["obs"], arrays["actions"]], axis=-1)
        if self.reward_model is None:
            self.reward_model = RewardModelTrainer(features.shape[-1], cfg.reward_model, seed=self.seed)
        rm = self.reward_model

        # 1-2. Ask for the labels the schedule calls for.
        want = label_target(cfg, self.progress) - self.labeler.asked
        if want > 0:
            factor = cfg.candidate_factor if cfg.selection == "disagreement" and rm.trained else 1
            segments = cut_segments(
                arrays["obs"],
                arrays["actions"],
                arrays["dones"],
                arrays["terminated"],
                cfg.segment_length,
                2 * want * factor,
                self.generator,
                arrays["true_rewards"],
                arrays["states"],
                meta={"env_id": arrays["env_id"]} if arrays["env_id"] else None,
                absorbing=cfg.absorbing,
            )
            self.labeler.ask(self._select(segments, want))
            self.labeler.publish(budget=cfg.total_labels, asked=self.labeler.asked)

        # 3. Train the reward model on what came back.
        new = self.labeler.poll(wait_for=self._wait_for())
        if new:
            rm.add(new)
            self.last_rm_metrics = rm.fit()
            self.labeler.publish(
                budget=cfg.total_labels,
                labels=len(rm.data),
                val_accuracy=self.last_rm_metrics.get("val_accuracy"),
                rm_rounds=rm.rounds,
            )

        # 4. Relabel and update the inner algorithm, which never sees the true reward.
        x = torch.from_numpy(features)
        step_reward = rm.predict(x) if rm.trained else torch.zeros(x.shape[:2])
        rewards = step_reward.double().numpy()
        if cfg.absorbing and rm.trained and cfg.gamma < 1:  # the terminal state's reward, forever after
            rewards = (
                rewards + cfg.gamma / (1.0 - cfg.gamma) * rm.model.absorbing_reward() * arrays["terminated"]
            )
        if cfg.normalize_rewards and rm.trained:
            rewards = self._scale_rewards(rewards, arrays["dones"])
        predicted = torch.from_numpy(rewards).to(device=batch.rewards.device, dtype=batch.rewards.dtype)
        info = {k: v for k, v in batch.info.items() if k not in TRUE_REWARD_KEYS}
        metrics = self.inner.learn(batch.replace(rewards=predicted, info=info))

        metrics.update(
            {
                "pref/labels": float(len(rm.data)),
                "pref/asked": float(self.labeler.asked),
                "pref/pending": float(self.labeler.pending),
                "pref/predicted_reward_mean": float(predicted.mean()),
            }
        )
        metrics.update({f"rm/{k}": float(v) for k, v in self.last_rm_metrics.items()})
        if rm.trained and rm.data.has_absorbing:  # only learned where some segment ended early
            metrics["pref/absorbing_reward"] = rm.model.absorbing_reward()
        if (
            arrays["true_rewards"] is not None
        ):  # logging only: how well the per-step prediction tracks the truth
            true = arrays["true_rewards"].reshape(-1)
            pred = step_reward.numpy().reshape(-1)
            if true.std() > 0 and pred.std() > 0:
                metrics["pref/reward_corr"] = float(np.corrcoef(true, pred)[0, 1])
            metrics["pref/true_reward_mean"] = float(true.mean())
        return metrics

    # ---- checkpoints ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rm = self.reward_model
        return {
            "num_updates": self.num_updates,
            "progress": self.progress,
            "generator": self.generator.get_state(),
            "inner": self.inner.state_dict(),
            "labeler": self.labeler.state_dict(),
            "reward_model": None if rm is None else rm.state_dict(),
            "reward_model_input_dim": None if rm is None else rm.model.input_dim,
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
            self.reward_model = RewardModelTrainer(
                int(state["reward_model_input_dim"]), self.cfg.reward_model, self.seed
            )
            self.reward_model.load_state_dict(state["reward_model"])
            self.last_rm_metrics = dict(self.reward_model.last_metrics)
