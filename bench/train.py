"""The training loop: build env + algorithm from the registry, then collect -> update -> log -> evaluate.

``rlarena train`` is a Hydra app over ``conf/config.yaml``; ``run_training(cfg, run_dir)`` is the same loop
for programmatic use (tests, sweeps of your own).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlarena.algorithms.base import AlgoConfig, Algorithm, ConfigError
from rlarena.algorithms.policies import make_mlp_policy
from rlarena.io import atomic_write_json
from rlarena.registry import get_algorithm, get_env
from rlarena.rollout import Environment, EnvSettings, Policy

from .results import (
    CHECKPOINT,
    FAILED,
    REUSED,
    SUMMARY,
    RunDirectory,
    find_finished_run,
    read_checkpoint,
)

log = logging.getLogger("rlarena")

# Keys that change how a run is watched, not what it computes: excluded from the config hash.
NON_SEMANTIC_KEYS = ("progress", "force", "outputs_root", "torch_threads", "tensorboard", "checkpoint")


@dataclass
class Built:
    env: Environment
    policy: Policy
    algo: Algorithm
    algo_cfg: AlgoConfig


# ---- configuration ------------------------------------------------------------------------------------


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("slug"):  # env names like text/arithmetic become one path component
        OmegaConf.register_new_resolver("slug", lambda s: str(s).replace("/", "-"))


PLUGIN_CONF_GROUP = "rlarena.conf"


def with_plugin_search_path(overrides: list[str]) -> list[str]:
    """Add the config folders third-party plugins declare (entry-point group ``rlarena.conf``, value: a
    package such as ``myplugin.conf`` holding ``algo/<name>.yaml``) to Hydra's search path."""
    import importlib.metadata

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

    register_resolvers()
    with initialize_config_module(config_module="rlarena.conf", version_base=None):
        return compose(config_name="config", overrides=with_plugin_search_path(list(overrides or [])))


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

    Precedence: ``conf/algo/<name>.yaml`` < the env's ``algo_defaults`` (for the keys the algorithm has) <
    the command line.
    """
    algo_cls = get_algorithm(cfg.algo.name)
    algo_dict = OmegaConf.to_container(cfg.algo, resolve=True)
    explicit = command_line_keys() if explicit_keys is None else explicit_keys
    env_defaults = cfg.env.get("algo_defaults")
    env_defaults = OmegaConf.to_container(env_defaults, resolve=True) if env_defaults else {}
    known = set(algo_cls.Config.__dataclass_fields__)
    for key, value in env_defaults.items():
        if key in known and f"algo.{key}" not in explicit:
            algo_dict[key] = value
    return algo_config_from_dict(cfg.algo.name, algo_dict)


def algo_config_from_dict(name: str, algo_dict: dict[str, Any]) -> AlgoConfig:
    """The algorithm's Config dataclass from plain values, validated (``ConfigError`` says what is wrong)."""
    algo_cls = get_algorithm(name)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(algo_cls.Config), algo_dict)
        return OmegaConf.to_object(merged)
    except ConfigError as exc:
        raise ConfigError(f"invalid algo config for {name!r}: {exc}") from None
    except Exception as exc:  # OmegaConf's type and key errors
        raise ConfigError(f"invalid algo config for {name!r}: {exc}".strip()) from None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_env_run_defaults(cfg: DictConfig, explicit_keys: set[str] | None = None) -> DictConfig:
    """Apply the env's ``run_defaults`` (e.g. a text task's shorter ``total_steps``) to the top-level config,
    for every key not set on the command line. Idempotent; returns a new config."""
    defaults = cfg.env.get("run_defaults")
    if not defaults:
        return cfg
    explicit = command_line_keys() if explicit_keys is None else explicit_keys
    cfg = cfg.copy()
    for key, value in _flatten(OmegaConf.to_container(defaults, resolve=True)).items():
        if key not in explicit:
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def validate_run_config(cfg: DictConfig) -> None:
    if not isinstance(cfg.total_steps, int) or cfg.total_steps <= 0:
        raise ConfigError(f"total_steps must be a positive integer, got {cfg.total_steps}")
    if cfg.eval.episodes < 1:
        raise ConfigError(f"eval.episodes must be >= 1, got {cfg.eval.episodes}")
    if cfg.eval.every_steps < 0 or cfg.checkpoint.every_steps < 0:
        raise ConfigError("eval.every_steps and checkpoint.every_steps must be >= 0 (0 = only at the end)")
    get_env(cfg.env.name)  # unknown names fail here, listing what exists


def config_hash(cfg: DictConfig) -> str:
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    for key in NON_SEMANTIC_KEYS:
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(cfg: DictConfig, run_dir: str | None = None, explicit_keys: set[str] | None = None) -> Built:
    validate_run_config(cfg)
    algo_cfg = build_algo_config(cfg, explicit_keys)
    return build_from(cfg, algo_cfg, run_dir)


def build_from(cfg: DictConfig, algo_cfg: AlgoConfig, run_dir: str | None = None) -> Built:
    seed_everything(cfg.seed)
    settings = EnvSettings(
        num_envs=algo_cfg.num_envs,
        seed=cfg.seed,
        gamma=algo_cfg.gamma,
        normalize_observations=algo_cfg.normalize_observations,
        normalize_rewards=algo_cfg.normalize_rewards,
        device=cfg.device,
        run_dir=run_dir,
    )
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    env = get_env(cfg.env.name)(env_cfg, settings)
    policy = env.make_policy(algo_cfg.policy) or make_mlp_policy(
        env.observation_space, env.action_space, algo_cfg.policy
    )
    policy.to(cfg.device)
    algo = get_algorithm(cfg.algo.name)(algo_cfg, policy, seed=cfg.seed)
    return Built(env, policy, algo, algo_cfg)


# ---- the loop -----------------------------------------------------------------------------------------


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def _checkpoint_state(built: Built, step: int, iteration: int) -> dict[str, Any]:
    return {
        "step": step,
        "iteration": iteration,
        "algo_config": OmegaConf.to_container(OmegaConf.structured(built.algo_cfg)),
        "policy": built.policy.state_dict(),
        "algorithm": built.algo.state_dict(),
        "env": built.env.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _numpy_rng_state(),
    }


def _numpy_rng_state() -> dict[str, Any]:
    # plain types: checkpoints load with weights_only=True
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _print_eval_table(title: str, returns: list[float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("episodes", "mean", "std", "min", "max"):
        table.add_column(col, justify="right")
    table.add_row(
        str(len(returns)),
        f"{np.mean(returns):.1f}",
        f"{np.std(returns):.1f}",
        f"{np.min(returns):.1f}",
        f"{np.max(returns):.1f}",
    )
    Console().print(table)


def run_training(
    cfg: DictConfig,
    run_dir: str | os.PathLike,
    explicit_keys: set[str] | None = None,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one run into ``run_dir``; returns the summary written to ``summary.json``.

    ``resume``: a checkpoint of this run (see ``resume_training``); training goes on from its step, with the
    config as saved (env run defaults already applied) and the hyper-parameters the checkpoint recorded.
    """
    torch.set_num_threads(int(cfg.torch_threads))
    if resume is None:
        cfg = apply_env_run_defaults(cfg, explicit_keys)
    validate_run_config(cfg)  # refuse bad input before anything is created or trained
    if resume is None:
        algo_cfg = build_algo_config(cfg, explicit_keys)
    else:
        algo_cfg = algo_config_from_dict(cfg.algo.name, resume["algo_config"])
    start_step = 0 if resume is None else int(resume["step"])
    run = RunDirectory(
        run_dir, tensorboard=bool(cfg.tensorboard), resume_step=None if resume is None else start_step
    )
    built = build_from(cfg, algo_cfg, str(run.path))
    env, policy, algo = built.env, built.policy, built.algo
    try:
        if resume is not None:
            _restore(built, resume)
        run.write_config(OmegaConf.to_yaml(cfg, resolve=True))
        steps_per_iter = algo.rollout_length * env.num_envs
        num_iters = math.ceil(cfg.total_steps / steps_per_iter)
        eval_every = cfg.eval.every_steps
        ckpt_every = cfg.checkpoint.every_steps
        recent: list[float] = []
        step = start_step
        first_iter = 0 if resume is None else int(resume["iteration"])
        start = time.perf_counter()
        eval_time = 0.0

        from tqdm import tqdm

        bar = tqdm(
            total=num_iters * steps_per_iter,
            initial=step,
            unit="step",
            unit_scale=True,
            disable=not cfg.progress,
            desc=f"{cfg.algo.name} {cfg.env.name} s{cfg.seed}",
            mininterval=1.0,
        )
        for iteration in range(first_iter, num_iters):
            algo.set_progress(step / (num_iters * steps_per_iter))
            batch = env.collect(policy, algo.rollout_length)
            metrics = algo.update(batch)
            step += steps_per_iter
            recent = (recent + list(batch.info.get("episode_returns", [])))[-20:]
            elapsed = time.perf_counter() - start - eval_time
            metrics.update(
                episode_return_mean=_mean(recent),
                steps_per_sec=(step - start_step) / max(elapsed, 1e-9),
                time_s=time.perf_counter() - start,
            )
            for key, value in batch.info.items():  # scalar statistics an environment chooses to report
                if key.startswith("stat/"):
                    metrics[key[5:]] = float(value)
            run.log("train", step, metrics)
            bar.update(steps_per_iter)
            bar.set_postfix(
                ret=f"{metrics['episode_return_mean']:.1f}", sps=f"{metrics['steps_per_sec']:.0f}"
            )

            last = iteration == num_iters - 1
            if eval_every and not last and (step // eval_every) > ((step - steps_per_iter) // eval_every):
                t0 = time.perf_counter()
                result = env.evaluate(policy, cfg.eval.episodes, deterministic=cfg.eval.deterministic)
                eval_time += time.perf_counter() - t0
                _log_eval(run, step, result)
            if ckpt_every and not last and (step // ckpt_every) > ((step - steps_per_iter) // ckpt_every):
                run.save_checkpoint(_checkpoint_state(built, step, iteration + 1))
        bar.close()
        wall = time.perf_counter() - start
        train_time = wall - eval_time

        result = env.evaluate(policy, cfg.eval.episodes, deterministic=cfg.eval.deterministic)
        _log_eval(run, step, result)
        run.save_checkpoint(_checkpoint_state(built, step, num_iters))
        returns = result["returns"]
        summary = {
            "algo": cfg.algo.name,
            "env": cfg.env.name,
            "env_id": cfg.env.get("id", cfg.env.name),
            "seed": int(cfg.seed),
            "total_steps": int(cfg.total_steps),
            "steps_done": int(step),
            "eval_return_mean": float(np.mean(returns)),
            "eval_return_std": float(np.std(returns)),
            "eval_returns": [float(r) for r in returns],
            "steps_per_sec": (step - start_step) / max(train_time, 1e-9),
            "wall_time_s": time.perf_counter() - start,
            "config_hash": config_hash(cfg),
            "random_score": cfg.env.get("random_score"),
            "reference_score": cfg.env.get("reference_score"),
            "status": "finished",
            "run_dir": str(run.path),
        }
        if resume is not None:
            summary["resumed_from_step"] = start_step
        for key, value in result.items():  # extra evaluation figures (text: task score, KL, length)
            if key not in ("returns", "lengths") and isinstance(value, (int, float)):
                summary[f"eval_{key}"] = float(value)
        run.write_summary(summary)
        (run.path / FAILED).unlink(missing_ok=True)  # a crash this run has now recovered from
        if cfg.progress:
            _print_eval_table(
                f"{cfg.algo.name} on {summary['env_id']} (seed {cfg.seed}): final evaluation", returns
            )
        return summary
    finally:
        env.close()
        run.close()


def _restore(built: Built, state: dict[str, Any]) -> None:
    """Load a checkpoint into freshly built objects. The simulators cannot be restored mid-episode: the
    environments start new episodes (with the normalizer statistics of the checkpoint)."""
    built.policy.load_state_dict(state["policy"])
    built.algo.load_state_dict(state["algorithm"])
    built.env.load_state_dict(state["env"])
    torch.set_rng_state(state["torch_rng"])
    rng = state["numpy_rng"]
    keys = np.asarray(rng["keys"], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, rng["pos"], rng["has_gauss"], rng["cached_gaussian"]))


def resume_training(run_dir: str | os.PathLike, total_steps: int | None = None) -> dict[str, Any]:
    """Continue an interrupted run from its ``checkpoint.pt``, in its own directory and with its saved config;
    ``total_steps`` (optional) extends it, finished or not. Returns the summary."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"rlarena resume: no run directory {str(run_dir)!r}")
    missing = [name for name in ("config.yaml", CHECKPOINT) if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"rlarena resume: {str(run_dir)!r} has no {' and no '.join(missing)}; a run writes its "
            "checkpoint every checkpoint.every_steps steps (0 = only at the end): nothing to resume from"
        )
    cfg = OmegaConf.load(run_dir / "config.yaml")
    state = read_checkpoint(run_dir)
    if "algo_config" not in state:
        raise ConfigError(
            f"rlarena resume: {run_dir / CHECKPOINT} was written by an older rlarena without the run's "
            "hyper-parameters; it cannot be resumed"
        )
    if total_steps is not None:
        if total_steps <= 0:
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps}")
        cfg.total_steps = int(total_steps)
    if int(state["step"]) >= cfg.total_steps:
        summary_file = run_dir / SUMMARY
        hint = "pass --total-steps to train it further"
        if summary_file.is_file():
            log.info("%s already finished at step %d (%s)", run_dir, int(state["step"]), hint)
            return json.loads(summary_file.read_text(encoding="utf-8"))
        raise ConfigError(f"rlarena resume: the checkpoint is at step {state['step']} >= total_steps; {hint}")
    log.info("resuming %s from step %d of %d", run_dir, int(state["step"]), cfg.total_steps)
    return run_training(cfg, run_dir, resume=state)


def _log_eval(run: RunDirectory, step: int, result: dict[str, Any]) -> None:
    returns = result["returns"]
    values = {
        "eval_return_mean": float(np.mean(returns)),
        "eval_return_std": float(np.std(returns)),
        "eval_returns": [float(r) for r in returns],
    }
    values.update(
        {k: v for k, v in result.items() if k not in ("returns", "lengths") and isinstance(v, (int, float))}
    )
    run.log("eval", step, values)
    for i, sample in enumerate(result.get("samples", [])[:4]):  # text environments show what they generate
        run.log_text(f"samples/{i}", step, str(sample))


# ---- the Hydra entry point ----------------------------------------------------------------------------


def hydra_task(cfg: DictConfig) -> dict[str, Any] | None:
    """One Hydra job: skip if already finished, train, and in a sweep record a failure instead of raising."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    cfg = apply_env_run_defaults(cfg)  # before hashing, so a re-run finds the same hash
    try:
        if not cfg.force:
            done = find_finished_run(Path(hydra_cfg.runtime.cwd) / cfg.outputs_root, config_hash(cfg))
            if done is not None and done.resolve() != run_dir.resolve():
                log.info("skipping: an identical run already finished in %s (force=true to re-run)", done)
                atomic_write_json(run_dir / REUSED, {"existing": str(done), "config_hash": config_hash(cfg)})
                return {"status": "skipped", "existing": str(done)}
        return run_training(cfg, run_dir)
    except (ConfigError, KeyError) as exc:
        if multirun:
            RunDirectory(run_dir, tensorboard=False).write_failure({"error": str(exc), "kind": "config"})
            log.error("job %s: invalid config: %s", hydra_cfg.job.num, exc)
            return {"status": "failed", "error": str(exc)}
        raise
    except Exception as exc:
        if not multirun:
            raise
        RunDirectory(run_dir, tensorboard=False).write_failure(
            {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        )
        log.error("job %s failed: %s: %s", hydra_cfg.job.num, type(exc).__name__, exc)
        return {"status": "failed", "error": str(exc)}
