"""A small causal transformer LM (GPT-style, pre-LayerNorm) with a KV cache, and batched generation.

Sequences are left-padded: ``key_mask`` marks real tokens and positions count real tokens only, so a padded
prompt sees exactly what an unpadded one would. Attention is written out (no fused kernel) so that second
derivatives exist (TRPO's Fisher-vector products differentiate twice).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values [B, heads, L, head_dim]


@dataclass
class ModelConfig:
    vocab_size: int = 99  # CharTokenizer: 3 specials + newline + 95 printable ASCII
    max_len: int = 192  # prompt + response tokens
    d_model: int = 128
    n_layer: int = 2
    n_head: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if min(self.vocab_size, self.max_len, self.d_model, self.n_layer, self.n_head) < 1:
            raise ValueError(f"model sizes must be positive: {self}")

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, l, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, l, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))
        if past is not None:  # keys/values of earlier tokens were computed on earlier calls
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        att = att.masked_fill(~allowed[:, None], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, l, d)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x, (k, v)


class TransformerLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied embeddings: fewer parameters, better small-data LMs
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def hidden_size(self) -> int:
        return self.cfg.d_model

    def forward(
        self,
        tokens: torch.Tensor,
        key_mask: torch.Tensor,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, KVCache]:
        """Logits ``[B, L, V]``, final hidden states ``[B, L, d]`` and the extended cache.

        ``tokens`` are the ``L`` newest tokens; ``key_mask`` ``[B, past + L]`` marks real tokens among all
        tokens seen so far (False = left padding). ``logits_to_keep`` > 0: the logits of the last positions
        only (the interface of hf.py's models, where that saves a large vocabulary's product; here the
        logits are computed as always and sliced, so the numbers are the same bits either way).
        """
        b, l = tokens.shape
        total = key_mask.shape[1]
        past = total - l
        if total > self.cfg.max_len:
            raise ValueError(f"sequence of {total} tokens exceeds the model's max_len={self.cfg.max_len}")
        positions = (key_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]
        # Query i (absolute index past + i) sees real keys up to itself, and always itself: a padding row
        # then has one key instead of none (no NaN), and its output is never used.
        idx = torch.arange(total, device=tokens.device)
        causal = idx[None, :] <= (idx[past:, None])
        allowed = (causal[None] & key_mask[:, None, :]) | (idx[None, :] == idx[past:, None])[None]
        x = self.tok_emb(tokens) + self.pos_emb(positions)
        new_cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, allowed, None if cache is None else cache[i])
            new_cache.append(kv)
        h = self.ln_f(x)
        logits = self.head(h)
        return (logits[:, -logits_to_keep:] if logits_to_keep else logits), h, new_cache


@torch.no_grad()
def generate(
    lm: nn.Module,
    prompt: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Sample responses for a left-padded batch of prompts with a KV cache.

    Returns ``[N, max_new_tokens]`` token ids: each row ends with EOS at its last real token (unless it hit
    the length limit), then ``pad_id``.
    """
    n = prompt.shape[0]
    out = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=prompt.device)
    finished = torch.zeros(n, dtype=torch.bool, device=prompt.device)
    key_mask = prompt_mask
    logits, _, cache = lm(prompt, key_mask, logits_to_keep=1)  # one pass over the prompts fills the cache
    for t in range(max_new_tokens):
        next_logits = logits[:, -1].float()
        if greedy:
            token = next_logits.argmax(-1)
        else:
            probs = torch.softmax(next_logits / temperature, dim=-1)
            if generator is not None and generator.device != probs.device:  # a CPU generator drives a GPU run
                probs = probs.cpu()
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(prompt.device)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        out[:, t] = token
        finished |= token == eos_id
        if finished.all() or t == max_new_tokens - 1:
            break
        key_mask = torch.cat([key_mask, torch.ones(n, 1, dtype=torch.bool, device=prompt.device)], dim=1)
        logits, _, cache = lm(token[:, None], key_mask, cache)
    return out


def response_mask(responses: torch.Tensor, eos_id: int) -> torch.Tensor:
    """``[N, T]`` True up to and including each row's first EOS (the whole row if there is none)."""
    is_eos = (responses == eos_id).long()
    before = is_eos.cumsum(1) - is_eos  # number of EOS strictly before t
    return before == 0
