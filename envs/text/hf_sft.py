"""Step 1 for a Hugging Face causal LM (``rlarena sft hf_path=<folder>``): supervised fine-tuning of a
pretrained model, e.g. SmolLM2-135M-Instruct (``rlarena convert-smollm2``), on the task's demonstrations.

The same loss as for the project's own model (sft.py: cross-entropy on the response tokens and the closing
EOS, the prompt given), with the model's own tokenizer and chat template. Fitted to a 2-core CPU:

- only the top ``train_layers`` decoder layers and the final norm train (the embeddings, tied to the output
  layer, and the layers below stay as pretrained), so the backward pass and Adam's state cover a few
  million parameters instead of 135 million;
- logits are computed at the response positions only (``logits_to_keep``): over a 49,152-word vocabulary
  the prompt's positions would cost more than the network;
- a short budget (150 steps of 16 demonstrations), then the greedy and sampled task scores on held-out
  prompts, before and after.

The result is written as a ``save_pretrained`` folder (all or nothing) that ``env.hf_path`` loads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .hf import HFCausalLM, HFTokenizer, load_hf_lm, save_pretrained_atomically, trainable_top_layers
from .sft import encode_pairs, require_counts, sample_responses, warmup_cosine
from .tasks import Record, get_task, load_split
from .tokenizer import CharTokenizer


@dataclass
class HFSFTConfig:
    hf_path: str = ""  # the pretrained model's folder (save_pretrained output)
    task: str = "format"
    out: str | None = None  # default: <hf_path>-sft-<task>, beside the pretrained folder
    steps: int = 150
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    train_layers: int = 4  # the top decoder layers that train (0: all of them, embeddings included)
    seed: int = 0
    eval_every: int = 50
    eval_prompts: int = 64  # held-out prompts for the task scores before and after
    max_new_tokens: int = 24

    def __post_init__(self) -> None:
        get_task(self.task)
        if not self.hf_path:
            raise ValueError("hf_path= is required: the folder of a saved Hugging Face causal LM")
        require_counts(self, ("steps", "batch_size", "eval_prompts", "max_new_tokens", "eval_every"))
        if self.train_layers < 0:
            raise ValueError(f"train_layers must be >= 0, got {self.train_layers}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.out is None:
            self.out = f"{self.hf_path.rstrip('/')}-sft-{self.task}"


def response_nll(lm: HFCausalLM, records: list[Record], tok: HFTokenizer | CharTokenizer) -> torch.Tensor:
    """Mean negative log-likelihood per response token (EOS included), logits at the response only."""
    prompts, responses = [r["prompt"] for r in records], [r["response"] for r in records]
    ids, key_mask, resp_mask = encode_pairs(prompts, responses, tok)
    # Left padding right-aligns every response: the last `keep` inputs predict all response tokens.
    keep = int(resp_mask.sum(1).max())
    logits, _, _ = lm(ids[:, :-1], key_mask[:, :-1], logits_to_keep=keep)
    targets, mask = ids[:, -keep:], resp_mask[:, -keep:]
    return F.cross_entropy(logits[mask].float(), targets[mask])


def task_scores(
    lm: HFCausalLM,
    task: str,
    records: list[Record],
    tok: HFTokenizer | CharTokenizer,
    max_new_tokens: int,
    seed: int = 0,
) -> dict[str, float]:
    """Greedy and sampled (temperature 1, ``seed``) mean task score, and the greedy full-marks rate."""
    prompts = [r["prompt"] for r in records]
    scorer = get_task(task).score
    out = {}
    for name, greedy in (("greedy", True), ("sampled", False)):
        gen = torch.Generator().manual_seed(seed)
        responses = sample_responses(lm, prompts, tok, max_new_tokens, gen, greedy, batch_size=32)
        scores = [scorer(r, s) for r, s in zip(records, responses)]
        out[f"score_{name}"] = sum(scores) / len(records)
        if greedy:
            out["exact_greedy"] = sum(s >= 1.0 for s in scores) / len(records)  # full marks
            out["example"] = {"prompt": prompts[0], "response": responses[0]}
    return out


def train_hf_sft(cfg: HFSFTConfig, log: Callable[[str], None] = print) -> dict:
    """Fine-tune the model at ``cfg.hf_path`` on the task's demonstrations; write it to ``cfg.out``."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    lm, tok = load_hf_lm(cfg.hf_path)  # its own tokenizer, or the characters if the folder has none
    loaded = time.perf_counter() - start
    train, test = load_split(cfg.task, "train"), load_split(cfg.task, "test")
    held_out = test[: cfg.eval_prompts]
    params = trainable_top_layers(lm, cfg.train_layers)
    total = sum(p.numel() for p in lm.model.parameters())
    log(
        f"sft {cfg.task} on {cfg.hf_path}: {total:,} parameters, {sum(p.numel() for p in params):,} train "
        f"(top {cfg.train_layers or 'all'} layers); loaded in {loaded:.0f} s"
    )
    lm.eval()
    with torch.no_grad():
        heldout_loss_initial = float(response_nll(lm, held_out, tok))
    before = task_scores(lm, cfg.task, held_out, tok, cfg.max_new_tokens, cfg.seed)
    log(
        f"  before: task score greedy {before['score_greedy']:.3f} / sampled {before['score_sampled']:.3f}, "
        f"exact {before['exact_greedy']:.3f}; e.g. {before['example']['response']!r}"
    )
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = warmup_cosine(opt, cfg.warmup_steps, cfg.steps)
    lm.train()
    train_start, losses = time.perf_counter(), []
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(train), (cfg.batch_size,), generator=gen).tolist()
        loss = response_nll(lm, [train[i] for i in idx], tok)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        schedule.step()
        losses.append(loss.item())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            recent = losses[-cfg.eval_every :]
            log(
                f"  step {step}/{cfg.steps}: train loss {sum(recent) / len(recent):.3f} "
                f"({(time.perf_counter() - train_start) / step:.2f} s/step)"
            )
    train_seconds = time.perf_counter() - train_start
    lm.eval()
    with torch.no_grad():
        heldout_loss = float(response_nll(lm, held_out, tok))
    after = task_scores(lm, cfg.task, held_out, tok, cfg.max_new_tokens, cfg.seed)
    for p in lm.model.parameters():  # saved as an ordinary model: every parameter trainable again
        p.requires_grad_(True)
    save_pretrained_atomically(lm.model, tok.tok if isinstance(tok, HFTokenizer) else None, Path(cfg.out))
    metrics = {
        "heldout_loss_initial": heldout_loss_initial,
        "before": before,
        "after": after,
        "heldout_loss": heldout_loss,
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / cfg.steps,
        "trained_parameters": sum(p.numel() for p in params),
        "config": asdict(cfg),
    }
    (Path(cfg.out) / "rlarena_sft.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log(
        f"sft {cfg.task}: held-out response loss {heldout_loss_initial:.3f} -> {heldout_loss:.3f}, "
        f"task score greedy {before['score_greedy']:.3f} -> {after['score_greedy']:.3f}, "
        f"sampled {before['score_sampled']:.3f} -> {after['score_sampled']:.3f}, exact "
        f"{before['exact_greedy']:.3f} -> {after['exact_greedy']:.3f} on {len(held_out)} held-out prompts "
        f"({train_seconds:.0f} s, {train_seconds / cfg.steps:.2f} s/step); "
        f"e.g. {after['example']['response']!r}; wrote {cfg.out}"
    )
    return metrics
