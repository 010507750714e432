"""Step 1 of InstructGPT: supervised fine-tuning on the demonstrations (here: the small LM from scratch).

The loss is next-token cross-entropy on the response tokens (and the closing EOS) only: the prompt is given,
the model learns what to answer. The default budget is deliberately short, so that the SFT model is decent
but imperfect and RL has something to improve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rlarena.errors import ConfigError, MissingFileError, RunFileError
from rlarena.io import atomic_torch_save, safe_torch_load

from .model import ModelConfig, TransformerLM, generate
from .tasks import Record, get_task, load_split
from .tokenizer import CharTokenizer

CHECKPOINT_FORMAT = "rlarena.text.lm/1"
# Default SFT budgets: enough for a decent model, short of a perfect one (arithmetic is the slowest to learn).
SFT_STEPS = {"arithmetic": 1200, "strings": 300, "format": 300, "dialogue": 300}


def default_path(task: str, kind: str, root: str = "artifacts/text") -> str:
    """Where ``rlarena sft`` (kind ``sft``) and ``rlarena reward-model`` (kind ``rm``) write by default."""
    return str(Path(root) / task / f"{kind}.pt")


def require_counts(cfg: object, names: tuple[str, ...]) -> None:
    """A config's counts (steps, batch sizes, prompts, ...) must be >= 1: ValueError naming the first that
    is not."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")


@dataclass
class SFTConfig:
    task: str = "arithmetic"
    out: str | None = None  # default: artifacts/text/<task>/sft.pt (relative to the current folder)
    steps: int | None = None  # default: SFT_STEPS[task]
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    seed: int = 0
    eval_every: int = 100
    eval_prompts: int = 200  # held-out prompts for the greedy task score at the end
    d_model: int = 128
    n_layer: int = 2
    n_head: int = 4
    max_len: int = 192
    max_new_tokens: int = 24

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.steps is None:
            self.steps = SFT_STEPS[self.task]
        require_counts(self, ("steps", "batch_size", "eval_prompts", "max_new_tokens"))
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.out is None:
            self.out = default_path(self.task, "sft")


# ---- batches and losses -------------------------------------------------------------------------------


def encode_pairs(
    prompts: list[str], responses: list[str], tok: CharTokenizer
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ``[B, L]`` ids of the prompt (``tok.prompt_ids``: BOS + prompt, or a chat template's
    user turn) + response + EOS, the key mask, and the response mask (True on the response tokens and EOS:
    the tokens a loss or a reward model scores)."""
    seqs, resp_lens = [], []
    for p, r in zip(prompts, responses):
        resp = tok.encode(r, eos=True)
        seqs.append(tok.prompt_ids(p) + resp)
        resp_lens.append(len(resp))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.pad_id, dtype=torch.long)
    key_mask = torch.zeros_like(ids, dtype=torch.bool)
    resp_mask = torch.zeros_like(key_mask)
    for i, (s, n) in enumerate(zip(seqs, resp_lens)):
        ids[i, width - len(s) :] = torch.tensor(s)
        key_mask[i, width - len(s) :] = True
        resp_mask[i, width - n :] = True
    return ids, key_mask, resp_mask


def response_nll(lm: torch.nn.Module, records: list[Record], tok: CharTokenizer) -> torch.Tensor:
    """Mean negative log-likelihood per response token (EOS included) of the demonstrations."""
    ids, key_mask, resp_mask = encode_pairs(
        [r["prompt"] for r in records], [r["response"] for r in records], tok
    )
    logits, _, _ = lm(ids[:, :-1], key_mask[:, :-1])
    target_mask = resp_mask[:, 1:]
    return F.cross_entropy(logits[target_mask], ids[:, 1:][target_mask])


@torch.no_grad()
def heldout_loss(
    lm: torch.nn.Module, records: list[Record], tok: CharTokenizer, batch_size: int = 100
) -> float:
    was_training = lm.training
    lm.eval()
    total, count = 0.0, 0
    for i in range(0, len(records), batch_size):
        chunk = records[i : i + batch_size]
        total += float(response_nll(lm, chunk, tok)) * len(chunk)
        count += len(chunk)
    lm.train(was_training)
    return total / count


@torch.no_grad()
def sample_responses(
    lm: torch.nn.Module,
    prompts: list[str],
    tok: CharTokenizer,
    max_new_tokens: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    batch_size: int = 128,
) -> list[str]:
    was_training = lm.training
    lm.eval()
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = tok.encode_prompts(prompts[i : i + batch_size])
        responses = generate(lm, ids, mask, max_new_tokens, tok.eos_id, tok.pad_id, generator, greedy)
        out += [tok.decode(r) for r in responses]
    lm.train(was_training)
    return out


def task_score(
    lm: torch.nn.Module,
    task: str,
    records: list[Record],
    tok: CharTokenizer,
    max_new_tokens: int,
    greedy: bool = True,
    seed: int = 0,
) -> float:
    """Mean true score of the model's responses (greedy, or sampled at temperature 1 with ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    responses = sample_responses(lm, [r["prompt"] for r in records], tok, max_new_tokens, gen, greedy)
    scorer = get_task(task).score
    return sum(scorer(r, s) for r, s in zip(records, responses)) / len(records)


# ---- checkpoints --------------------------------------------------------------------------------------


def save_lm(
    path: str,
    lm: TransformerLM,
    tok: CharTokenizer,
    task: str,
    extra: dict[str, Any],
    state_dict: dict[str, Any] | None = None,
) -> None:
    """Write a text-model checkpoint (format ``CHECKPOINT_FORMAT``): the LM's config, the tokenizer's
    vocabulary, the weights and ``extra``. ``state_dict`` replaces the LM's own weights for a model built on
    ``lm`` (the reward model: the LM plus a scalar head); :func:`load_checkpoint` reads either."""
    atomic_torch_save(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "task": task,
            "model_config": lm.cfg.to_dict(),
            "vocab": tok.chars,
            "state_dict": lm.state_dict() if state_dict is None else state_dict,
            **extra,
        },
    )


def load_checkpoint(path: str, what: str, command: str) -> dict[str, Any]:
    """Load a checkpoint written by this package; a missing file names the command that makes it."""
    if not Path(path).exists():
        raise MissingFileError(f"{what} checkpoint not found at {path!r}; create it with `{command}`")
    try:
        ckpt = safe_torch_load(path)
    except Exception as exc:  # truncated, not a torch file, or pickled objects weights_only refuses
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if reason.startswith("Weights only load failed"):  # not torch's advice to trust the file
            reason = "it holds pickled objects that a safe load (weights_only=True) refuses"
        # Never suggest writing over it: the file may be anything (a typo naming /etc/passwd).
        raise RunFileError(
            f"{path!r}: not a readable {what} checkpoint ({reason}); `{_without_out(command)}` writes one"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunFileError(f"{path!r} is not a {what} checkpoint written by rlarena ({CHECKPOINT_FORMAT})")
    return ckpt


def _without_out(command: str) -> str:
    """``command`` without its ``out=`` argument (the default output path, or one the user chooses)."""
    return " ".join(part for part in command.split() if not part.startswith("out="))


def load_lm(path: str, task: str | None = None) -> tuple[TransformerLM, CharTokenizer, dict[str, Any]]:
    """The SFT language model at ``path`` (as written by ``rlarena sft``)."""
    ckpt = load_checkpoint(path, "SFT", f"rlarena sft task={task or '<task>'} out={path}")
    if task is not None and ckpt["task"] != task:
        raise ConfigError(f"{path!r} was trained on task {ckpt['task']!r}, not {task!r}")
    lm = TransformerLM(ModelConfig(**ckpt["model_config"]))
    lm.load_state_dict(ckpt["state_dict"])
    return lm, CharTokenizer(ckpt["vocab"]), ckpt


# ---- training -----------------------------------------------------------------------------------------


def warmup_cosine(
    opt: torch.optim.Optimizer, warmup_steps: int, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The text pipeline's schedule: linear warmup over ``warmup_steps`` (0: none), then cosine decay to 10%
    of the peak rate at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / max(warmup_steps, 1))
            * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        ),
    )


def train_sft(cfg: SFTConfig, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train an LM on the task's demonstrations, write the checkpoint to ``cfg.out``; return the metrics."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    tok = CharTokenizer()
    train, test = load_split(cfg.task, "train"), load_split(cfg.task, "test")
    model_cfg = ModelConfig(tok.vocab_size, cfg.max_len, cfg.d_model, cfg.n_layer, cfg.n_head)
    lm = TransformerLM(model_cfg)
    opt = torch.optim.AdamW(lm.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    # Linear warmup, then cosine decay to 10% of the peak rate.
    schedule = warmup_cosine(opt, cfg.warmup_steps, cfg.steps)
    initial = heldout_loss(lm, test, tok)
    log(f"sft {cfg.task}: {sum(p.numel() for p in lm.parameters())} parameters, held-out loss {initial:.3f}")
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(train), (cfg.batch_size,), generator=gen).tolist()
        loss = response_nll(lm, [train[i] for i in idx], tok)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            held_out = heldout_loss(lm, test, tok)
            log(f"  step {step}/{cfg.steps}: train loss {loss.item():.3f}, held-out loss {held_out:.3f}")
    metrics = {
        "heldout_loss_initial": initial,
        "heldout_loss": heldout_loss(lm, test, tok),
        "score_greedy": task_score(
            lm, cfg.task, test[: cfg.eval_prompts], tok, cfg.max_new_tokens, greedy=True
        ),
        "score_sampled": task_score(
            lm, cfg.task, test[: cfg.eval_prompts], tok, cfg.max_new_tokens, greedy=False
        ),
        "train_seconds": time.perf_counter() - start,
    }
    save_lm(cfg.out, lm, tok, cfg.task, {"sft_config": asdict(cfg), "metrics": metrics})
    log(
        f"sft {cfg.task}: held-out loss {initial:.3f} -> {metrics['heldout_loss']:.3f}, "
        f"task score greedy {metrics['score_greedy']:.3f} / sampled {metrics['score_sampled']:.3f} "
        f"({metrics['train_seconds']:.0f} s); wrote {cfg.out}"
    )
    return metrics
