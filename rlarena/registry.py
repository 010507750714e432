"""Plugin registry for algorithms and environments.

Plugins register themselves with a decorator::

    @register_algorithm("ppo")
    class PPO(Algorithm): ...

    @register_env("hopper")
    def make_hopper(cfg, num_envs, seed): ...

Built-in and third-party plugins are discovered the same way, through the entry-point groups
``rlarena.algorithms`` and ``rlarena.envs``. An entry point may name a module (importing it runs its
``register_*`` decorators) or an object (registered under the entry point's name). The core never imports
the plugin packages itself: it only loads entry points, so the floors stay in order.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import threading
import types
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ConfigError

log = logging.getLogger(__name__)

ALGORITHM_GROUP = "rlarena.algorithms"
ENV_GROUP = "rlarena.envs"

T = TypeVar("T")


class UnknownPluginError(ConfigError, KeyError):
    """Raised for a name nobody registered; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, Any] = {}
        self._origins: dict[str, str] = {}
        self._discovered = False
        self._lock = threading.Lock()
        self.load_errors: dict[str, str] = {}

    def register(self, name: str, obj: T, *, origin: str | None = None, override: bool = False) -> T:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        where = origin or getattr(obj, "__module__", "?")
        if name in self._items and self._items[name] is not obj and not override:
            raise ValueError(
                f"{self.kind} {name!r} is already registered by {self._origins[name]}; "
                f"refusing to replace it with one from {where}"
            )
        self._items[name] = obj
        self._origins[name] = where
        return obj

    def decorator(self, name: str) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            return self.register(name, obj)

        return wrap

    def discover(self, force: bool = False) -> None:
        """Load every entry point of the group once. A broken plugin is reported, not fatal."""
        with self._lock:
            if self._discovered and not force:
                return
            self._discovered = True
        for ep in importlib.metadata.entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break the others
                self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("could not load %s plugin %r (%s): %s", self.kind, ep.name, ep.value, exc)
                continue
            if not isinstance(obj, types.ModuleType) and ep.name not in self._items:
                self.register(ep.name, obj, origin=f"entry point {ep.value}")

    def get(self, name: str) -> Any:
        self.discover()
        if name not in self._items:
            known = sorted(self._items)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            errors = "".join(f"\n  (plugin {k!r} failed to load: {v})" for k, v in self.load_errors.items())
            listing = ", ".join(known) or "(none)"
            message = f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: {listing}"
            raise UnknownPluginError(message + errors)
        return self._items[name]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._items


ALGORITHMS = Registry("algorithm", ALGORITHM_GROUP)
ENVS = Registry("environment", ENV_GROUP)


def register_algorithm(name: str) -> Callable[[T], T]:
    return ALGORITHMS.decorator(name)


def register_env(name: str) -> Callable[[T], T]:
    return ENVS.decorator(name)


def get_algorithm(name: str) -> Any:
    return ALGORITHMS.get(name)


def get_env(name: str) -> Any:
    return ENVS.get(name)


def list_algorithms() -> list[str]:
    return ALGORITHMS.names()


def list_envs() -> list[str]:
    return ENVS.names()
