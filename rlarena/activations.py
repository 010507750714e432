"""The activation functions a config may name (``policy.activation``, the text policy's value head)."""

from __future__ import annotations

from torch import nn

from .errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def activation(name: str) -> type[nn.Module]:
    """The module class for ``name``; an unknown name raises ConfigError listing the known ones."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {'|'.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]
