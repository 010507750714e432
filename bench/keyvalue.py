"""``key=value`` command-line arguments, typed by a dataclass's fields (``rlarena sft``, ``rlarena
reward-model``, ``rlarena reward-from-labels``).

A value is converted to its field's type: ``int``, ``float``, ``bool`` (``true``/``false``, ``1``/``0``,
``yes``/``no``), ``str``, ``list[int]`` (``64,64`` or ``[64,64]``), or one of them or None (``null``,
``none``). Unknown keys and bad values raise a one-line ``ValueError`` that the command prints (exit code 2).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _convert(key: str, text: str, hint: Any) -> Any:
    """``text`` as the field's type (see the module docstring)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() in ("null", "none") and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint) or (str,)
            return [_convert(key, v.strip(), item) for v in text.strip().strip("[]").split(",") if v.strip()]
        if hint is bool:
            if text.lower() not in TRUE + FALSE:
                raise ValueError
            return text.lower() in TRUE
        return hint(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected {_type_name(hint)}") from None


def parse_keys(hints: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """The values of ``key=value`` arguments, converted to ``hints[key]``; unknown keys and bad values are
    refused. A leading ``--`` and dashes in a key are accepted (``--max-steps-per-round=10``)."""
    values: dict[str, Any] = {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {arg!r}")
        key = key.lstrip("-").replace("-", "_")
        if key not in hints:
            raise ValueError(f"unknown key {key!r}; known keys: {', '.join(hints)}")
        values[key] = _convert(key, text, hints[key])
    return values


def parse_key_values(cls: type[T], argv: list[str]) -> T:
    """Build the dataclass ``cls`` from ``key=value`` arguments, refusing unknown keys and bad values."""
    return cls(**parse_keys(typing.get_type_hints(cls), argv))


def defaults(cls: type) -> dict[str, Any]:
    """Each field of the dataclass ``cls`` and its default."""
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(cls)
    }


def usage(command: str, doc: str, keys: dict[str, Any], synopsis: str = "[key=value ...]") -> str:
    """The ``--help`` text: synopsis, description and every key with its default."""
    lines = [f"usage: rlarena {command} {synopsis}", "", doc.strip(), "", "keys (default):"]
    lines += [f"  {name:<20} {default!r}" for name, default in keys.items()]
    return "\n".join(lines)
