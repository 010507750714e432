"""A character-level tokenizer: tiny, exact, and trained by nobody (the vocabulary is printable ASCII)."""

from __future__ import annotations

import string

import torch

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
# "\n" separates dialogue turns; everything else a task writes is printable ASCII.
CHARS = "\n" + "".join(c for c in string.printable if 32 <= ord(c) < 127)


class CharTokenizer:
    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, chars: str = CHARS) -> None:
        self.chars = chars
        self.stoi = {c: i + len(SPECIALS) for i, c in enumerate(chars)}
        self.itos = {i: c for c, i in self.stoi.items()}
        self.unk_id = self.stoi["?"]  # characters outside the vocabulary become "?"

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.stoi.get(c, self.unk_id) for c in text]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids the model reads before its response: BOS + the prompt."""
        return self.encode(prompt, bos=True)

    def decode(self, ids: list[int] | torch.Tensor, stop_at_eos: bool = True) -> str:
        """Text of ``ids``, up to (excluding) the first EOS; special tokens are dropped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == EOS and stop_at_eos:
                break
            if i in self.itos:
                out.append(self.itos[i])
        return "".join(out)

    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``[N, P]`` token ids (BOS first) and their validity mask.

        Left padding puts every prompt's last token in the same column, so a batch generates in lock step.
        """
        encoded = [self.prompt_ids(p) for p in prompts]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), PAD, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, width - len(e) :] = torch.tensor(e)
            mask[i, width - len(e) :] = True
        return ids, mask
