"""Learning from preferences on text: whole responses compared per prompt, a transformer reward model.

The :class:`~rlarena.preferences.PreferenceSupport` of :class:`~rlarena.envs.text.env.TextEnv`, the loop of
InstructGPT's steps 2-3 run online (``algo=preference``):

* a comparable unit is one response; the collector samples ``responses_per_prompt`` responses per prompt in
  consecutive columns, and only responses to the same prompt are paired (InstructGPT's K responses ranked);
* a person sees the prompt and both responses (``Segment.display``); the synthetic labeler prefers the higher
  task score (the segment's one true reward);
* the reward model is the SFT transformer with ``ensemble_size`` scalar heads read at the last response
  token (or, with ``reward_model.init``, the model of ``rlarena reward-model``, its head copied to every
  head), trained on the labels so far with the shared Bradley-Terry loss (label noise as set), each head
  on its own Poisson bootstrap of the prompts, the prompts a head did not draw its validation set;
  its score is the mean of the heads' standardized scores, standardized over the labeled responses;
* relabeling replaces the response's task score at its last token with the model's score; the per-token KL
  penalty to the SFT model stays where the environment put it.

Of ``RewardModelConfig`` the text model uses ``ensemble_size``, ``learning_rate``, ``batch_size``,
``epochs``, ``max_steps_per_round``, ``label_noise`` and ``init``; ``hidden_sizes``, ``l2``, ``adaptive_l2``,
``dropout`` and ``validation`` shape the MLP ensemble only (here: AdamW with weight decay 0.01 and bootstrap
validation by prompt, as ``rlarena reward-model`` trains).

It reads the side data of this family's collector (envs/text/env.py): ``batch.info["task_scores"]`` (the
scorer's score per column: the labeler's and the logs' truth) and ``batch.info["final_rewards"]`` (what the
environment added at each response's last token: the task score, or the reward model's with
``env.reward=rm``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from rlarena.preferences import (
    LabeledPair,
    PreferenceRewardModel,
    PreferenceSettings,
    PreferenceSupport,
    Relabeled,
    Segment,
    bradley_terry_loss,
    preference_accuracy,
)
from rlarena.reward_ensemble import RewardModelConfig
from rlarena.rollout import RolloutBatch

from .reward_model import load_text_reward_model
from .tokenizer import CharTokenizer


def _pad(rows: list[torch.Tensor], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Id rows of different lengths as one ``[B, L]`` tensor and its mask (left or right padded)."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        sl = slice(length - len(r), length) if left else slice(0, len(r))
        ids[i, sl], mask[i, sl] = r, True
    return ids, mask


class TextRewardHeads(nn.Module):
    """A causal LM with ``heads`` scalar heads on the hidden state of the last response token."""

    def __init__(self, lm: nn.Module, heads: int) -> None:
        super().__init__()
        self.lm = lm
        self.head = nn.Linear(lm.hidden_size, heads)
        nn.init.zeros_(self.head.weight)  # every pair a tie at first, as `rlarena reward-model` starts
        self.register_buffer("head_mean", torch.zeros(heads))
        self.register_buffer("head_std", torch.ones(heads))
        self.register_buffer("out_mean", torch.zeros(()))
        self.register_buffer("out_std", torch.ones(()))

    def head_scores(self, prompt, prompt_mask, responses, resp_mask) -> torch.Tensor:
        """Raw scores ``[heads, B]``."""
        tokens = torch.cat([prompt, responses], dim=1)
        _, hidden, _ = self.lm(tokens, torch.cat([prompt_mask, resp_mask], dim=1), logits_to_keep=1)
        last = prompt.shape[1] + resp_mask.sum(1) - 1
        return self.head(hidden[torch.arange(len(last), device=last.device), last]).T

    @torch.no_grad()
    def score(self, prompt, prompt_mask, responses, resp_mask) -> torch.Tensor:
        """The reward for RL ``[B]``: mean of the standardized heads, standardized again."""
        raw = self.head_scores(prompt, prompt_mask, responses, resp_mask)
        z = (raw - self.head_mean[:, None]) / self.head_std[:, None]
        return (z.mean(0) - self.out_mean) / self.out_std

    @torch.no_grad()
    def fit_normalization(self, raw: torch.Tensor) -> None:
        """Zero mean, unit std per head and for the mean, over raw scores ``[heads, n]``."""
        self.head_mean.copy_(raw.mean(1))
        one = torch.ones_like(self.head_std)
        self.head_std.copy_(raw.std(1).clamp_min(1e-6) if raw.shape[1] > 1 else one)
        z = ((raw - self.head_mean[:, None]) / self.head_std[:, None]).mean(0)
        self.out_mean.copy_(z.mean())
        self.out_std.copy_(z.std().clamp_min(1e-6) if z.numel() > 1 else torch.ones(()))


class TextRewardLearner(PreferenceRewardModel):
    """Trains :class:`TextRewardHeads` on labeled response pairs, round after round."""

    def __init__(self, lm: nn.Module, pad_id: int, cfg: RewardModelConfig, seed: int) -> None:
        self.cfg = cfg
        self.pad_id = pad_id
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = TextRewardHeads(lm, cfg.ensemble_size)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
        self.pairs: list[LabeledPair] = []
        self.weights: list[torch.Tensor] = []  # per pair, one Poisson(1) weight per head (0: held out)
        # Drawn once per prompt: the pairs of one prompt share responses, so a head that held out some of
        # them but trained on others would be validated on what it has seen.
        self.prompt_weights: dict[bytes, torch.Tensor] = {}
        self.rounds = 0
        self.last_metrics: dict[str, float] = {}

    def warm_start(self, saved: nn.Module) -> None:
        """Start from a ``rlarena reward-model`` checkpoint (one head): its transformer, its head copied to
        every head, its normalization (it relabels from the first update)."""
        self.model.lm.load_state_dict(saved.lm.state_dict())
        with torch.no_grad():
            self.model.head.weight.copy_(saved.head.weight.expand_as(self.model.head.weight))
            self.model.head.bias.copy_(saved.head.bias.expand_as(self.model.head.bias))
            self.model.head_mean.fill_(float(saved.score_mean))
            self.model.head_std.fill_(float(saved.score_std))
        self.warm_started = True

    @property
    def num_labels(self) -> int:
        return len(self.pairs)

    def add(self, pairs: list[LabeledPair]) -> None:
        for p in pairs:
            if p.a.unit != "response" or p.b.unit != "response":
                raise ValueError("the text reward model compares response segments")
            key = p.a.obs.tobytes()
            if key not in self.prompt_weights:
                ones = torch.ones(self.cfg.ensemble_size)
                self.prompt_weights[key] = torch.poisson(ones, generator=self.generator)
            self.pairs.append(p)
            self.weights.append(self.prompt_weights[key])

    def _inputs(self, segments: list[Segment]) -> tuple[torch.Tensor, ...]:
        device = self.model.head.weight.device
        prompt, prompt_mask = _pad([torch.from_numpy(s.obs) for s in segments], self.pad_id, left=True)
        resp, resp_mask = _pad([torch.from_numpy(s.actions) for s in segments], self.pad_id, left=False)
        return tuple(x.to(device) for x in (prompt, prompt_mask, resp, resp_mask))

    def _head_scores(self, a: list[Segment], b: list[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head scores ``[heads, B]`` of both sides, in one forward pass."""
        scores = self.model.head_scores(*self._inputs(a + b))
        return scores[:, : len(a)], scores[:, len(a) :]

    def fit(self) -> dict[str, float]:
        n = len(self.pairs)
        if n == 0:
            return {}
        cfg, model = self.cfg, self.model
        batch = min(cfg.batch_size, n)
        num_steps = min(cfg.epochs * math.ceil(n / batch), cfg.max_steps_per_round)
        targets = torch.tensor([p.target for p in self.pairs])
        weights = torch.stack(self.weights, dim=1)  # [heads, n]
        model.train()
        for _ in range(num_steps):
            idx = torch.randint(0, n, (batch,), generator=self.generator)
            sa, sb = self._head_scores([self.pairs[i].a for i in idx], [self.pairs[i].b for i in idx])
            target = targets[idx].to(sa.device).expand_as(sa)
            losses = bradley_terry_loss(sa, sb, target, cfg.label_noise, reduction="none")
            w = weights[:, idx].to(sa.device)
            loss = ((losses * w).sum(1) / w.sum(1).clamp_min(1.0)).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.optimizer.step()
        self.rounds += 1
        self.last_metrics = {**self._evaluate(targets, weights), "labels": float(n), "train_steps": num_steps}
        return self.last_metrics

    @torch.no_grad()
    def _evaluate(self, targets: torch.Tensor, weights: torch.Tensor) -> dict[str, float]:
        """Refit the normalization on every labeled response; accuracy on drawn and held-out labels."""
        self.model.eval()
        sa, sb = [], []
        for start in range(0, len(self.pairs), 128):
            chunk = self.pairs[start : start + 128]
            a, b = self._head_scores([p.a for p in chunk], [p.b for p in chunk])
            sa.append(a.cpu())
            sb.append(b.cpu())
        sa, sb = torch.cat(sa, 1), torch.cat(sb, 1)
        self.model.fit_normalization(torch.cat([sa, sb], 1).to(self.model.head_mean.device))
        acc = preference_accuracy(sa, sb, targets.expand_as(sa))
        strict = ~torch.isnan(acc)
        acc = torch.nan_to_num(acc)
        train_w, val_w = weights * strict, (weights == 0).float() * strict

        def mean(w: torch.Tensor) -> float:
            return float((acc * w).sum() / w.sum()) if w.sum() > 0 else math.nan

        return {"train_accuracy": mean(train_w), "val_accuracy": mean(val_w), "val_pairs": float(val_w.sum())}

    @torch.no_grad()
    def disagreement(self, a: list[Segment], b: list[Segment]) -> torch.Tensor:
        """Variance across heads of P(a > b) (zero with one head: then the first pairs are taken)."""
        self.model.eval()
        sa, sb = self._head_scores(a, b)
        return torch.sigmoid(sa - sb).var(0, unbiased=False).cpu()

    @torch.no_grad()
    def score(self, prompt, prompt_mask, responses, resp_mask) -> torch.Tensor:
        self.model.eval()
        return self.model.score(prompt, prompt_mask, responses, resp_mask)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "rounds": self.rounds,
            "last_metrics": dict(self.last_metrics),
            "pairs": [_pair_state(p) for p in self.pairs],
            "weights": torch.stack(self.weights) if self.weights else torch.zeros(0, self.cfg.ensemble_size),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.rounds = int(state["rounds"])
        self.last_metrics = {k: float(v) for k, v in state.get("last_metrics", {}).items()}
        self.pairs = [_pair_from_state(p) for p in state["pairs"]]
        self.weights = [w.clone() for w in state["weights"]]
        self.prompt_weights = {p.a.obs.tobytes(): w for p, w in zip(self.pairs, self.weights)}


def _pair_state(pair: LabeledPair) -> dict[str, Any]:
    """A labeled response pair as tensors and plain values (a checkpoint loads with ``weights_only=True``)."""
    out: dict[str, Any] = {"target": float(pair.target)}
    for side, seg in (("a", pair.a), ("b", pair.b)):
        out[f"{side}_prompt"] = torch.from_numpy(seg.obs.copy())
        out[f"{side}_response"] = torch.from_numpy(seg.actions.copy())
        out[f"{side}_score"] = float(seg.true_return)
    return out


def _pair_from_state(state: dict[str, Any]) -> LabeledPair:
    sides = [
        Segment(
            state[f"{side}_prompt"].numpy(),
            state[f"{side}_response"].numpy(),
            None if math.isnan(state[f"{side}_score"]) else [state[f"{side}_score"]],
            unit="response",
        )
        for side in ("a", "b")
    ]
    return LabeledPair(sides[0], sides[1], float(state["target"]))


class ResponsePairs(PreferenceSupport):
    """Responses to the same prompt, compared in pairs; the reward model reads prompt and response."""

    unit = "response"

    def __init__(
        self,
        reference: nn.Module,
        tokenizer: CharTokenizer,
        responses_per_prompt: int,
        env_name: str,
        settings: PreferenceSettings,
        task: str,
    ) -> None:
        self.task = task
        self.reference = reference  # the frozen SFT model: the reward model starts as a copy of it
        self.tokenizer = tokenizer
        self.group = responses_per_prompt
        self.env_name = env_name
        self.rm_config = settings.reward_model or RewardModelConfig()

    def _columns(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        return {
            "prompt": batch.obs["prompt"][0],
            "prompt_mask": batch.obs["prompt_mask"][0],
            "responses": batch.actions.T,
            "resp_mask": batch.mask.T,
        }

    def candidate_pairs(
        self, batch: RolloutBatch, count: int, generator: torch.Generator
    ) -> list[tuple[Segment, Segment]]:
        c, k = self._columns(batch), self.group
        n = batch.num_envs
        within = [(g + i, g + j) for g in range(0, n - k + 1, k) for i in range(k) for j in range(i + 1, k)]
        order = torch.randperm(len(within), generator=generator)[:count].tolist()
        scores = batch.info["task_scores"]
        tok = self.tokenizer
        segments: dict[int, Segment] = {}

        def segment(col: int) -> Segment:
            if col not in segments:
                prompt = c["prompt"][col][c["prompt_mask"][col]].cpu()
                response = c["responses"][col][c["resp_mask"][col]].cpu()
                segments[col] = Segment(
                    prompt.numpy(),
                    response.numpy(),
                    [float(scores[col])],
                    unit="response",
                    display={"prompt": tok.decode(prompt), "response": tok.decode(response)},
                    meta={"env_id": self.env_name, "prompt_group": col // k},
                )
            return segments[col]

        return [(segment(within[i][0]), segment(within[i][1])) for i in order]

    def make_reward_model(self, seed: int) -> TextRewardLearner:
        # InstructGPT initializes the reward model from the SFT model: a trainable copy of the reference.
        lm = copy.deepcopy(self.reference).requires_grad_(True).train()
        learner = TextRewardLearner(lm, self.tokenizer.pad_id, self.rm_config, seed)
        if self.rm_config.init is not None:  # InstructGPT's iterated collection: go on from a reward model
            learner.warm_start(load_text_reward_model(self.rm_config.init, self.task))
        return learner

    def relabel(self, batch: RolloutBatch, model: Any) -> Relabeled:
        c = self._columns(batch)
        n = batch.num_envs
        if model.trained:
            predicted = model.score(c["prompt"], c["prompt_mask"], c["responses"], c["resp_mask"])
        else:
            predicted = torch.zeros(n, device=batch.rewards.device)
        final = torch.as_tensor(batch.info["final_rewards"], device=batch.rewards.device)
        last = c["resp_mask"].sum(1) - 1
        rewards = batch.rewards.double().clone()
        rewards[last, torch.arange(n, device=rewards.device)] += (predicted - final).double()
        true = torch.as_tensor(batch.info["task_scores"], dtype=torch.float64).cpu()
        # Logged as deviations from their prompt's mean: the model learns to rank the responses to one
        # prompt (Bradley-Terry on pairs of them), not to compare prompts.
        return Relabeled(
            rewards=rewards, predicted=self._within(predicted.double().cpu()), true=self._within(true)
        )

    def _within(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.view(-1, self.group)
        return (groups - groups.mean(1, keepdim=True)).reshape(-1)
