"""Composing a run's config: Hydra's config tree, the algorithms' schemas, the env family's settings.

Every algorithm's hyper-parameters and their defaults live in one place, its ``Config`` dataclass.
:func:`register_algorithm_configs` puts each registered algorithm's dataclass into Hydra's ConfigStore as
the option ``algo=<name>``, so ``rlarena train algo=ppo`` composes the dataclass's defaults, an override
is type-checked against it, and an unknown key is refused. YAML files keep only what differs per
experiment (``conf/experiment``) or per environment family (an env's ``algo_defaults``). A plugin may still
ship ``algo/<name>.yaml`` presets in its own config package (entry-point group ``rlarena.conf``).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlarena.algorithms.base import AlgoConfig
from rlarena.errors import ConfigError
from rlarena.registry import ALGORITHMS, get_algorithm

from .results import flatten

PLUGIN_CONF_GROUP = "rlarena.conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("slug"):  # env names like text/arithmetic become one path component
        OmegaConf.register_new_resolver("slug", lambda s: str(s).replace("/", "-"))


def register_algorithm_configs() -> None:
    """Every registered algorithm's Config dataclass as the Hydra option ``algo=<name>``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name in ALGORITHMS.names():
        cls = get_algorithm(name)
        config = getattr(cls, "Config", None)
        if config is None:
            continue
        node = OmegaConf.structured(config)
        node.name = name  # the option's name is the registered one, whatever the dataclass says
        store.store(group="algo", name=name, node=node, provider="rlarena")


def prepare_hydra() -> None:
    """What must be in place before Hydra composes a config."""
    register_resolvers()
    register_algorithm_configs()


def with_plugin_search_path(overrides: list[str]) -> list[str]:
    """Add the config folders third-party plugins declare (entry-point group ``rlarena.conf``, value: a
    package such as ``myplugin.conf`` holding ``algo/<name>.yaml`` presets) to Hydra's search path."""
    paths = [f"pkg://{ep.value}" for ep in importlib.metadata.entry_points(group=PLUGIN_CONF_GROUP)]
    if not paths:
        return overrides
    rest = []
    for o in overrides:  # merge with a search path given on the command line
        if o.startswith("hydra.searchpath="):
            paths = [p.strip() for p in o.split("=", 1)[1].strip("[]").split(",") if p.strip()] + paths
        else:
            rest.append(o)
    return [*rest, f"hydra.searchpath=[{','.join(paths)}]"]


def load_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with overrides, as ``rlarena train`` would (for tests and scripts)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    prepare_hydra()
    try:
        with initialize_config_module(config_module="rlarena.conf", version_base=None):
            return compose(config_name="config", overrides=with_plugin_search_path(list(overrides or [])))
    except (HydraException, OmegaConfBaseException) as exc:  # bad option, key, type or override syntax
        raise ConfigError(composition_error_message(exc)) from None


def composition_error_message(exc: Exception) -> str:
    """Hydra's composition error in a few lines: its cause's message, without the search-path dump."""
    message = str(exc).split("\nConfig search path:")[0].strip()
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in message:
        message += f": {str(cause).strip().splitlines()[0]}"
    return message


def command_line_keys() -> set[str]:
    """Dotted keys set on the command line (``algo.num_envs=8`` -> ``algo.num_envs``), if under Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task
    except (ImportError, ValueError):
        return set()
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides}


def build_algo_config(cfg: DictConfig, explicit_keys: set[str] | None = None) -> AlgoConfig:
    """Validate ``cfg.algo`` against the algorithm's Config dataclass (types, unknown keys, ranges).

    Precedence: the dataclass's defaults < the env family's ``algo_defaults`` (for the keys the algorithm
    has) < the command line.
    """
    algo_cls = get_algorithm(cfg.algo.name)
    algo_dict = OmegaConf.to_container(cfg.algo, resolve=True)
    explicit = command_line_keys() if explicit_keys is None else explicit_keys
    env_defaults = cfg.env.get("algo_defaults")
    env_defaults = OmegaConf.to_container(env_defaults, resolve=True) if env_defaults else {}
    algo_dict = algo_cls.Config.with_env_defaults(algo_dict, env_defaults, explicit)
    return algo_config_from_dict(cfg.algo.name, algo_dict)


def algo_config_from_dict(name: str, algo_dict: dict[str, Any]) -> AlgoConfig:
    """The algorithm's Config dataclass from plain values, validated (``ConfigError`` says what is wrong)."""
    algo_cls = get_algorithm(name)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(algo_cls.Config), algo_dict)
        return OmegaConf.to_object(merged)
    except ConfigError as exc:
        raise ConfigError(f"invalid algo config for {name!r}: {exc}") from None
    except Exception as exc:  # OmegaConf's type and key errors: say which key, in one line
        key, msg = getattr(exc, "full_key", None), getattr(exc, "msg", None) or str(exc)
        where = f"algo.{key}: " if key else ""
        raise ConfigError(f"invalid algo config for {name!r}: {where}{msg.strip().splitlines()[0]}") from None


def apply_env_run_defaults(cfg: DictConfig, explicit_keys: set[str] | None = None) -> DictConfig:
    """Apply the env's ``run_defaults`` (e.g. a text task's shorter ``total_steps``) to the top-level config,
    for every key not set on the command line. Idempotent; returns a new config."""
    defaults = cfg.env.get("run_defaults")
    if not defaults:
        return cfg
    explicit = command_line_keys() if explicit_keys is None else explicit_keys
    cfg = cfg.copy()
    for key, value in flatten(OmegaConf.to_container(defaults, resolve=True)).items():
        if key not in explicit:
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


# Hydra's joblib and submitit workers compose each job's config again in their own process, from the module
# that holds the task function: importing this module (bench/train.py does) must register the schemas.
prepare_hydra()
