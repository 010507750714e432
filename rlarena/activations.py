"""The activation functions a config may name (``policy.activation``, the text policy's value head)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
# The function each module's forward calls (for code that runs the layers without the modules).
ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "elu": F.elu,
}


def activation(name: str) -> type[nn.Module]:
    """The module class for ``name``; an unknown name raises ConfigError listing the known ones."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {'|'.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]
