"""The contract between environments, policies and algorithms.

An algorithm never touches an environment. An :class:`Environment` runs a :class:`Policy` and hands back a
:class:`RolloutBatch`; the algorithm turns the batch into parameter updates. The same algorithm file thus
runs on MuJoCo (flat samples) and on text (whole sequences), without branches on the environment.

Conventions (time-major, ``[T, N]``):

* ``dones[t, n] = 1`` means no bootstrapping across step ``t`` (the episode ended there, by termination
  *or* truncation).
* On a time-limit truncation the episode did not really end: the collector stores the critic's value of
  the final observation in ``bootstrap_values[t, n]`` (zero elsewhere), and the algorithm folds it into the
  reward as ``r + gamma * bootstrap_values`` before GAE (as stable-baselines3 does). Keeping it separate
  lets a wrapper (reward from preferences) replace the rewards without losing the bootstrap.
* ``mask[t, n] = False`` marks padding (text responses of different lengths); ``None`` means all valid.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import torch
from torch import nn

Layout = Literal["flat", "sequence"]


def _index(x: Any, fn) -> Any:
    """Apply ``fn`` to a tensor or to every tensor of a (nested) dict."""
    if x is None:
        return None
    if isinstance(x, dict):
        return {k: _index(v, fn) for k, v in x.items()}
    return fn(x)


@dataclass
class Minibatch:
    """A slice of a rollout, ready for ``Policy.evaluate``.

    In the flat layout every field is ``[B, ...]`` (samples drawn from all ``T x N`` steps). In the sequence
    layout fields keep their time axis, ``[T, n, ...]`` for ``n`` whole columns (sequences).
    """

    obs: Any
    actions: torch.Tensor
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor | None
    ref_logp: torch.Tensor | None = None  # the batch's ref_logp, sliced alike (None if it has none)

    def valid(self, x: torch.Tensor) -> torch.Tensor:
        """The entries of ``x`` (shaped like ``old_logp``) that are real steps, as a 1-D tensor."""
        return x.reshape(-1) if self.mask is None else x[self.mask]

    @property
    def num_valid(self) -> int:
        return self.old_logp.numel() if self.mask is None else int(self.mask.sum())


@dataclass
class RolloutBatch:
    """What a collector returns: ``T`` steps of ``N`` parallel environments (or ``N`` text sequences)."""

    obs: Any  # tensor [T, N, ...] or dict of such tensors: whatever the policy consumes
    actions: torch.Tensor  # [T, N, ...]
    logp: torch.Tensor  # [T, N]  log-prob of the actions under the collecting policy
    values: torch.Tensor  # [T, N]  critic values at collection time
    rewards: torch.Tensor  # [T, N]  rewards the algorithm optimizes (may be normalized)
    dones: torch.Tensor  # [T, N]  float, 1 = episode ended at t (no bootstrap across t)
    last_value: torch.Tensor  # [N]   value of the observation after the last step
    bootstrap_values: torch.Tensor | None = None  # [T, N] V(final obs) at truncations, else 0
    mask: torch.Tensor | None = None  # [T, N] bool, False = padding
    layout: Layout = "flat"
    advantages: torch.Tensor | None = None  # filled by the algorithm
    returns: torch.Tensor | None = None  # filled by the algorithm
    # [T, N] log-prob of the actions under a frozen reference policy, from environments that have one (text:
    # the SFT model), for algorithms that put the KL to it in their loss (GRPO's kl_coef); else None.
    ref_logp: torch.Tensor | None = None
    # Collector statistics and side data (episode returns, raw rewards, raw observations, samples ...).
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]

    @property
    def num_valid(self) -> int:
        return self.rewards.numel() if self.mask is None else int(self.mask.sum())

    @property
    def minibatch_units(self) -> int:
        """How many pieces ``minibatches`` can split the batch into: samples (flat) or sequences."""
        return self.num_steps * self.num_envs if self.layout == "flat" else self.num_envs

    def replace(self, **changes: Any) -> RolloutBatch:
        return replace(self, **changes)

    def _require_advantages(self) -> None:
        if self.advantages is None or self.returns is None:
            raise RuntimeError("compute advantages and returns before making minibatches")

    def as_minibatch(self) -> Minibatch:
        """The whole batch as one minibatch (for full-batch methods: REINFORCE, A2C, TRPO)."""
        self._require_advantages()
        if self.layout == "sequence":
            return self._take(lambda x: x)
        return self._take(lambda x: x.reshape(-1, *x.shape[2:]))

    def _take(self, take) -> Minibatch:
        """A minibatch made by applying ``take`` to every ``[T, N, ...]`` field."""
        return Minibatch(
            _index(self.obs, take),
            take(self.actions),
            take(self.logp),
            take(self.values),
            take(self.advantages),
            take(self.returns),
            None if self.mask is None else take(self.mask),
            None if self.ref_logp is None else take(self.ref_logp),
        )

    def minibatches(
        self, num_minibatches: int, generator: torch.Generator | None = None
    ) -> Iterator[Minibatch]:
        """Shuffle and split into ``num_minibatches`` parts: samples (flat) or whole sequences (sequence)."""
        self._require_advantages()
        units = self.minibatch_units
        if not 1 <= num_minibatches <= units:
            raise ValueError(f"num_minibatches={num_minibatches} must be in [1, {units}] for this batch")
        perm = torch.randperm(units, generator=generator, device="cpu").to(self.rewards.device)
        for part in torch.tensor_split(perm, num_minibatches):
            if self.layout == "flat":
                yield self._take(lambda x, idx=part: x.reshape(-1, *x.shape[2:])[idx])
            else:
                yield self._take(lambda x, idx=part: x[:, idx])

    def to(self, device: torch.device | str) -> RolloutBatch:
        changes = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor) or (f.name == "obs" and isinstance(v, dict)):
                changes[f.name] = _index(v, lambda x: x.to(device))
        return replace(self, **changes)


@dataclass
class ActOutput:
    action: torch.Tensor  # [N, ...]
    logp: torch.Tensor  # [N]
    value: torch.Tensor  # [N]


class EvalOutput:
    """What ``Policy.evaluate`` returns: ``logp``, ``entropy`` and ``value`` shaped like the minibatch's
    ``old_logp``, and ``dist``, the action distribution (batch shape = logp's; TRPO measures KL with it),
    given as is or as a function that builds it when first asked for (a fused policy op has none to give)."""

    __slots__ = ("logp", "entropy", "value", "_dist")

    def __init__(
        self,
        logp: torch.Tensor,
        entropy: torch.Tensor,
        value: torch.Tensor,
        dist: torch.distributions.Distribution | Callable[[], torch.distributions.Distribution],
    ) -> None:
        self.logp, self.entropy, self.value, self._dist = logp, entropy, value, dist

    @property
    def dist(self) -> torch.distributions.Distribution:
        if not isinstance(self._dist, torch.distributions.Distribution):
            self._dist = self._dist()
        return self._dist


@dataclass(frozen=True)
class GaussianMLP:
    """An actor-critic of two MLPs (no shared layers) with a Gaussian head and a state-independent log-std,
    as plain tensors for the compiled ops that run it without torch modules (``ops.mlp_gaussian_act``,
    ``policy_ops.gaussian_mlp_evaluate``). The tensors are the policy's own Parameters."""

    actor: list[torch.Tensor]  # [weight, bias] per linear layer, as nn.Linear stores them
    critic: list[torch.Tensor]  # the same; one output
    log_std: torch.Tensor  # [act_dim]
    activation: str  # between layers: tanh, relu or elu

    def parameters(self) -> list[torch.Tensor]:
        """Every parameter, in the compiled ops' order: actor, critic, log-std."""
        return [*self.actor, *self.critic, self.log_std]


class Policy(nn.Module, ABC):
    """An actor-critic. Environments pick the architecture; algorithms only use this interface."""

    @abstractmethod
    def act(self, obs: Any, deterministic: bool = False) -> ActOutput:
        """One step for ``N`` environments: sample (or take the mode of) the action distribution."""

    @abstractmethod
    def value(self, obs: Any) -> torch.Tensor:
        """Critic value ``[N]``."""

    @abstractmethod
    def evaluate(self, obs: Any, actions: torch.Tensor) -> EvalOutput:
        """Log-probs, entropies and values of given actions, in one pass (teacher-forced for text)."""

    def forward(self, obs: Any, actions: torch.Tensor) -> EvalOutput:
        """Calling the module evaluates (so ``torch.func.functional_call`` works on policies)."""
        return self.evaluate(obs, actions)

    @abstractmethod
    def actor_parameters(self) -> list[nn.Parameter]:
        """Parameters of the action distribution (TRPO's natural gradient acts on these)."""

    @abstractmethod
    def critic_parameters(self) -> list[nn.Parameter]:
        """Parameters only the value loss trains (may be empty when actor and critic share everything)."""

    def gaussian_mlp(self) -> GaussianMLP | None:
        """This policy as a ``GaussianMLP`` when it is one (algorithms may then take compiled fast paths),
        else None (the default: every algorithm works through ``act``, ``value`` and ``evaluate``)."""
        return None


class Environment(ABC):
    """A (vectorized) environment family member, with its own collector.

    ``collect`` and ``evaluate`` are the only ways algorithms' policies meet the environment.
    """

    num_envs: int
    observation_space: Any
    action_space: Any
    name: str

    @abstractmethod
    def collect(self, policy: Policy, num_steps: int) -> RolloutBatch:
        """Run ``policy`` for ``num_steps`` steps in each of the ``num_envs`` environments."""

    @abstractmethod
    def evaluate(self, policy: Policy, episodes: int, deterministic: bool = True) -> dict[str, Any]:
        """Run whole episodes on separate evaluation environments; return at least ``returns`` (a list)."""

    def record_episodes(
        self, policy: Policy, episodes: int, width: int, height: int, deterministic: bool = True
    ) -> list[dict[str, Any]] | None:
        """Whole episodes rendered to frames, for videos: one dict per episode with ``frames`` (``[T, H, W,
        3]`` uint8), ``fps``, ``return`` and ``length``; None when the environment has nothing to show."""
        return None

    def preference_support(self, settings: Any) -> Any:
        """How this environment takes part in learning from preferences (``algo=preference``): what a
        comparable segment is, which reward model reads it, how its predictions replace the rewards.
        ``settings``: a ``rlarena.preferences.PreferenceSettings``; returns a ``PreferenceSupport`` (that
        module, which builds on this one), or None: not supported."""
        del settings
        return None

    def make_policy(self, policy_cfg: dict[str, Any]) -> Policy | None:
        """An environment-specific policy (text: a language model), or None for the default MLP."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (normalizer statistics, RNG state, and where it can, the
        simulators mid-episode)."""
        return {}

    @property
    def resumes_exactly(self) -> bool:
        """Whether ``load_state_dict(state_dict())`` continues bit-identically, running episodes included
        (recorded in a resumed run's ``summary.json``). False: resumed environments start new episodes."""
        return False

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


@dataclass
class EnvSettings:
    """What the training loop tells an environment factory.

    A registered environment is a callable ``make(env_cfg: dict, settings: EnvSettings) -> Environment``,
    where ``env_cfg`` is the ``env`` section of the config (``conf/env/<name>.yaml``).
    """

    num_envs: int = 1
    seed: int = 0
    gamma: float = 0.99  # for reward normalization (scale by the std of the discounted return)
    normalize_observations: bool = False
    normalize_rewards: bool = False
    device: str = "cpu"
    run_dir: str | None = None  # where the environment may write samples (text) or videos
    record_states: bool = False  # simulator states per step in batch.info["states"] (clips of segments)
    # Text: responses sampled per prompt, in consecutive columns (algorithms that compare or baseline the
    # responses to one prompt ask for several); families without prompts ignore it unless grouped_episodes.
    responses_per_prompt: int = 1
    # Control (gymnasium): True collects whole episodes in groups of responses_per_prompt columns reset with
    # one seed (the same start state), as a sequence batch (RLOO, GRPO: envs/gym_env.py). A separate switch
    # because algo=preference asks for responses_per_prompt on every env and keeps its flat step batches.
    grouped_episodes: bool = False
    # Text: False leaves the per-token KL penalty out of the rewards (the batch still carries ref_logp), for
    # an algorithm that puts the KL to the reference in its loss instead (GRPO with kl_coef). Environments
    # without a reference policy refuse False.
    kl_in_reward: bool = True
    # True: the algorithm brings its own policy network for vector observations (a peer library's,
    # algorithms/peers/); environments whose policy is their own (text: the language model) refuse it.
    policy_from_algorithm: bool = False
