"""A Hugging Face causal LM from a local folder as the text environment's language model (optional extra).

``pip install 'rlarena[hf]'``, then ``rlarena train algo=ppo env=text/<task> env.hf_path=/path/to/model``: the
model at ``hf_path`` (``save_pretrained`` output; nothing is downloaded) is the initial policy and the frozen
reference, in place of the SFT checkpoint. Its tokenizer is used when the folder has one; otherwise the
project's character tokenizer (the model's vocabulary must then be at least 98).
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlarena.errors import MissingFileError

from .tokenizer import CharTokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def _require_transformers():
    try:
        import transformers
    except ImportError as exc:  # an optional extra
        raise ImportError("env.hf_path needs transformers: pip install 'rlarena[hf]'") from exc
    return transformers


class HFCausalLM(nn.Module):
    """Adapter to the interface of :class:`~.model.TransformerLM`: ``(tokens, key_mask, cache) -> (logits,
    hidden, cache)`` with left padding (positions count real tokens only)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # transformers >= 5.2x names the KV cache argument `cache`; older releases `past_key_values`.
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        for m in model.modules():  # RL needs collection and update to see the same function
            if isinstance(m, nn.Dropout):
                m.p = 0.0

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor, cache=None, logits_to_keep: int = 0):
        """``logits_to_keep`` > 0: the logits of the last positions only (over a large vocabulary the others
        cost more than the network; SFT needs the response's)."""
        past = key_mask.shape[1] - tokens.shape[1]
        positions = (key_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]
        extra = {"logits_to_keep": logits_to_keep} if logits_to_keep else {}
        out = self.model(
            input_ids=tokens,
            attention_mask=key_mask.long(),
            position_ids=positions,
            use_cache=True,
            output_hidden_states=True,
            **{self.cache_arg: cache},
            **extra,
        )
        # The output names it as the input does (reading `past_key_values` on new releases warns).
        return out.logits, out.hidden_states[-1], getattr(out, self.cache_arg)


class HFTokenizer:
    """A Hugging Face tokenizer with the :class:`~.tokenizer.CharTokenizer` interface."""

    def __init__(self, tokenizer, chat: bool | None = None) -> None:
        self.tok = tokenizer
        if tokenizer.eos_token_id is None:  # responses end at EOS: without one no episode could end early
            raise ValueError("the Hugging Face tokenizer has no EOS token (eos_token)")
        self.eos_id = int(tokenizer.eos_token_id)
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.eos_id
        # No pad token (Llama-style tokenizers): EOS pads. Safe here, because padding is masked out everywhere
        # (the key mask for prompts, response_mask from the first EOS for responses).
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.vocab_size = len(tokenizer)
        # An instruction-tuned model (one with a chat template) answers a user turn and ends it with its EOS
        # (SmolLM2: <|im_end|>); a bare prompt after BOS is text it was never tuned on. None: the template if
        # the tokenizer has one.
        self.chat = getattr(tokenizer, "chat_template", None) is not None if chat is None else chat

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids the model reads before its response: the chat template's user turn and assistant
        header if ``chat``, else BOS + the prompt."""
        if not self.chat:
            return self.encode(prompt, bos=True)
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return self.tok.encode(text, add_special_tokens=False)  # the template wrote the special tokens

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if stop_at_eos and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tok.decode(ids, skip_special_tokens=True)

    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = [self.prompt_ids(p) for p in prompts]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, width - len(e) :] = torch.tensor(e)
            mask[i, width - len(e) :] = True
        return ids, mask


def load_hf_lm(path: str) -> tuple[HFCausalLM, HFTokenizer | CharTokenizer]:
    """The model saved at ``path`` (local files only) and its tokenizer (or the character tokenizer)."""
    transformers = _require_transformers()
    if not Path(path).is_dir():
        raise MissingFileError(
            f"env.hf_path={path!r} is not a folder with a saved Hugging Face model "
            "(SmolLM2-135M-Instruct: `make smollm2 && rlarena convert-smollm2 out=<folder>`)"
        )
    # Eager attention: second derivatives (TRPO) and explicit masks work with every model.
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, attn_implementation="eager"
    )
    tokenizer: HFTokenizer | CharTokenizer
    if any((Path(path) / name).exists() for name in TOKENIZER_FILES):
        tokenizer = HFTokenizer(transformers.AutoTokenizer.from_pretrained(path, local_files_only=True))
    else:  # no tokenizer saved: the project's characters
        tokenizer = CharTokenizer()
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"{path!r} has no tokenizer, and its vocabulary ({model.config.vocab_size}) is smaller "
                f"than the character tokenizer's ({tokenizer.vocab_size})"
            ) from None
    return HFCausalLM(model), tokenizer


def save_pretrained_atomically(
    model: Any, tokenizer: Any, out: Path, extra: Callable[[Path], None] | None = None
) -> None:
    """``save_pretrained`` of the model and its tokenizer to ``out``, all or nothing: written beside it,
    then renamed into place (an interrupted write never leaves a half-written model for env.hf_path).
    ``extra(folder)`` writes further files into the folder before it is renamed (a reward model's head)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:  # None: the folder keeps no tokenizer (the character one is used)
            tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)
        if out.exists():  # a folder cannot be renamed over a non-empty one: move the old one aside first
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            if old.exists():
                old.rename(out)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def trainable_top_layers(lm: HFCausalLM, train_layers: int) -> list[torch.nn.Parameter]:
    """Freeze all but the top ``train_layers`` decoder layers and the final norm (0: train everything);
    return the parameters that train."""
    model = lm.model
    if train_layers == 0:
        return [p for p in model.parameters() if p.requires_grad]
    base = model.base_model  # Llama: .model (layers, norm); GPT-2: .transformer (h, ln_f)
    layers = getattr(base, "layers", None) or getattr(base, "h", None)
    norm = getattr(base, "norm", None) or getattr(base, "ln_f", None)
    if layers is None:
        raise ValueError(f"train_layers={train_layers}: no decoder layer list found; use 0 (all)")
    if train_layers > len(layers):
        raise ValueError(f"train_layers={train_layers}, but the model has {len(layers)} decoder layers")
    for p in model.parameters():
        p.requires_grad_(False)
    trained = [*layers[-train_layers:], *([norm] if norm is not None else [])]
    for module in trained:
        for p in module.parameters():
            p.requires_grad_(True)
    return [p for module in trained for p in module.parameters()]
