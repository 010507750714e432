"""stable-baselines3's PPO and A2C and sb3-contrib's TRPO as plugins (``algo=sb3_ppo|sb3_a2c|sb3_trpo``).

What runs is the peer's own code: its ``ActorCriticPolicy`` (network, initialization, distribution) acts in
rlarena's collector, and each update is the peer's ``train()`` on its ``RolloutBuffer``, filled from the
rollout batch (the peer computes its own GAE). What rlarena keeps, for every implementation alike, is the
protocol: the same gymnasium task and wrappers, the same observation and reward normalization (the
collector's, VecNormalize's semantics), the same env-step budget and seeds, the same evaluation
(``Environment.evaluate``: deterministic, on separate environments) and the same run directory,
checkpoints and resume.

By default a peer takes the hyper-parameters of rlarena's algorithm of the same name (its ``Config``
dataclass, inherited here), mapped onto the peer's arguments (``*_arguments`` below; the table in
docs/peers.md); a setting with no counterpart in the peer is refused when it differs from rlarena's default.
``peer_defaults=true`` runs the peer's own constructor defaults instead (network included).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlarena.errors import ConfigError
from rlarena.registry import register_algorithm
from rlarena.rollout import ActOutput, EvalOutput, Policy, RolloutBatch

from ..a2c import A2CConfig
from ..base import AlgoConfig, Algorithm
from ..ppo import PPOConfig
from ..trpo import TRPOConfig

INSTALL_HINT = "pip install --no-build-isolation -e '.[peers]'"
ACTIVATION_FUNCTIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def require_library(module: str, who: str) -> str:
    """The installed version of the peer library ``module``; a ConfigError naming the extra if absent."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"algo={who} runs {module}, which is not installed: {INSTALL_HINT}")
    return str(importlib.import_module(module).__version__)


def refuse_unmapped(cfg: AlgoConfig, base: type[AlgoConfig], unmapped: dict[str, str]) -> None:
    """A setting the peer has no counterpart for may only keep rlarena's default (documented as a difference
    in docs/peers.md); another value would be silently ignored, so it is refused."""
    for key, why in unmapped.items():
        head, _, rest = key.partition(".")
        value, default = getattr(cfg, head), base.__dataclass_fields__[head].default
        if rest:  # a field of the nested policy config
            value = getattr(value, rest)
            default = type(getattr(cfg, head)).__dataclass_fields__[rest].default
        if value != default:
            raise ConfigError(
                f"algo.{key}={value!r} (from the command line or the env's algo_defaults) cannot be "
                f"honoured by algo={cfg.name}: {why}"
            )


def linear_or_constant(lr: float, anneal: bool):
    """rlarena's learning-rate annealing as an SB3 schedule (a function of the progress remaining, 1 -> 0)."""
    return (lambda remaining: lr * remaining) if anneal else lr


def policy_arguments(cfg: AlgoConfig) -> dict[str, Any]:
    """rlarena's PolicyConfig as SB3's ``policy_kwargs``: separate actor and critic MLPs of the same sizes,
    orthogonal initialization (SB3's default, the gains rlarena uses too)."""
    sizes = list(cfg.policy.hidden_sizes)
    return {
        "net_arch": {"pi": sizes, "vf": sizes},
        "activation_fn": ACTIVATION_FUNCTIONS[cfg.policy.activation],
        "log_std_init": float(cfg.policy.log_std_init),
        "ortho_init": True,
    }


def minibatch_size(samples: int, parts: int, what: str) -> int:
    if samples % parts:
        raise ConfigError(
            f"{what}={parts} does not divide the {samples} samples of a rollout (num_envs x num_steps): the "
            "peer takes a minibatch size and would drop the remainder; choose a divisor"
        )
    return samples // parts


class _SpacesOnly(gym.Env):
    """The observation and action spaces the peer builds its policy and buffer for; never stepped (rlarena's
    collector steps the real environments)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        raise RuntimeError("a peer's placeholder environment is never stepped")


class SB3Policy(Policy):
    """The peer's ``ActorCriticPolicy`` behind rlarena's Policy interface (the collector, the evaluation and
    the checkpoint use it). ``act(obs, deterministic=True)`` takes the distribution's mode, as the peer's
    ``predict(obs, deterministic=True)`` does; the environment clips the action to the box as ``predict``
    does (tests/test_peers.py checks the two agree)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.net = model.policy  # an nn.Module: its parameters are this module's (state_dict, checkpoint)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> ActOutput:
        self.net.set_training_mode(False)
        action, value, logp = self.net(obs, deterministic=deterministic)
        return ActOutput(action, logp, value.flatten())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net.predict_values(obs).flatten()

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> EvalOutput:
        value, logp, entropy = self.net.evaluate_actions(obs, actions)
        dist = self.net.get_distribution(obs).distribution
        if isinstance(dist, torch.distributions.Normal):
            dist = torch.distributions.Independent(dist, 1)
        return EvalOutput(logp, entropy, value.flatten(), dist)

    def actor_parameters(self) -> list[nn.Parameter]:
        net = self.net
        params = [*net.mlp_extractor.policy_net.parameters(), *net.action_net.parameters()]
        return params + ([net.log_std] if hasattr(net, "log_std") else [])

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.net.mlp_extractor.value_net.parameters(), *self.net.value_net.parameters()]


class SB3Peer(Algorithm):
    """One peer algorithm: the library, its class, and how rlarena's config maps onto its arguments."""

    library: ClassVar[str] = "stable_baselines3"  # the module to import
    package: ClassVar[str] = "stable-baselines3"  # the name users know (summary.json: implementation)
    class_path: ClassVar[str]  # "module:Class"
    counterpart: ClassVar[str]  # rlarena's algorithm of the same name (the leaderboard pairs them)

    @classmethod
    def arguments(cls, cfg: Any) -> dict[str, Any]:
        """The peer's constructor arguments for ``cfg`` (rlarena's hyper-parameters, mapped)."""
        raise NotImplementedError

    @classmethod
    def implementation(cls) -> dict[str, str]:
        return {
            "implementation": cls.package,
            "implementation_version": require_library(cls.library, cls.__name__),
        }

    @classmethod
    def env_settings(cls, cfg: AlgoConfig) -> dict[str, Any]:
        return {**super().env_settings(cfg), "policy_from_algorithm": True}

    @classmethod
    def make_policy(
        cls, cfg: Any, observation_space: gym.Space, action_space: gym.Space, seed: int
    ) -> Policy:
        from stable_baselines3.common.logger import Logger
        from stable_baselines3.common.vec_env import DummyVecEnv

        module, name = cls.class_path.split(":")
        peer_class = getattr(importlib.import_module(module), name)
        env = DummyVecEnv([lambda: _SpacesOnly(observation_space, action_space)] * cfg.num_envs)
        arguments = {} if cfg.peer_defaults else cls.arguments(cfg)
        model = peer_class("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **arguments)
        model.set_logger(Logger(folder=None, output_formats=[]))  # train() records here; update() reads it
        return SB3Policy(model)

    def __init__(self, cfg: Any, policy: Policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        if not isinstance(policy, SB3Policy):
            raise ConfigError(f"algo={cfg.name} needs the policy it builds (make_policy), got {type(policy)}")
        self.model = policy.model
        self.last_dones = np.zeros(cfg.num_envs, dtype=np.float32)

    @property
    def rollout_length(self) -> int:
        return int(self.model.n_steps)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"peer": self.model.policy.optimizer}

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        model, buffer = self.model, self.model.rollout_buffer
        rewards = batch.rewards
        if batch.bootstrap_values is not None:  # as the peer's collect_rollouts does at truncations
            rewards = rewards + model.gamma * batch.bootstrap_values
        dones = batch.dones.cpu().numpy().astype(np.float32)
        buffer.reset()
        buffer.observations[:] = batch.obs.cpu().numpy().reshape(buffer.observations.shape)
        buffer.actions[:] = batch.actions.cpu().numpy().reshape(buffer.actions.shape)
        buffer.rewards[:] = rewards.cpu().numpy()
        buffer.values[:] = batch.values.cpu().numpy()
        buffer.log_probs[:] = batch.logp.cpu().numpy()
        buffer.episode_starts[0] = self.last_dones  # an episode starts where the previous step ended one
        buffer.episode_starts[1:] = dones[:-1]
        buffer.pos, buffer.full = buffer.buffer_size, True
        buffer.compute_returns_and_advantage(batch.last_value.reshape(-1, 1).cpu(), dones[-1])
        self.last_dones = dones[-1].copy()

        model._current_progress_remaining = 1.0 - self.progress  # the peer's schedules read it
        model.train()
        logger = model.logger
        metrics = {
            key.split("/", 1)[-1]: float(value)
            for key, value in logger.name_to_value.items()
            if isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))
        }
        for table in (logger.name_to_value, logger.name_to_count, logger.name_to_excluded):
            table.clear()
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "peer_updates": int(self.model._n_updates),
            "last_dones": self.last_dones.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.model._n_updates = int(state["peer_updates"])
        self.last_dones = np.asarray(state["last_dones"], dtype=np.float32)


# ---- the three peers --------------------------------------------------------------------------------------


@dataclass
class SB3PPOConfig(PPOConfig):
    """rlarena's PPO hyper-parameters, run by stable-baselines3's PPO (``algo=sb3_ppo``)."""

    name: str = "sb3_ppo"
    peer_defaults: bool = False  # true: stable-baselines3's own PPO defaults instead of rlarena's, mapped

    def __post_init__(self) -> None:
        super().__post_init__()
        require_library("stable_baselines3", self.name)
        refuse_unmapped(self, PPOConfig, SB3PPO.unmapped)
        if not self.peer_defaults:
            minibatch_size(self.num_envs * self.num_steps, self.num_minibatches, "num_minibatches")


@register_algorithm("sb3_ppo")
class SB3PPO(SB3Peer):
    Config = SB3PPOConfig
    class_path = "stable_baselines3:PPO"
    counterpart = "ppo"
    unmapped: ClassVar[dict[str, str]] = {
        "compiled_update": "it selects rlarena's own compiled PPO epoch",
        "policy.shared": "stable-baselines3 2.x has no shared actor-critic trunk for MlpPolicy",
    }

    @classmethod
    def arguments(cls, cfg: SB3PPOConfig) -> dict[str, Any]:
        samples = cfg.num_envs * cfg.num_steps
        return {
            "learning_rate": linear_or_constant(cfg.learning_rate, cfg.anneal_lr),
            "n_steps": cfg.num_steps,
            "batch_size": minibatch_size(samples, cfg.num_minibatches, "num_minibatches"),
            "n_epochs": cfg.update_epochs,
            "gamma": cfg.gamma,
            "gae_lambda": cfg.gae_lambda,
            "clip_range": cfg.clip_coef,
            "clip_range_vf": cfg.clip_coef if cfg.clip_vloss else None,
            "normalize_advantage": cfg.normalize_advantages,
            "ent_coef": cfg.ent_coef,
            "vf_coef": cfg.vf_coef,
            "max_grad_norm": cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf,
            "target_kl": cfg.target_kl,
            "policy_kwargs": {**policy_arguments(cfg), "optimizer_kwargs": {"eps": cfg.adam_eps}},
        }


@dataclass
class SB3A2CConfig(A2CConfig):
    """rlarena's A2C hyper-parameters, run by stable-baselines3's A2C (``algo=sb3_a2c``)."""

    name: str = "sb3_a2c"
    peer_defaults: bool = False  # true: stable-baselines3's own A2C defaults instead of rlarena's, mapped

    def __post_init__(self) -> None:
        super().__post_init__()
        require_library("stable_baselines3", self.name)
        refuse_unmapped(self, A2CConfig, SB3A2C.unmapped)


@register_algorithm("sb3_a2c")
class SB3A2C(SB3Peer):
    Config = SB3A2CConfig
    class_path = "stable_baselines3:A2C"
    counterpart = "a2c"
    unmapped: ClassVar[dict[str, str]] = {
        "policy.shared": "stable-baselines3 2.x has no shared actor-critic trunk for MlpPolicy",
    }

    @classmethod
    def arguments(cls, cfg: SB3A2CConfig) -> dict[str, Any]:
        optimizer = {
            "rmsprop": (
                torch.optim.RMSprop,
                {"alpha": cfg.rms_alpha, "eps": cfg.optimizer_eps, "weight_decay": 0},
            ),
            "adam": (torch.optim.Adam, {"eps": cfg.optimizer_eps}),
            "sgd": (torch.optim.SGD, {}),
        }[cfg.optimizer]
        policy = {**policy_arguments(cfg), "optimizer_class": optimizer[0], "optimizer_kwargs": optimizer[1]}
        return {
            "learning_rate": linear_or_constant(cfg.learning_rate, cfg.anneal_lr),
            "n_steps": cfg.num_steps,
            "gamma": cfg.gamma,
            "gae_lambda": cfg.gae_lambda,
            "ent_coef": cfg.ent_coef,
            "vf_coef": cfg.vf_coef,
            "max_grad_norm": cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf,
            "normalize_advantage": cfg.normalize_advantages,
            "policy_kwargs": policy,
        }


@dataclass
class SB3TRPOConfig(TRPOConfig):
    """rlarena's TRPO hyper-parameters, run by sb3-contrib's TRPO (``algo=sb3_trpo``)."""

    name: str = "sb3_trpo"
    peer_defaults: bool = False  # true: sb3-contrib's own TRPO defaults instead of rlarena's, mapped

    def __post_init__(self) -> None:
        super().__post_init__()
        require_library("sb3_contrib", self.name)
        refuse_unmapped(self, TRPOConfig, SB3TRPO.unmapped)
        if not self.peer_defaults:
            minibatch_size(self.num_envs * self.num_steps, self.vf_minibatches, "vf_minibatches")


@register_algorithm("sb3_trpo")
class SB3TRPO(SB3Peer):
    Config = SB3TRPOConfig
    library = "sb3_contrib"
    package = "sb3-contrib"
    class_path = "sb3_contrib:TRPO"
    counterpart = "trpo"
    unmapped: ClassVar[dict[str, str]] = {
        "max_grad_norm": "sb3-contrib's TRPO does not clip the value function's gradient",
        "policy.shared": "stable-baselines3 2.x has no shared actor-critic trunk for MlpPolicy",
    }

    @classmethod
    def arguments(cls, cfg: SB3TRPOConfig) -> dict[str, Any]:
        samples = cfg.num_envs * cfg.num_steps
        return {
            "learning_rate": linear_or_constant(cfg.learning_rate, cfg.anneal_lr),
            "n_steps": cfg.num_steps,
            "batch_size": minibatch_size(samples, cfg.vf_minibatches, "vf_minibatches"),
            "gamma": cfg.gamma,
            "gae_lambda": cfg.gae_lambda,
            "cg_max_steps": cfg.cg_iters,
            "cg_damping": cfg.cg_damping,
            "line_search_shrinking_factor": cfg.line_search_shrink,
            "line_search_max_iter": cfg.line_search_max_iter,
            "n_critic_updates": cfg.vf_epochs,
            "normalize_advantage": cfg.normalize_advantages,
            "target_kl": cfg.max_kl,
            "policy_kwargs": policy_arguments(cfg),
        }
