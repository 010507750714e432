"""The Algorithm contract and the pieces every algorithm shares.

An algorithm is a class registered with ``@register_algorithm(name)`` that owns:

* ``Config``: a dataclass of its hyper-parameters, their one source: it is the Hydra option
  ``algo=<name>`` (bench/configs.py), so unknown keys and wrong types are refused while composing, and
  out-of-range values in ``__post_init__``, before any work starts.
* ``__init__(cfg, policy, seed=...)``: builds its optimizers around a built
  :class:`~rlarena.rollout.Policy`.
* ``update(batch) -> metrics``: one rollout batch in, parameter updates done, float metrics out. The
  training loop calls it through ``learn``, which counts updates (``num_updates``).
* ``state_dict``/``load_state_dict`` for exact resume.

The whole update of an algorithm lives in its own file and reads top to bottom.
"""

from __future__ import annotations

import importlib.metadata
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from rlarena import blocks, ops
from rlarena.activations import ACTIVATIONS
from rlarena.errors import (  # noqa: F401  (plugins import them from here too)
    ConfigError,
    check,
    check_learning_rate,
    check_nonnegative,
    check_positive,
    check_unit,
)
from rlarena.optim import Adam
from rlarena.rollout import Environment, Policy, RolloutBatch

RLARENA_VERSION = importlib.metadata.version("rlarena")


# Bounds of what one run may ask for: beyond them a typo (an extra zero or three) would allocate tens of
# GB or build thousands of simulators before failing.
MAX_HIDDEN_SIZE = 65536
MAX_HIDDEN_WEIGHTS = 2**26
MAX_NUM_ENVS = 4096
LOG_STD_RANGE = (-20.0, 5.0)


@dataclass
class PolicyConfig:
    """Architecture of the default MLP actor-critic (environments with their own policy may ignore it)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    log_std_init: float = 0.0
    shared: bool = False  # one trunk for actor and critic

    def __post_init__(self) -> None:
        check(
            all(h > 0 for h in self.hidden_sizes),
            f"policy.hidden_sizes must be positive, got {self.hidden_sizes}",
        )
        weights = sum(a * b for a, b in zip(self.hidden_sizes, self.hidden_sizes[1:], strict=False))
        check(
            max(self.hidden_sizes, default=0) <= MAX_HIDDEN_SIZE and weights <= MAX_HIDDEN_WEIGHTS,
            f"policy.hidden_sizes={self.hidden_sizes} is beyond this library's bound (each layer <= "
            f"{MAX_HIDDEN_SIZE}, at most {MAX_HIDDEN_WEIGHTS} weights between hidden layers: "
            f"{4 * MAX_HIDDEN_WEIGHTS // 2**20} MiB in float32)",
        )
        check(
            math.isfinite(self.log_std_init) and LOG_STD_RANGE[0] <= self.log_std_init <= LOG_STD_RANGE[1],
            f"policy.log_std_init must be in [{LOG_STD_RANGE[0]}, {LOG_STD_RANGE[1]}] (a standard deviation "
            f"of exp({LOG_STD_RANGE[0]}) to exp({LOG_STD_RANGE[1]})), got {self.log_std_init}",
        )
        check(
            self.activation in ACTIVATIONS,
            f"policy.activation must be {'|'.join(ACTIVATIONS)}, got {self.activation!r}",
        )


@dataclass
class AlgoConfig:
    """Hyper-parameters every on-policy algorithm has."""

    name: str = "?"
    num_envs: int = 1
    num_steps: int = 2048  # rollout length per environment, per update
    gamma: float = 0.99
    gae_lambda: float = 0.95
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    max_grad_norm: float = 0.5
    normalize_observations: bool = True
    normalize_rewards: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @classmethod
    def with_env_defaults(
        cls, algo: dict[str, Any], defaults: dict[str, Any], explicit: set[str]
    ) -> dict[str, Any]:
        """The ``algo`` section with an env family's ``algo_defaults`` for the keys this config has and the
        command line did not set (``explicit``: dotted keys such as ``algo.learning_rate``)."""
        out = dict(algo)
        for key, value in defaults.items():
            if key not in cls.__dataclass_fields__ or f"algo.{key}" in explicit:
                continue
            if isinstance(value, dict):  # a nested config (e.g. reward_model): key by key
                sub = dict(out.get(key) or {})
                sub.update({k: v for k, v in value.items() if f"algo.{key}.{k}" not in explicit})
                out[key] = sub
            else:
                out[key] = value
        return out

    def __post_init__(self) -> None:
        check(
            1 <= self.num_envs <= MAX_NUM_ENVS,
            f"num_envs must be >= 1 and <= {MAX_NUM_ENVS}, got {self.num_envs}",
        )
        check(self.num_steps >= 1, f"num_steps must be >= 1, got {self.num_steps}")
        check_unit("gamma", self.gamma)
        check_unit("gae_lambda", self.gae_lambda)
        check_learning_rate("learning_rate", self.learning_rate)
        check(
            (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)) or self.max_grad_norm == -1,
            f"max_grad_norm must be a finite number > 0 (or -1 for none), got {self.max_grad_norm}",
        )


def adam(params: list[torch.nn.Parameter], lr: float, eps: float = 1e-8) -> torch.optim.Optimizer:
    """Adam on rlarena's kernel (``rlarena.optim.Adam``: torch's fused Adam's arithmetic, the same bits on
    every x86-64 CPU; its state_dict is torch.optim.Adam's)."""
    return Adam(params, lr=lr, eps=eps)


AdamState = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def adam_state(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> AdamState | None:
    """``(exp_avg, exp_avg_sq, step)`` of an ``rlarena.optim.Adam`` for each of ``params`` (its public state,
    created as its first step would), for a compiled update that steps Adam itself. None unless
    ``optimizer`` is rlarena's Adam with one group, no weight decay, over exactly ``params``."""
    if type(optimizer) is not Adam or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if group["weight_decay"] or {id(p) for p in group["params"]} != {id(p) for p in params}:
        return None
    if len(group["params"]) != len(params):
        return None
    states = [optimizer.state_of(p) for p in params]
    return [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [s["step"] for s in states]


class Algorithm(ABC):
    Config: ClassVar[type[AlgoConfig]] = AlgoConfig
    # True: the collector records the simulator's state before each step (batch.info["states"]), e.g. to
    # render clips of segments for people to label. Off by default: it costs time on every step.
    needs_simulator_states: ClassVar[bool] = False
    # Another library's implementation of a rlarena algorithm names it here (algorithms/peers/): the
    # leaderboard pairs the two and reports P(rlarena's > the peer's).
    counterpart: ClassVar[str | None] = None

    @classmethod
    def implementation(cls) -> dict[str, str]:
        """Whose code this is, recorded in ``summary.json`` (peers name their library and its version)."""
        return {"implementation": "rlarena", "implementation_version": RLARENA_VERSION}

    @classmethod
    def make_policy(
        cls, cfg: AlgoConfig, observation_space: Any, action_space: Any, seed: int
    ) -> Policy | None:
        """A policy this algorithm builds itself (a peer library's network), or None: the environment's own
        (text) or the default MLP. An algorithm that builds one asks for ``policy_from_algorithm`` in its
        ``env_settings``, so environments whose policy is their own refuse it before the run starts."""
        del cfg, observation_space, action_space, seed
        return None

    @classmethod
    def env_settings(cls, cfg: AlgoConfig) -> dict[str, Any]:
        """What this algorithm asks of the environment beyond the shared settings (EnvSettings fields)."""
        return {"record_states": cls.needs_simulator_states}

    def connect(self, env: Environment) -> None:  # noqa: B027 - optional hook
        """Called once by the training loop with the built environment, before the first update. An
        algorithm that needs an environment's help (reward from preferences) takes it here; it never collects
        or steps the environment itself."""

    def __init__(self, cfg: AlgoConfig, policy: Policy, *, seed: int = 0) -> None:
        self.cfg = cfg
        self.policy = policy
        # Minibatch shuffling draws from its own generator: runs with the same seed are bit-identical.
        self.generator = torch.Generator().manual_seed(seed)
        self.num_updates = 0
        self.progress = 0.0  # fraction of the training budget done, set by the training loop

    @property
    def rollout_length(self) -> int:
        """Steps per environment the collector runs before each ``update``."""
        return self.cfg.num_steps

    @abstractmethod
    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """Turn one rollout batch into parameter updates; return float metrics."""

    def learn(self, batch: RolloutBatch) -> dict[str, float]:
        """One counted update: what the training loop (and an algorithm wrapping another) calls."""
        metrics = self.update(batch)
        self.num_updates += 1
        return metrics

    def set_progress(self, fraction: float) -> None:
        """Called by the training loop before each update (learning-rate annealing)."""
        self.progress = min(max(fraction, 0.0), 1.0)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_updates": self.num_updates,
            "progress": self.progress,
            "generator": self.generator.get_state(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])
        self.progress = float(state["progress"])
        self.generator.set_state(state["generator"])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])

    # ---- shared helpers -------------------------------------------------------------------------------

    def annealed_lr(self, base_lr: float) -> float:
        return base_lr * (1.0 - self.progress) if self.cfg.anneal_lr else base_lr

    def set_lr(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr

    def non_finite_gradient(self) -> FloatingPointError:
        """The error for a non-finite gradient norm (raised before the optimizer steps)."""
        return FloatingPointError(
            f"{type(self).__name__}: non-finite gradient norm at update {self.num_updates}; "
            "check the learning rate and the rewards"
        )

    def clip_and_step(self, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> float:
        """Clip the gradient norm (if configured), check it is finite, and step. Returns the norm."""
        # Clipped only when finite (the step is refused otherwise); one summation order on every CPU.
        norm = blocks.clip_grad_norm_(params, self.cfg.max_grad_norm)
        if not torch.isfinite(norm):
            raise self.non_finite_gradient()
        optimizer.step()
        return float(norm)


def compute_advantages(batch: RolloutBatch, gamma: float, gae_lambda: float) -> RolloutBatch:
    """Fold truncation bootstraps into the rewards, run GAE, and store advantages and returns on the batch."""
    rewards = batch.rewards
    if batch.bootstrap_values is not None:
        rewards = rewards + gamma * batch.bootstrap_values
    check_finite("rewards", rewards)
    advantages, returns = ops.gae(rewards, batch.values, batch.dones, batch.last_value, gamma, gae_lambda)
    if batch.mask is not None:  # padding carries no signal; zero it so statistics stay clean
        advantages = advantages * batch.mask
        returns = returns * batch.mask
    batch.advantages, batch.returns = advantages, returns
    return batch


# ---- group baselines (RLOO, GRPO) -------------------------------------------------------------------------


def column_returns(batch: RolloutBatch) -> torch.Tensor:
    """``[N]``: the undiscounted sum of each column's rewards over its real steps (one whole response or
    episode per column in a ``sequence`` batch)."""
    rewards = batch.rewards if batch.mask is None else batch.rewards * batch.mask
    check_finite("rewards", rewards)
    return rewards.sum(0)


def leave_one_out_advantages(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): ``R_i`` minus the mean return of the other ``k - 1`` samples of its group;
    groups are ``k`` consecutive entries of ``returns`` (``[N]``, ``N`` a multiple of ``k >= 2``)."""
    k = group_size
    groups = returns.reshape(-1, k)
    others = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    return (groups - others).reshape(-1)


def group_normalized_advantages(returns: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024, outcome supervision): ``(R_i - mean) / (std + eps)`` over the ``k`` consecutive
    entries of ``returns`` that form a group; ``std`` is the sample (unbiased) one, as in TRL."""
    groups = returns.reshape(-1, group_size)
    mean, std = groups.mean(1, keepdim=True), groups.std(1, keepdim=True)
    return ((groups - mean) / (std + eps)).reshape(-1)


def with_column_advantages(
    batch: RolloutBatch, advantages: torch.Tensor, returns: torch.Tensor
) -> RolloutBatch:
    """Store a per-column advantage (``[N]``) on every real step of its column (zero on padding) and the
    column's return as ``returns``, so ``minibatches`` and ``valid`` work as after ``compute_advantages``."""
    shape = batch.rewards.shape
    adv, ret = advantages[None].expand(shape), returns[None].expand(shape)
    if batch.mask is not None:
        adv, ret = adv * batch.mask, ret * batch.mask
    return batch.replace(advantages=adv.contiguous(), returns=ret.contiguous())


def check_groups(batch: RolloutBatch, group_size: int, who: str) -> None:
    """A group baseline needs whole responses/episodes (``sequence`` layout) in groups of ``group_size``
    consecutive columns that share a prompt or start state; refuse anything else with a clear message."""
    if batch.layout != "sequence":
        raise ValueError(
            f"{who} needs whole episodes in groups (a 'sequence' batch); this environment returned a "
            "'flat' batch: it does not honor EnvSettings.grouped_episodes/responses_per_prompt"
        )
    given = batch.info.get("responses_per_prompt", group_size)
    if given != group_size or batch.num_envs % group_size:
        raise ValueError(
            f"{who}: group_size={group_size}, but the batch has {batch.num_envs} columns in groups of "
            f"{given} (the environment was built with other settings than {who}.env_settings asks for)"
        )


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` (unbiased std) as data, one summation order on every CPU."""
    return blocks.normalize(x, eps)


def check_finite(where: str, x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[:3].tolist()
        raise FloatingPointError(f"non-finite values in {where} (first at indices {bad})")


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    if target.numel() < 2:
        return float("nan")
    var = target.var()
    return float("nan") if var == 0 else float(1 - (target - pred).var() / var)
