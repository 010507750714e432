"""Step 2 of InstructGPT: a reward model trained on comparisons of the SFT model's own responses.

For each prompt the SFT model samples several responses; the synthetic labeler (the task scorer) ranks
them, and every pair with different scores becomes a comparison. The reward model is the SFT transformer
with a scalar head on the last response token, trained with the shared Bradley-Terry loss
(:func:`rlarena.preferences.bradley_terry_loss`). Its scores are normalized to mean 0 and std 1 on the SFT
model's responses, so that the RL reward has a known scale.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from rlarena.errors import ConfigError
from rlarena.preferences import bradley_terry_loss, preference_accuracy

from .model import ModelConfig, TransformerLM, generate, response_mask
from .sft import default_path, load_checkpoint, load_lm, require_counts, save_lm, warmup_cosine
from .tasks import Record, get_task, load_split
from .tokenizer import CharTokenizer


class NoComparisonsError(RuntimeError):
    """Every sampled response of every prompt scored the same."""


class TextRewardModel(nn.Module):
    def __init__(self, lm: TransformerLM) -> None:
        super().__init__()
        self.lm = lm
        self.head = nn.Linear(lm.hidden_size, 1)
        # Affine normalization of the raw score, fitted after training (see ``fit_normalization``).
        self.register_buffer("score_mean", torch.zeros(()))
        self.register_buffer("score_std", torch.ones(()))

    def raw_score(
        self,
        prompt: torch.Tensor,
        prompt_mask: torch.Tensor,
        responses: torch.Tensor,
        resp_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Scalar score ``[N]`` of each (left-padded prompt, right-padded response), read at the last real
        response token (the EOS when the response has one)."""
        tokens = torch.cat([prompt, responses], dim=1)
        key_mask = torch.cat([prompt_mask, resp_mask], dim=1)
        _, hidden, _ = self.lm(tokens, key_mask, logits_to_keep=1)  # the hidden states are what it reads
        last = prompt.shape[1] + resp_mask.sum(1) - 1
        return self.head(hidden[torch.arange(len(last), device=last.device), last]).squeeze(-1)

    def score(self, prompt, prompt_mask, responses, resp_mask) -> torch.Tensor:
        return (self.raw_score(prompt, prompt_mask, responses, resp_mask) - self.score_mean) / self.score_std

    def score_texts(
        self, prompts: list[str], responses: list[str], ended: list[bool], tok: CharTokenizer
    ) -> torch.Tensor:
        """``score`` of responses given as text, encoded with the reward model's own tokenizer ``tok``: for a
        policy with another tokenizer (a Hugging Face model). ``ended``: the response closed with its
        tokenizer's EOS, so it gets the reward model's EOS too (as every response it was trained on that
        ended before the length limit)."""
        device = self.score_mean.device
        prompt, prompt_mask = (x.to(device) for x in tok.encode_prompts(prompts))
        encoded = [tok.encode(text, eos=end) or [tok.eos_id] for text, end in zip(responses, ended)]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), tok.pad_id, dtype=torch.long, device=device)
        resp_mask = torch.zeros_like(ids, dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e, device=device)
            resp_mask[i, : len(e)] = True
        return self.score(prompt, prompt_mask, ids, resp_mask)


def load_text_reward_model(path: str, task: str | None = None) -> TextRewardModel:
    """The character-level reward model of ``rlarena reward-model``, with ``.tokenizer`` (what it reads) and
    ``.reads_text`` False (it scores the character policy's tokens directly). The folder of a Hugging Face
    one: :func:`~.hf_reward_model.load_hf_reward_model` (the env picks by the path: ``load_reward_model``)."""
    ckpt = load_checkpoint(path, "reward-model", f"rlarena reward-model task={task or '<task>'} out={path}")
    if task is not None and ckpt["task"] != task:
        raise ConfigError(f"{path!r} was trained on task {ckpt['task']!r}, not {task!r}")
    rm = TextRewardModel(TransformerLM(ModelConfig(**ckpt["model_config"])))
    rm.load_state_dict(ckpt["state_dict"])
    rm.tokenizer = CharTokenizer(ckpt["vocab"])  # what it reads (score_texts: a policy with another one)
    rm.reads_text = False
    return rm


# ---- comparison data ----------------------------------------------------------------------------------


@dataclass
class Comparisons:
    """Sampled responses and the labeled pairs among them (``winner`` is preferred to ``loser``)."""

    prompt: torch.Tensor  # [P, Lp] left-padded prompt ids
    prompt_mask: torch.Tensor
    responses: torch.Tensor  # [P * M, T] the M samples of prompt i are rows i*M .. i*M + M - 1
    resp_mask: torch.Tensor
    scores: torch.Tensor  # [P * M] the labeler's scores
    winner: torch.Tensor  # [K] row indices into responses
    loser: torch.Tensor
    components: dict[str, torch.Tensor] | None = None  # [P * M] per scorer part (Task.components)

    def differing_in_only(self, name: str) -> torch.Tensor:
        """Indices of the pairs whose responses differ in scorer part ``name`` and in no other part."""
        assert self.components is not None
        diff = {k: (v[self.winner] - v[self.loser]).abs() > 1e-9 for k, v in self.components.items()}
        others = [d for k, d in diff.items() if k != name]
        only = diff[name] & ~torch.stack(others).any(0) if others else diff[name]
        return only.nonzero().squeeze(1)

    def pair_inputs(self, rows: torch.Tensor, per_prompt: int) -> tuple[torch.Tensor, ...]:
        p = rows // per_prompt
        return self.prompt[p], self.prompt_mask[p], self.responses[rows], self.resp_mask[rows]


@torch.no_grad()
def sample_comparisons(
    lm: nn.Module,
    records: list[Record],
    task: str,
    tok: CharTokenizer,
    per_prompt: int,
    max_new_tokens: int,
    generator: torch.Generator,
    min_margin: float = 0.0,
) -> Comparisons:
    lm.eval()
    prompt, prompt_mask = tok.encode_prompts([r["prompt"] for r in records])
    rows = torch.arange(len(records)).repeat_interleave(per_prompt)
    responses = torch.cat(
        [
            generate(lm, prompt[chunk], prompt_mask[chunk], max_new_tokens, tok.eos_id, tok.pad_id, generator)
            for chunk in rows.split(256)
        ]
    )
    resp_mask = response_mask(responses, tok.eos_id)
    spec = get_task(task)
    texts = [tok.decode(r) for r in responses]
    scores = torch.tensor([spec.score(records[int(p)], t) for p, t in zip(rows, texts)])
    components = None
    if spec.components is not None:
        parts = [spec.components(records[int(p)], t) for p, t in zip(rows, texts)]
        components = {k: torch.tensor([c[k] for c in parts]) for k in parts[0]}
    winner, loser = [], []
    for i in range(len(records)):  # the synthetic labeler compares every pair of one prompt's responses
        for a, b in itertools.combinations(range(i * per_prompt, (i + 1) * per_prompt), 2):
            if abs(scores[a] - scores[b]) > min_margin:  # (near-)ties carry no clear preference
                winner.append(a if scores[a] > scores[b] else b)
                loser.append(b if scores[a] > scores[b] else a)
    return Comparisons(
        prompt,
        prompt_mask,
        responses,
        resp_mask,
        scores,
        torch.tensor(winner, dtype=torch.long),
        torch.tensor(loser, dtype=torch.long),
        components,
    )


def sample_train_and_heldout(
    lm: nn.Module,
    tok: CharTokenizer,
    task: str,
    prompts: int,
    heldout_prompts: int,
    per_prompt: int,
    max_new_tokens: int,
    generator: torch.Generator,
    min_margin: float = 0.0,
) -> tuple[Comparisons, Comparisons]:
    """Comparisons on ``prompts`` random training prompts and on the first ``heldout_prompts`` test prompts;
    :class:`NoComparisonsError` if either has no labeled pair."""
    train_records = load_split(task, "train")
    pick = torch.randperm(len(train_records), generator=generator)[:prompts].tolist()
    args = (task, tok, per_prompt, max_new_tokens, generator, min_margin)
    train = sample_comparisons(lm, [train_records[i] for i in pick], *args)
    heldout = sample_comparisons(lm, load_split(task, "test")[:heldout_prompts], *args)
    if len(train.winner) == 0 or len(heldout.winner) == 0:
        raise NoComparisonsError(
            "the SFT model's samples all score the same: no comparisons to learn from "
            "(raise prompts= or samples_per_prompt=)"
        )
    return train, heldout


@torch.no_grad()
def pairwise_accuracy(
    rm: TextRewardModel,
    data: Comparisons,
    per_prompt: int,
    max_pairs: int | None = None,
    batch_size: int = 256,
    pairs: torch.Tensor | None = None,
) -> float:
    """Mean :func:`rlarena.preferences.preference_accuracy` over the labeled pairs (the first ``max_pairs``,
    or the indices ``pairs``): the fraction the reward model orders like the labeler, a tie counting one
    half (NaN for no pairs)."""
    rm.eval()
    correct = 0.0
    winner, loser = data.winner[:max_pairs], data.loser[:max_pairs]
    if pairs is not None:
        winner, loser = data.winner[pairs], data.loser[pairs]
    for w, l in zip(winner.split(batch_size), loser.split(batch_size)):
        sw = rm.raw_score(*data.pair_inputs(w, per_prompt))
        sl = rm.raw_score(*data.pair_inputs(l, per_prompt))
        correct += float(preference_accuracy(sw, sl, torch.ones_like(sw)).sum())  # the winner is `a`
    rm.train()
    return correct / len(winner) if len(winner) else math.nan


# ---- training -----------------------------------------------------------------------------------------


@dataclass
class RMConfig:
    task: str = "arithmetic"
    sft: str | None = None  # default: artifacts/text/<task>/sft.pt
    out: str | None = None  # default: artifacts/text/<task>/rm.pt
    prompts: int = 1000  # training prompts (train split) to sample responses for
    heldout_prompts: int = 100  # held-out prompts (test split) for the reported accuracy
    samples_per_prompt: int = 4
    steps: int = 400
    # "pairs": each step draws batch_size comparisons from all prompts' pairs. "prompts" (InstructGPT):
    # each step draws batch_size prompts and trains on all labeled pairs among their responses, each
    # response scored once (a prompt's pairs are correlated; as one batch element they overfit less, and
    # samples_per_prompt=8 gives 28 comparisons per 8 forward passes).
    batch: str = "pairs"
    batch_size: int = 64  # comparisons ("pairs") or prompts ("prompts") per step
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    max_new_tokens: int = 24
    min_margin: float = 0.0  # pairs whose scores differ by no more than this are ties (skipped)
    seed: int = 0

    def __post_init__(self) -> None:
        get_task(self.task)
        require_counts(self, ("prompts", "heldout_prompts", "steps", "batch_size", "max_new_tokens"))
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt must be >= 2 to make pairs, got {self.samples_per_prompt}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch not in ("pairs", "prompts"):
            raise ValueError(f"batch must be 'pairs' or 'prompts', got {self.batch!r}")
        self.sft = self.sft or default_path(self.task, "sft")
        self.out = self.out or default_path(self.task, "rm")


def train_reward_model(cfg: RMConfig, log: Callable[[str], None] = print) -> dict[str, float]:
    """Sample, label, train and evaluate a reward model; write it to ``cfg.out``; return the metrics."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    sft_lm, tok, _ = load_lm(cfg.sft, cfg.task)
    m = cfg.samples_per_prompt
    start = time.perf_counter()
    train, heldout = sample_train_and_heldout(
        sft_lm, tok, cfg.task, cfg.prompts, cfg.heldout_prompts, m, cfg.max_new_tokens, gen, cfg.min_margin
    )
    log(
        f"reward-model {cfg.task}: {len(train.winner)} training / {len(heldout.winner)} held-out comparisons "
        f"({time.perf_counter() - start:.0f} s to sample); mean labeler score {train.scores.mean():.3f}"
    )

    # InstructGPT initializes the reward model from the SFT model; its head starts at zero (all ties).
    rm = TextRewardModel(sft_lm)
    nn.init.zeros_(rm.head.weight)
    rm.train()
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    # Cosine decay to 10%: the late steps average out the noise of small batches of comparisons.
    schedule = warmup_cosine(opt, 0, cfg.steps)  # no warmup: the factor is exactly 1
    initial = pairwise_accuracy(rm, heldout, m)
    for step in range(1, cfg.steps + 1):
        k = draw_batch(train, m, cfg.batch, cfg.batch_size, gen)
        if len(k) == 0:  # all of these prompts' samples tie: nothing to learn from this step
            schedule.step()
            continue
        # One forward pass over winners and losers together (with "prompts", over each response once).
        rows = torch.cat([train.winner[k], train.loser[k]])
        if cfg.batch == "pairs":
            scores = rm.raw_score(*train.pair_inputs(rows, m))
        else:
            unique, index = torch.unique(rows, return_inverse=True)
            scores = rm.raw_score(*train.pair_inputs(unique, m))[index]
        sw, sl = scores.chunk(2)
        loss = bradley_terry_loss(sw, sl, torch.ones_like(sw))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == cfg.steps:
            accuracy = pairwise_accuracy(rm, heldout, m)
            log(f"  step {step}/{cfg.steps}: loss {loss.item():.3f}, held-out accuracy {accuracy:.3f}")

    fit_normalization(rm, train, m)
    metrics = {
        "heldout_accuracy_initial": initial,
        "heldout_accuracy": pairwise_accuracy(rm, heldout, m),
        "train_accuracy": pairwise_accuracy(rm, train, m, max_pairs=1000),
        "heldout_pairs": float(len(heldout.winner)),
        "train_pairs": float(len(train.winner)),
        "seconds": time.perf_counter() - start,
    }
    # Blind spots: accuracy on the held-out pairs that differ in one scorer part only (format: count, word,
    # case; dialogue: fact, form, brevity). A part near 0.5 is one RL can exploit unseen.
    for part in heldout.components or {}:
        only = heldout.differing_in_only(part)
        metrics[f"heldout_accuracy_{part}"] = pairwise_accuracy(rm, heldout, m, pairs=only)
        metrics[f"heldout_pairs_{part}"] = float(len(only))
    # The SFT checkpoint's format, with the reward model's weights (the LM's and the head's).
    save_lm(cfg.out, rm.lm, tok, cfg.task, {"rm_config": asdict(cfg), "metrics": metrics}, rm.state_dict())
    log(
        f"reward-model {cfg.task}: held-out pairwise accuracy {metrics['heldout_accuracy']:.3f} "
        f"(chance 0.5, {int(metrics['heldout_pairs'])} pairs), train {metrics['train_accuracy']:.3f} "
        f"({metrics['seconds']:.0f} s); wrote {cfg.out}"
    )
    parts = [p for p in heldout.components or {}]
    if parts:
        log(
            "  held-out pairs that differ in one part only: "
            + ", ".join(
                f"{p} {metrics[f'heldout_accuracy_{p}']:.3f} ({int(metrics[f'heldout_pairs_{p}'])} pairs)"
                for p in parts
            )
        )
    return metrics


def draw_batch(
    data: Comparisons, per_prompt: int, unit: str, size: int, generator: torch.Generator
) -> torch.Tensor:
    """Indices of one step's comparisons: ``size`` drawn with replacement (``unit="pairs"``), or every
    labeled pair of ``size`` prompts drawn without replacement (``"prompts"``, InstructGPT's batching)."""
    if unit == "pairs":
        return torch.randint(len(data.winner), (size,), generator=generator)
    chosen = torch.randperm(len(data.prompt), generator=generator)[:size]
    return torch.isin(data.winner // per_prompt, chosen).nonzero().squeeze(1)


@torch.no_grad()
def fit_normalization(rm: TextRewardModel, data: Comparisons, per_prompt: int) -> None:
    """Mean 0 and std 1 over the SFT model's responses: the RL reward then starts centered."""
    rm.eval()
    rows = torch.arange(len(data.responses))
    raw = torch.cat([rm.raw_score(*data.pair_inputs(r, per_prompt)) for r in rows.split(256)])
    rm.score_mean.fill_(raw.mean())
    rm.score_std.fill_(raw.std().clamp(min=1e-6))
    rm.train()
