"""Step 2 for a Hugging Face causal LM (``rlarena reward-model hf_path=<SFT folder>``): the SFT model with a
scalar head, trained on comparisons of its own sampled responses, as InstructGPT initializes its reward model
from the SFT model.

The same pieces as the project's own reward model (reward_model.py): the SFT model samples
``samples_per_prompt`` responses per prompt, the task scorer labels every pair of one prompt's responses, a
scalar head reads the last response token's hidden state, and the shared Bradley-Terry loss trains it; the
score is normalized to mean 0 and std 1 on the SFT model's responses. Fitted to a 2-core CPU as the SFT step
is (hf_sft.py): only the top ``train_layers`` decoder layers, the final norm and the head train, and each step
takes ``batch_prompts`` prompts with all of their labeled pairs (InstructGPT's batching: each response is
scored once for its ``k(k-1)/2`` comparisons).

The output is a folder: the LM as ``save_pretrained`` writes it (with its tokenizer), ``reward_head.pt``
(head weights and normalization) and ``rlarena_rm.json`` (the metrics), written all or nothing.
``env.reward=rm env.rm_checkpoint=<folder>`` loads it (:func:`~.reward_model.load_text_reward_model`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from rlarena.errors import MissingFileError
from rlarena.preferences import bradley_terry_loss, preference_accuracy

from .hf import HFTokenizer, load_hf_lm, save_pretrained_atomically, trainable_top_layers
from .reward_model import Comparisons, TextRewardModel, draw_batch, sample_train_and_heldout
from .sft import require_counts, warmup_cosine
from .tasks import get_task

HEAD_FILE = "reward_head.pt"
METRICS_FILE = "rlarena_rm.json"


@dataclass
class HFRMConfig:
    hf_path: str = ""  # the SFT model's folder (rlarena sft hf_path=...)
    task: str = "format"
    out: str | None = None  # default: <hf_path>-rm, beside the SFT folder
    prompts: int = 256  # training prompts (train split), each with samples_per_prompt responses
    heldout_prompts: int = 64  # held-out prompts (test split) for the reported accuracies
    samples_per_prompt: int = 4
    steps: int = 120
    batch_prompts: int = 4  # prompts per step, with all of their labeled pairs
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    train_layers: int = 4  # the top decoder layers that train (0: all), beside the head and final norm
    max_new_tokens: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        get_task(self.task)
        if not self.hf_path:
            raise ValueError("hf_path= is required: the folder of the SFT model (rlarena sft hf_path=...)")
        require_counts(self, ("prompts", "heldout_prompts", "steps", "batch_prompts", "max_new_tokens"))
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt must be >= 2 to make pairs, got {self.samples_per_prompt}")
        if self.train_layers < 0:
            raise ValueError(f"train_layers must be >= 0, got {self.train_layers}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.out is None:
            self.out = f"{self.hf_path.rstrip('/')}-rm"


@torch.no_grad()
def score_all(rm: TextRewardModel, data: Comparisons, per_prompt: int, batch_size: int = 32) -> torch.Tensor:
    """The raw score of every sampled response, each computed once (a 135M model's forward pass is the cost:
    pairs are scored from these rather than by two passes per pair)."""
    was_training = rm.training
    rm.eval()
    rows = torch.arange(len(data.responses))
    scores = torch.cat([rm.raw_score(*data.pair_inputs(r, per_prompt)) for r in rows.split(batch_size)])
    rm.train(was_training)
    return scores


def accuracy(scores: torch.Tensor, data: Comparisons, pairs: torch.Tensor | None = None) -> float:
    """Share of labeled pairs (all, or the indices ``pairs``) the scores order like the labeler (ties 1/2)."""
    winner, loser = (data.winner, data.loser) if pairs is None else (data.winner[pairs], data.loser[pairs])
    if len(winner) == 0:
        return float("nan")
    sw, sl = scores[winner], scores[loser]
    return float(preference_accuracy(sw, sl, torch.ones_like(sw)).mean())


def load_hf_reward_model(path: str) -> TextRewardModel:
    """The reward model folder written by :func:`train_hf_reward_model`, with ``.tokenizer`` set."""
    if not (Path(path) / HEAD_FILE).is_file():
        raise MissingFileError(
            f"{path!r} is not a reward model folder (no {HEAD_FILE}); create one with "
            "`rlarena reward-model hf_path=<SFT folder> task=<task> out={path}`"
        )
    lm, tok = load_hf_lm(path)
    rm = TextRewardModel(lm)
    head = torch.load(Path(path) / HEAD_FILE, map_location="cpu", weights_only=True)
    rm.head.load_state_dict(head["head"])
    rm.score_mean.fill_(head["score_mean"])
    rm.score_std.fill_(head["score_std"])
    rm.tokenizer = tok
    rm.task = head["task"]
    rm.reads_text = True  # another tokenizer than the character policy's: it reads decoded text
    return rm


def train_hf_reward_model(cfg: HFRMConfig, log: Callable[[str], None] = print) -> dict:
    """Sample, label, train and evaluate a reward model on the SFT model at ``cfg.hf_path``; write it."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    lm, tok = load_hf_lm(cfg.hf_path)
    if not isinstance(tok, HFTokenizer):
        raise ValueError(f"{cfg.hf_path!r} has no tokenizer: the reward model reads the SFT model's own")
    m = cfg.samples_per_prompt
    train, heldout = sample_train_and_heldout(
        lm, tok, cfg.task, cfg.prompts, cfg.heldout_prompts, m, cfg.max_new_tokens, gen
    )
    sampled = time.perf_counter() - start
    log(
        f"reward-model {cfg.task} on {cfg.hf_path}: {len(train.winner)} training / {len(heldout.winner)} "
        f"held-out comparisons ({sampled:.0f} s to load and sample); "
        f"mean labeler score {train.scores.mean():.3f}"
    )

    rm = TextRewardModel(lm)
    nn.init.zeros_(rm.head.weight)  # all ties at first, as the character reward model
    nn.init.zeros_(rm.head.bias)
    params = [*trainable_top_layers(lm, cfg.train_layers), *rm.head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = warmup_cosine(opt, 0, cfg.steps)
    rm.train()
    train_start, losses = time.perf_counter(), []
    for step in range(1, cfg.steps + 1):
        k = draw_batch(train, m, "prompts", cfg.batch_prompts, gen)
        if len(k) == 0:  # these prompts' samples all tie
            schedule.step()
            continue
        rows, index = torch.unique(torch.cat([train.winner[k], train.loser[k]]), return_inverse=True)
        sw, sl = rm.raw_score(*train.pair_inputs(rows, m))[index].chunk(2)
        loss = bradley_terry_loss(sw, sl, torch.ones_like(sw))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        schedule.step()
        losses.append(loss.item())
        if step % 20 == 0 or step == cfg.steps:
            recent = losses[-20:]
            log(
                f"  step {step}/{cfg.steps}: loss {sum(recent) / len(recent):.3f} "
                f"({(time.perf_counter() - train_start) / step:.2f} s/step)"
            )
    train_seconds = time.perf_counter() - train_start

    train_scores, heldout_scores = score_all(rm, train, m), score_all(rm, heldout, m)
    rm.score_mean.fill_(train_scores.mean())  # mean 0, std 1 over the SFT model's responses
    rm.score_std.fill_(train_scores.std().clamp(min=1e-6))
    metrics: dict = {
        "heldout_accuracy": accuracy(heldout_scores, heldout),
        "train_accuracy": accuracy(train_scores, train),
        "heldout_pairs": len(heldout.winner),
        "train_pairs": len(train.winner),
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / cfg.steps,
        "trained_parameters": sum(p.numel() for p in params),
    }
    for part in heldout.components or {}:
        only = heldout.differing_in_only(part)
        metrics[f"heldout_accuracy_{part}"] = accuracy(heldout_scores, heldout, only)
        metrics[f"heldout_pairs_{part}"] = len(only)
    metrics["seconds"] = time.perf_counter() - start
    metrics["config"] = asdict(cfg)

    def write_head(folder: Path) -> None:
        head = {
            "head": rm.head.state_dict(),
            "score_mean": float(rm.score_mean),
            "score_std": float(rm.score_std),
            "task": cfg.task,
        }
        torch.save(head, folder / HEAD_FILE)
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n")

    for p in lm.model.parameters():  # saved as an ordinary model: every parameter trainable again
        p.requires_grad_(True)
    save_pretrained_atomically(lm.model, tok.tok, Path(cfg.out), extra=write_head)
    parts = ", ".join(
        f"{p} {metrics[f'heldout_accuracy_{p}']:.3f} ({metrics[f'heldout_pairs_{p}']} pairs)"
        for p in heldout.components or {}
    )
    log(
        f"reward-model {cfg.task}: held-out pairwise accuracy {metrics['heldout_accuracy']:.3f} (chance 0.5, "
        f"{metrics['heldout_pairs']} pairs), train {metrics['train_accuracy']:.3f}; {train_seconds:.0f} s "
        f"training ({metrics['seconds_per_step']:.2f} s/step), {metrics['seconds']:.0f} s in all; "
        f"wrote {cfg.out}"
    )
    if parts:
        log(f"  held-out pairs that differ in one part only: {parts}")
    return metrics
