"""The language model as an actor-critic: a categorical policy over the vocabulary plus a value head.

Observations (what ``TextEnv.collect`` stores) are a dict of ``[T, N, ...]`` tensors:

* ``prompt`` ``[T, N, P]`` left-padded prompt ids and ``prompt_mask`` ``[T, N, P]`` (the same at every ``t``:
  expanded views, no copies);

and the actions ``[T, N]`` are the response tokens. ``evaluate`` rebuilds prompt + response and scores every
response token in one teacher-forced pass: the state at step ``t`` is the prompt plus the tokens before ``t``.

The value head reads the LM's hidden states *detached*: the value loss trains only the head, so it cannot
pull the language model away from what the policy-gradient wants (and ``critic_parameters`` are exactly
the parameters the value loss moves).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlarena.activations import activation as activation_module
from rlarena.rollout import ActOutput, EvalOutput, Policy


class ScaledLinear(nn.Linear):
    """A linear layer whose parameters are stored divided by ``scale`` and multiplied back in ``forward``.

    Adam moves every parameter by about the learning rate, so this layer learns ``scale`` times faster than
    its neighbours: a per-module learning-rate multiplier that needs no change in the algorithms.
    """

    def __init__(self, in_features: int, out_features: int, scale: float) -> None:
        super().__init__(in_features, out_features)
        self.scale = scale
        with torch.no_grad():
            self.weight.div_(scale)
            self.bias.div_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.scale, self.bias * self.scale)


class TextPolicy(Policy):
    def __init__(
        self,
        lm: nn.Module,
        hidden_sizes: list[int] | tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        critic_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.lm = lm
        # The algorithms use one learning rate, small enough for the LM; the value head starts from scratch
        # and needs larger steps, hence its ScaledLinear layers (a learning-rate multiplier).
        layers: list[nn.Module] = []
        width = lm.hidden_size
        for h in hidden_sizes:
            layers += [ScaledLinear(width, h, critic_lr_scale), activation_module(activation)()]
            width = h
        layers.append(ScaledLinear(width, 1, critic_lr_scale))
        self.value_head = nn.Sequential(*layers)
        # Start at V = 0: no made-up signal in the first advantages.
        nn.init.zeros_(self.value_head[-1].weight)
        nn.init.zeros_(self.value_head[-1].bias)

    # ---- teacher-forced scoring (the update path) --------------------------------------------------------

    def forward_responses(
        self, prompt: torch.Tensor, prompt_mask: torch.Tensor, responses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N, T, V]`` for each response token and values ``[N, T]`` of the states before them."""
        p, t = prompt.shape[1], responses.shape[1]
        tokens = torch.cat([prompt, responses], dim=1)
        key_mask = torch.cat([prompt_mask, torch.ones_like(responses, dtype=torch.bool)], dim=1)
        # The token at p + t is predicted from position p + t - 1: logits of the last t + 1 positions only.
        logits, hidden, _ = self.lm(tokens, key_mask, logits_to_keep=t + 1)
        logits, hidden = logits[:, :t], hidden[:, p - 1 : p + t - 1]
        return logits, self.value_head(hidden.detach()).squeeze(-1)

    def evaluate(self, obs: dict[str, torch.Tensor], actions: torch.Tensor) -> EvalOutput:
        logits, values = self.forward_responses(obs["prompt"][0], obs["prompt_mask"][0], actions.T)
        dist = torch.distributions.Categorical(logits=logits.transpose(0, 1))  # batch shape [T, n]
        return EvalOutput(dist.log_prob(actions), dist.entropy(), values.T, dist)

    # ---- one step at a time (the generic interface; collection uses a KV cache instead) ---------------

    def _last(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits, hidden, _ = self.lm(obs["tokens"], obs["mask"], logits_to_keep=1)
        return logits[:, -1], self.value_head(hidden[:, -1].detach()).squeeze(-1)

    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> ActOutput:
        """Next token for ``obs = {"tokens": [N, L], "mask": [N, L]}`` (left-padded prefixes)."""
        logits, value = self._last(obs)
        dist = torch.distributions.Categorical(logits=logits)
        action = logits.argmax(-1) if deterministic else dist.sample()
        return ActOutput(action, dist.log_prob(action), value)

    def value(self, obs: dict[str, Any]) -> torch.Tensor:
        return self._last(obs)[1]

    def actor_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.lm.parameters() if p.requires_grad]  # env.hf_train_layers freezes the rest

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.value_head.parameters())
