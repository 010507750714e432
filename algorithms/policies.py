"""Default actor-critic policies for vector observations: Gaussian (Box actions) and categorical (Discrete).

Orthogonal initialization with gain sqrt(2) for hidden layers, 0.01 for the policy head and 1 for the value
head; state-independent log-std for Gaussian policies (PPO implementation details, Huang et al. 2022).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from rlarena import ops, policy_ops
from rlarena.activations import activation as activation_module
from rlarena.rollout import ActOutput, EvalOutput, GaussianMLP, Policy


def orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """``nn.init.orthogonal_`` without LAPACK: the same standard normal draw (the random stream is torch's),
    then the Q factor of its QR decomposition with a positive diagonal in R (torch's sign convention), by
    modified Gram-Schmidt in float64 with exactly rounded dot products (``math.fsum``), scaled by ``gain``.

    Why: LAPACK's QR (MKL) picks its blocking per CPU, so the initial weights of the same seed differed in
    the last bits between Intel and AMD machines, and a PPO run, chaotic in them, with them. This gives the
    same bits on every machine, within float32 rounding of torch's."""
    rows, cols = weight.shape
    with torch.no_grad():
        draw = weight.new_empty((rows, cols)).normal_(0, 1)
        a = (draw.t() if rows < cols else draw).double().numpy()  # tall: Q's columns are orthonormal
        q = np.empty_like(a)
        for j in range(a.shape[1]):
            v = a[:, j].copy()
            for i in range(j):
                v -= math.fsum(q[:, i] * v) * q[:, i]
            q[:, j] = v / math.sqrt(math.fsum(v * v))
        q_t = torch.from_numpy(q.T if rows < cols else q).to(weight.dtype)
        weight.copy_(q_t).mul_(gain)
    return weight


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], activation: str, out_dim: int, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [layer_init(nn.Linear(a, b)), activation_module(activation)()]
    layers.append(layer_init(nn.Linear(sizes[-1], out_dim), gain=out_gain))
    return nn.Sequential(*layers)


class MLPActorCritic(Policy):
    """Separate (default) or shared MLP trunks; Gaussian or categorical action head."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden_sizes: list[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise TypeError(f"MLPActorCritic needs a flat Box observation space, got {observation_space}")
        obs_dim = int(observation_space.shape[0])
        hidden = list(hidden_sizes)
        self.continuous = isinstance(action_space, gym.spaces.Box)
        if self.continuous:
            act_dim = int(np.prod(action_space.shape))
        elif isinstance(action_space, gym.spaces.Discrete):
            act_dim = int(action_space.n)
        else:
            raise TypeError(f"unsupported action space {action_space} (Box or Discrete)")
        self.shared = shared
        if shared:
            self.trunk = mlp([obs_dim, *hidden[:-1]], activation, hidden[-1], math.sqrt(2))
            self.trunk.append(activation_module(activation)())
            self.actor_head = layer_init(nn.Linear(hidden[-1], act_dim), gain=0.01)
            self.critic_head = layer_init(nn.Linear(hidden[-1], 1), gain=1.0)
        else:
            self.actor = mlp([obs_dim, *hidden], activation, act_dim, 0.01)
            self.critic = mlp([obs_dim, *hidden], activation, 1, 1.0)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))
        self.activation = activation
        if not shared:
            self._linear_params()

    # ---- pieces -------------------------------------------------------------------------------------

    def _linear_params(self) -> None:
        """[weight, bias] of each linear layer of the actor and of the critic, for the compiled ops (the same
        Parameter objects: in-place updates, ``load_state_dict`` and ``.to`` keep them current)."""

        def params(seq: nn.Sequential) -> list[torch.Tensor]:
            return [p for m in seq if isinstance(m, nn.Linear) for p in (m.weight, m.bias)]

        self._actor_params = params(self.actor)
        self._critic_params = params(self.critic)
        self._log_std = getattr(self, "log_std", None)

    def gaussian_mlp(self) -> GaussianMLP | None:
        if self.shared or not self.continuous:
            return None
        return GaussianMLP(self._actor_params, self._critic_params, self.log_std, self.activation)

    def _features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor output (mean or logits) and value."""
        if self.shared:
            h = self.trunk(obs)
            return self.actor_head(h), self.critic_head(h).squeeze(-1)
        return self.actor(obs), self.critic(obs).squeeze(-1)

    def _dist(self, head: torch.Tensor) -> Distribution:
        # validate_args=False: the argument checks cost more than the math for these small networks.
        if self.continuous:
            return Independent(
                Normal(head, self.log_std.exp().expand_as(head), validate_args=False), 1, validate_args=False
            )
        return Categorical(logits=head, validate_args=False)

    # ---- Policy interface ---------------------------------------------------------------------------

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> ActOutput:
        if self.continuous and not self.shared and not torch.is_grad_enabled():
            return self._act_gaussian(obs, deterministic)
        head, value = self._features(obs)
        dist = self._dist(head)
        if deterministic:
            action = head if self.continuous else head.argmax(-1)
        else:
            action = dist.sample()
        return ActOutput(action, dist.log_prob(action), value)

    def _act_gaussian(self, obs: torch.Tensor, deterministic: bool) -> ActOutput:
        """The collector's and the evaluation's step: ``act`` for the common case (separate MLPs, Gaussian, no
        grad) as one fused op, within float32 rounding of the distribution path and the same bits on every
        x86-64 CPU (``rlarena.ops.mlp_gaussian_act``)."""
        action, logp, value = ops.mlp_gaussian_act(
            obs, self._actor_params, self._critic_params, self.log_std, self.activation, deterministic
        )
        return ActOutput(action, logp, value)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.continuous and not self.shared and not torch.is_grad_enabled():
            return self._act_gaussian(obs, True).value  # the kernel's arithmetic (bootstraps, last values)
        if self.shared:
            return self.critic_head(self.trunk(obs)).squeeze(-1)
        return self.critic(obs).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> EvalOutput:
        """Log-prob, entropy and value of a batch. Separate MLPs with a Gaussian head on the CPU run as one
        compiled op with autograd (``rlarena.policy_ops.gaussian_mlp_evaluate``: what every algorithm's update
        gets, within float32 rounding of ``evaluate_reference`` and the same bits on every x86-64 CPU); the
        distribution, wanted by few (TRPO's KL), is built by the reference when it is first asked for."""
        if (
            self.continuous
            and not self.shared
            and policy_ops.gaussian_mlp_evaluate_applies(obs, actions, self.log_std)
            and self._own_parameters()
        ):
            logp, entropy, value = policy_ops.gaussian_mlp_evaluate(
                obs, actions, self._actor_params, self._critic_params, self.log_std, self.activation
            )
            return EvalOutput(logp, entropy, value, self._deferred_dist(obs))
        return self.evaluate_reference(obs, actions)

    def _own_parameters(self) -> bool:
        """False while torch.func.functional_call (or the like) substitutes other tensors for the modules'
        parameters: then the reference runs, on those."""
        now = [t for m in self.actor if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]
        return all(a is b for a, b in zip(now, self._actor_params)) and self.log_std is self._log_std

    def _deferred_dist(self, obs: torch.Tensor):
        """The action distribution at ``obs`` as ``evaluate`` would have built it now: with the grad mode of
        now, and refused if a parameter has changed since (an in-place update would give another one)."""
        grad = torch.is_grad_enabled()
        versions = [p._version for p in self._actor_params] + [self.log_std._version]

        def build() -> Distribution:
            now = [p._version for p in self._actor_params] + [self.log_std._version]
            if now != versions:
                raise RuntimeError(
                    "EvalOutput.dist was first asked for after the policy's parameters changed; read it "
                    "before updating them (or call policy.evaluate_reference)"
                )
            with torch.set_grad_enabled(grad):
                return self._dist(self._features(obs)[0])

        return build

    def evaluate_reference(self, obs: torch.Tensor, actions: torch.Tensor) -> EvalOutput:
        """The definition of ``evaluate``: torch modules and distributions, through autograd."""
        head, value = self._features(obs)
        dist = self._dist(head)
        return EvalOutput(dist.log_prob(actions), dist.entropy(), value, dist)

    def actor_parameters(self) -> list[nn.Parameter]:
        if self.shared:
            params = [*self.trunk.parameters(), *self.actor_head.parameters()]
        else:
            params = list(self.actor.parameters())
        return params + ([self.log_std] if self.continuous else [])

    def critic_parameters(self) -> list[nn.Parameter]:
        return list((self.critic_head if self.shared else self.critic).parameters())


def make_mlp_policy(observation_space, action_space, policy_cfg) -> MLPActorCritic:
    return MLPActorCritic(
        observation_space,
        action_space,
        hidden_sizes=list(policy_cfg.hidden_sizes),
        activation=policy_cfg.activation,
        log_std_init=policy_cfg.log_std_init,
        shared=policy_cfg.shared,
    )
