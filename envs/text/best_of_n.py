"""Best-of-n sampling against the reward model: the reference curve of reward-model over-optimization.

For each held-out prompt the SFT model samples ``n`` responses; the one the reward model scores highest is
kept. As ``n`` grows the kept responses move away from the SFT model, by a KL of ``log n - (n - 1) / n``
nats (exact for best-of-n with distinct samples; Stiennon et al. 2020, Gao et al. 2022), and the task score
(the gold reward) first rises, then, where the reward model is wrong, stops rising or falls while the
reward model's score keeps climbing. RL runs are compared with this curve at matched KL
(Gao, Schulman, Hilton 2022, "Scaling laws for reward model overoptimization").

One pass samples ``max(ns)`` responses per prompt; best-of-``n`` for each ``n`` uses the first ``n`` of them,
so the curve is monotone in the samples it sees. The oracle's best-of-``n`` (picked by the task score) is
reported beside it as the ceiling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rlarena.io import atomic_write_json

from .model import generate, response_mask
from .reward_model import load_text_reward_model
from .sft import default_path, load_lm
from .tasks import get_task, load_split


@dataclass
class BestOfNConfig:
    task: str = "format"
    sft: str | None = None  # default: artifacts/text/<task>/sft.pt
    rm: str | None = None  # default: artifacts/text/<task>/rm.pt
    out: str | None = None  # default: artifacts/text/<task>/best_of_n.json
    prompts: int = 200  # the first held-out (test split) prompts, as a text run's evaluation
    ns: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    max_new_tokens: int | None = None  # null: the task's evaluation limit (env.max_new_tokens)
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.prompts < 2 or not self.ns or min(self.ns) < 1:  # an interval needs two prompts
            raise ValueError(f"prompts must be >= 2 and every n >= 1, got {self.prompts}, {self.ns}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self.ns = sorted({int(n) for n in self.ns})
        self.sft = self.sft or default_path(self.task, "sft")
        self.rm = self.rm or default_path(self.task, "rm")
        self.out = self.out or str(Path(default_path(self.task, "best_of_n")).with_suffix(".json"))


def best_of_n_kl(n: int) -> float:
    """KL (nats) from the base policy to its best-of-n policy: ``log n - (n - 1) / n``."""
    return math.log(n) - (n - 1) / n


def _mean_ci(x: torch.Tensor) -> tuple[float, float, float]:
    """Mean and a normal-approximation 95% interval over prompts."""
    mean = float(x.mean())
    half = 1.96 * float(x.std()) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def curve(gold: torch.Tensor, rm_score: torch.Tensor, ns: list[int]) -> list[dict[str, float]]:
    """Best-of-n rows from ``[prompts, samples]`` task scores and reward-model scores: for each ``n``, the
    response of the first ``n`` samples that the reward model scores highest (the first on a tie)."""
    rows = []
    for n in ns:
        pick = rm_score[:, :n].argmax(1, keepdim=True)
        picked_gold = gold[:, :n].gather(1, pick).squeeze(1)
        mean, low, high = _mean_ci(picked_gold)
        rows.append(
            {
                "n": n,
                "kl": best_of_n_kl(n),
                "score": mean,
                "score_ci_low": low,
                "score_ci_high": high,
                "rm_score": float(rm_score[:, :n].gather(1, pick).mean()),
                "oracle_best_score": float(gold[:, :n].max(1).values.mean()),
            }
        )
    return rows


@torch.no_grad()
def best_of_n(cfg: BestOfNConfig, log: Callable[[str], None] = print) -> dict:
    """Sample, score with the task scorer and the reward model, pick; write and return the curve."""
    if cfg.max_new_tokens is None:
        raise ValueError("max_new_tokens: set it, or run `rlarena best-of-n`, which takes the task's limit")
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    lm, tok, _ = load_lm(cfg.sft, cfg.task)
    rm = load_text_reward_model(cfg.rm, cfg.task).eval()
    lm.eval()
    task = get_task(cfg.task)
    records = load_split(cfg.task, "test")[: cfg.prompts]
    k = max(cfg.ns)
    prompt, prompt_mask = tok.encode_prompts([r["prompt"] for r in records])
    gold, rm_score = torch.empty(len(records), k), torch.empty(len(records), k)
    for j in range(k):  # one sample per prompt per pass: memory stays that of one evaluation
        responses = generate(
            lm,
            prompt,
            prompt_mask,
            cfg.max_new_tokens,
            tok.eos_id,
            tok.pad_id,
            generator,
            temperature=cfg.temperature,
        )
        mask = response_mask(responses, tok.eos_id)
        rm_score[:, j] = rm.score(prompt, prompt_mask, responses, mask)
        gold[:, j] = torch.tensor([task.score(r, tok.decode(x)) for r, x in zip(records, responses)])
    rows = curve(gold, rm_score, cfg.ns)
    for row in rows:
        log(
            f"  n={row['n']:3d}  KL {row['kl']:.2f}  score {row['score']:.3f} "
            f"[{row['score_ci_low']:.3f}, {row['score_ci_high']:.3f}]  rm {row['rm_score']:+.2f}  "
            f"oracle best-of-n {row['oracle_best_score']:.3f}"
        )
    result = {"config": asdict(cfg), "rows": rows, "seconds": time.perf_counter() - start}
    atomic_write_json(cfg.out, result)
    seconds = result["seconds"]
    log(f"best-of-n {cfg.task}: {len(records)} prompts x {k} samples ({seconds:.0f} s); wrote {cfg.out}")
    return result
