"""``rlarena sft`` and ``rlarena reward-model``: Steps 1 and 2 of the text pipeline (3 is ``rlarena train``).

Arguments are ``key=value`` pairs naming fields of :class:`rlarena.envs.text.sft.SFTConfig` and
:class:`rlarena.envs.text.reward_model.RMConfig` (``rlarena sft --help`` lists them with their defaults)::

    rlarena sft task=arithmetic                    # -> artifacts/text/arithmetic/sft.pt
    rlarena reward-model task=arithmetic           # -> artifacts/text/arithmetic/rm.pt
    rlarena train algo=ppo env=text/arithmetic env.reward=rm
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def _convert(key: str, text: str, hint: Any) -> Any:
    """``text`` as the field's type (``int``, ``float``, ``bool``, ``str``, or one of them or None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() in ("null", "none") and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return hint(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected {getattr(hint, '__name__', hint)}") from None


def parse_key_values(cls: type[T], argv: list[str]) -> T:
    """Build the dataclass ``cls`` from ``key=value`` arguments, refusing unknown keys and bad values."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {arg!r}")
        if key not in hints:
            raise ValueError(f"unknown key {key!r}; known keys: {', '.join(hints)}")
        values[key] = _convert(key, text, hints[key])
    return cls(**values)


def _usage(command: str, cls: type, doc: str) -> str:
    lines = [f"usage: rlarena {command} [key=value ...]", "", doc.strip(), "", "keys (default):"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {f.name:<20} {default!r}")
    return "\n".join(lines)


def _run(
    command: str, cls: type, doc: str, argv: list[str], train, expected: tuple[type[Exception], ...]
) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(_usage(command, cls, doc))
        return 0
    try:
        cfg = parse_key_values(cls, argv)
    except (ValueError, KeyError) as exc:
        print(f"rlarena {command}: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # small models: one thread is fastest, and parallel jobs don't fight over cores
    try:
        train(cfg)
    except expected as exc:  # a missing earlier pipeline step names the command to run
        print(f"rlarena {command}: {exc}", file=sys.stderr)
        return 1
    return 0


def sft_main(argv: list[str]) -> int:
    """Step 1: supervised fine-tuning on the task's demonstrations."""
    from rlarena.envs.text.sft import SFTConfig, train_sft

    doc = (
        "Step 1: train the SFT language model on the task's demonstrations and write its checkpoint\n"
        "(out=null: artifacts/text/<task>/sft.pt; steps=null: the task's budget, SFT_STEPS in sft.py)."
    )
    return _run("sft", SFTConfig, doc, argv, train_sft, (FileNotFoundError,))


def reward_model_main(argv: list[str]) -> int:
    """Step 2: sample SFT responses, label pairs with the task scorer, train the reward model."""
    from rlarena.envs.text.reward_model import NoComparisonsError, RMConfig, train_reward_model

    doc = (
        "Step 2: sample responses from the SFT model, label pairs with the task scorer (synthetic labeler),\n"
        "train a Bradley-Terry reward model and report its held-out pairwise accuracy\n"
        "(sft=null / out=null: artifacts/text/<task>/sft.pt / rm.pt)."
    )
    return _run(
        "reward-model", RMConfig, doc, argv, train_reward_model, (FileNotFoundError, NoComparisonsError)
    )
