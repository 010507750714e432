"""The training loop: build env + algorithm from the registry, then collect -> update -> log -> evaluate.

``rlarena train`` is a Hydra app over ``conf/config.yaml``; ``run_training(cfg, run_dir)`` is the same loop
for programmatic use (tests, sweeps of your own).
"""

from __future__ import annotations

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

from rlarena import ops
from rlarena.algorithms.base import AlgoConfig, Algorithm
from rlarena.algorithms.policies import make_mlp_policy
from rlarena.errors import ConfigError, DiskFullError, RunDirectoryInUse, RunFileError, UserError
from rlarena.errors import report as report_user_error
from rlarena.io import atomic_write_json, atomic_write_text, exclusive_directory, remove_stale_temp_files
from rlarena.registry import get_algorithm, get_env
from rlarena.rollout import Environment, EnvSettings, Policy

from .configs import (  # noqa: F401  (load_config and build_algo_config: the API tests and scripts use)
    algo_config_from_dict,
    apply_env_run_defaults,
    build_algo_config,
    command_line_keys,
    load_config,
)
from .progress import Progress
from .results import (
    CHECKPOINT,
    CONFIG,
    FAILED,
    METRICS,
    REUSED,
    RUN_FILES,
    SUMMARY,
    RunDirectory,
    checkpoint_owner,
    clear_run_files,
    config_hash,
    disk_full_hint,
    find_finished_run,
    finished_code_path,
    finished_run_hash,
    metrics_kept_at_resume,
    read_checkpoint,
    read_finished_summary,
    read_json_file,
    read_metrics,
    read_run_config,
    require_saved_run,
    write_failure,
)

log = logging.getLogger("rlarena")

MAX_TOTAL_STEPS = 10**10  # a run's budget: beyond it a typo trains until killed
MAX_VIDEO_SIZE = 4096  # pixels per side of a rendered clip
LOG_WINDOW = 20  # training episodes behind the logged episode_return_mean
TRAIN_WINDOW = 100  # training episodes behind the summary's train_return_last100 (checkpointed too)


@dataclass
class Built:
    env: Environment
    policy: Policy
    algo: Algorithm
    algo_cfg: AlgoConfig


# ---- validation ---------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None, note: str = "") -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        wanted += f" and <= {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be {wanted}{note}, got {value!r}")


def _check_device(device: Any) -> None:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device={device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    backend = getattr(torch, dev.type, None)
    if dev.type != "cpu" and not (backend is not None and backend.is_available()):
        raise ConfigError(f"device={device!r}: this torch has no {dev.type} device available; use device=cpu")


def validate_run_config(cfg: DictConfig, max_threads: int | None = None) -> None:
    """Every run-level setting (the algorithm's are checked by its Config): types, ranges, the device, the
    environment's own settings. Called before a run directory is touched."""
    _check_int("seed", cfg.seed, 0, 2**32 - 1)
    _check_int("total_steps", cfg.total_steps, 1, MAX_TOTAL_STEPS, note=" (a stated bound: years of CPU)")
    _check_int("eval.episodes", cfg.eval.episodes, 1)
    _check_int("eval.every_steps", cfg.eval.every_steps, 0, note=" (0 = only at the end)")
    _check_int("checkpoint.every_steps", cfg.checkpoint.every_steps, 0, note=" (0 = only at the end)")
    # A new run may not ask for more threads than this machine has; a saved config made elsewhere may.
    note = "" if max_threads is None else f" (this machine has {max_threads} CPUs)"
    _check_int("torch_threads", cfg.torch_threads, 1, max_threads, note=note)
    if OmegaConf.select(cfg, "metrics.train_rows", default=None) is not None:  # runs made before it lack it
        _check_int("metrics.train_rows", cfg.metrics.train_rows, 1)
    video = cfg.get("video")
    if video is not None:
        for key in ("video.width", "video.height"):
            _check_int(key, OmegaConf.select(cfg, key), 1, MAX_VIDEO_SIZE)
    for key in (
        "progress",
        "tensorboard",
        "force",
        "eval.deterministic",
        *(["video.at_eval"] if video else []),
    ):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
    _check_device(cfg.device)
    _check_scores(cfg.env.get("random_score"), cfg.env.get("reference_score"))
    env_factory = get_env(cfg.env.name)  # unknown names fail here, listing what exists
    validate_env = getattr(env_factory, "validate", None)
    if validate_env is not None:
        validate_env(OmegaConf.to_container(cfg.env, resolve=True))


def _check_scores(random_score: Any, reference_score: Any) -> None:
    """The normalization pair of an env config: null, or finite numbers that differ."""
    for key, value in (("random_score", random_score), ("reference_score", reference_score)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (number and math.isfinite(value)):
            raise ConfigError(f"env.{key} must be a finite number or null, got {value!r}")
    if random_score is not None and random_score == reference_score:
        raise ConfigError(
            f"env.random_score and env.reference_score are both {random_score}: a normalized score "
            "divides by their difference"
        )


def read_saved_config(run_dir: str | os.PathLike) -> DictConfig:
    """A run directory's ``config.yaml``, checked as a config typed on the command line is
    (``validate_run_config``): eval, video and resume read it back, and an edited or damaged setting in it
    is one :class:`RunFileError` naming the file, not a traceback from deep inside."""
    from omegaconf.errors import OmegaConfBaseException

    path = Path(run_dir) / CONFIG
    cfg = read_run_config(run_dir)
    try:
        validate_run_config(cfg)
    except ConfigError as exc:
        raise RunFileError(f"{path}: {exc}") from None
    except OmegaConfBaseException as exc:  # a section or key the file lacks
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFileError(f"{path}: not a complete run config: {reason}") from None
    return cfg


def validate(cfg: DictConfig, explicit_keys: set[str] | None = None) -> tuple[DictConfig, AlgoConfig]:
    """The whole check of a new run's config, as training does it; returns the config with the env's run
    defaults applied and the algorithm's validated Config."""
    explicit = command_line_keys() if explicit_keys is None else explicit_keys
    if "env.name" in explicit:  # the leaderboard pools runs by this name: it is the env config's own
        raise ConfigError(
            f"env.name is the name of the env config chosen with env=<name>; set env={cfg.env.name} "
            "instead (or env=gym env.id=<id> for a gymnasium task rlarena has no config for)"
        )
    cfg = apply_env_run_defaults(cfg, explicit_keys)
    validate_run_config(cfg, max_threads=os.cpu_count() or 1)
    algo_cfg = build_algo_config(cfg, explicit_keys)
    num_steps = getattr(algo_cfg, "num_steps", None)
    if isinstance(num_steps, int) and cfg.total_steps < algo_cfg.num_envs * num_steps:
        raise ConfigError(
            f"total_steps={cfg.total_steps} is less than one rollout (algo.num_envs x algo.num_steps = "
            f"{algo_cfg.num_envs} x {num_steps} = {algo_cfg.num_envs * num_steps} steps): raise "
            "total_steps or shorten the rollout"
        )
    # What the algorithm asks of the environment (e.g. responses per prompt) must fit it, checked now too.
    check_settings = getattr(get_env(cfg.env.name), "validate_settings", None)
    if check_settings is not None:
        check_settings(env_settings(cfg, algo_cfg))
    return cfg, algo_cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(cfg: DictConfig, run_dir: str | None = None, explicit_keys: set[str] | None = None) -> Built:
    validate_run_config(cfg)
    algo_cfg = build_algo_config(cfg, explicit_keys)
    return build_from(cfg, algo_cfg, run_dir)


def env_settings(cfg: DictConfig, algo_cfg: AlgoConfig, run_dir: str | None = None) -> EnvSettings:
    """What the training loop tells the environment factory: the shared settings and the algorithm's own."""
    return EnvSettings(
        num_envs=algo_cfg.num_envs,
        seed=cfg.seed,
        gamma=algo_cfg.gamma,
        normalize_observations=algo_cfg.normalize_observations,
        normalize_rewards=algo_cfg.normalize_rewards,
        device=cfg.device,
        run_dir=run_dir,
        **get_algorithm(cfg.algo.name).env_settings(algo_cfg),
    )


def build_from(cfg: DictConfig, algo_cfg: AlgoConfig, run_dir: str | None = None) -> Built:
    seed_everything(cfg.seed)
    algo_cls = get_algorithm(cfg.algo.name)
    settings = env_settings(cfg, algo_cfg, run_dir)
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    env = get_env(cfg.env.name)(env_cfg, settings)
    policy = (
        env.make_policy(algo_cfg.policy)
        or algo_cls.make_policy(algo_cfg, env.observation_space, env.action_space, int(cfg.seed))
        or make_mlp_policy(env.observation_space, env.action_space, algo_cfg.policy)
    )
    policy.to(cfg.device)
    algo = algo_cls(algo_cfg, policy, seed=cfg.seed)
    algo.connect(env)
    return Built(env, policy, algo, algo_cfg)


# ---- the loop -----------------------------------------------------------------------------------------


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def _checkpoint_state(
    built: Built,
    step: int,
    iteration: int,
    recent: list[float],
    cfg: DictConfig | None = None,
    pending_rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What ``checkpoint.pt`` holds; with the run's ``cfg``, which run it belongs to (``run``: a resume or an
    evaluation refuses another run's checkpoint)."""
    return {
        **({"run": checkpoint_owner(cfg)} if cfg is not None else {}),
        "step": step,
        "iteration": iteration,
        "recent_returns": list(recent),  # the training-episode window: a resume logs and reports the same
        "pending_train_rows": list(pending_rows or []),  # updates of a train row not yet written
        "algo_config": OmegaConf.to_container(OmegaConf.structured(built.algo_cfg)),
        "policy": built.policy.state_dict(),
        "algorithm": built.algo.state_dict(),
        "env": built.env.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _numpy_rng_state(),
    }


# Figures of the training loop itself (and the learning rate of the moment): a train row gives the latest.
LATEST_IN_ROW = ("episode_return_mean", "steps_per_sec", "time_s", "learning_rate")


class TrainRows:
    """The training rows of ``metrics.jsonl`` at a bounded rate: one row per ``every`` updates, the mean of
    each metric over them (the loop's own figures as of the last), with ``updates``: how many it averages.
    The updates not yet written (``pending``) go into every checkpoint, so a resumed run writes the same
    rows. TensorBoard gets every update."""

    def __init__(self, run: RunDirectory, every: int, pending: list[dict[str, Any]] | None = None) -> None:
        self.run, self.every = run, max(int(every), 1)
        self.pending: list[dict[str, Any]] = list(pending or [])

    def add(self, step: int, metrics: dict[str, Any], write: bool) -> None:
        self.run.log("train", step, metrics, to_file=False)
        self.pending.append({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        if write:
            self.run.log("train", step, self._row(), to_tensorboard=False)
            self.pending = []

    def _row(self) -> dict[str, Any]:
        if len(self.pending) == 1:
            return self.pending[0]
        keys = dict.fromkeys(k for update in self.pending for k in update)
        row: dict[str, Any] = {}
        for key in keys:
            values = [update[key] for update in self.pending if key in update]
            row[key] = values[-1] if key in LATEST_IN_ROW else float(np.mean(values))
        row["updates"] = len(self.pending)
        return row


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
    job_files: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train one run into ``run_dir``; returns the summary written to ``summary.json``.

    The run holds the directory's lock throughout (a second writer fails at once). A fresh run first clears
    what an earlier attempt of the same config left there, and refuses to overwrite a finished run or
    another config's files unless ``force=true``. ``resume``: a checkpoint of this run (see
    ``resume_training``); training goes on from its step, with the config as saved (env run defaults already
    applied) and the hyper-parameters the checkpoint recorded. A run that raises writes ``failed.json``.
    ``job_files``: relative path -> text (a Hydra job's ``.hydra/`` files), written only once the directory
    is this run's, so a refused run never rewrites what describes another.
    """
    if resume is None:
        cfg, algo_cfg = validate(cfg, explicit_keys)  # refuse bad input before anything is created
    else:
        validate_run_config(cfg)
        algo_cfg = algo_config_from_dict(cfg.algo.name, resume["algo_config"])
    torch.set_num_threads(int(cfg.torch_threads))
    with exclusive_directory(run_dir) as path:
        remove_stale_temp_files(path)
        if resume is None:
            prepare_fresh_run_directory(path, config_hash(cfg), force=bool(cfg.force))
        for name, text in (job_files or {}).items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path / name, text)
        built = build_from(cfg, algo_cfg, str(path))
        try:
            if resume is not None:
                _restore(built, resume, path / CHECKPOINT)
            # Only now, with the checkpoint restored, may the interrupted run's later metrics go.
            start_step = 0 if resume is None else int(resume["step"])
            resume_step = None if resume is None else start_step
            try:
                run = RunDirectory(path, tensorboard=bool(cfg.tensorboard), resume_step=resume_step)
            except DiskFullError as exc:
                hint = disk_full_hint(path, resume_step)
                raise _record_disk_full(path, DiskFullError(exc.path, hint)) from None
            try:
                run.write_config(OmegaConf.to_yaml(cfg, resolve=True))
                first_iter = 0 if resume is None else int(resume["iteration"])
                recent = [] if resume is None else [float(r) for r in resume.get("recent_returns", [])]
                pending = None if resume is None else resume.get("pending_train_rows")
                return _train(cfg, built, run, start_step, first_iter, recent, pending)
            except DiskFullError as exc:  # the message says which checkpoint is on disk to resume from
                raise _record_disk_full(path, DiskFullError(exc.path, run.disk_full_hint())) from None
            except Exception as exc:
                run.write_failure(
                    {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                )
                raise
            finally:
                run.close()
        finally:
            built.env.close()


def _record_disk_full(run_dir: Path, exc: DiskFullError) -> DiskFullError:
    write_failure(run_dir, {"error": str(exc), "kind": "disk_full"})  # best effort: the disk is full
    return exc


def prepare_fresh_run_directory(path: Path, cfg_hash: str, force: bool) -> None:
    """Make ``path`` ready for a fresh run of the config hashed ``cfg_hash`` (the caller holds its lock).

    An earlier attempt of the same config that did not finish (failed or killed) is cleared, so nothing is
    logged twice; a finished run, or another config's files, are kept and refused unless ``force``.
    """
    if not any((path / name).exists() for name in RUN_FILES):
        return
    if force:
        log.info("force=true: replacing the run in %s", path)
        clear_run_files(path)
        return
    how = "choose another directory (hydra.run.dir=...) or pass force=true to replace it"
    if (path / SUMMARY).exists():
        other = "" if finished_run_hash(path) == cfg_hash else " of another config"
        raise ConfigError(f"{path} already holds a finished run{other}; {how}")
    if (path / CONFIG).exists() and config_hash(read_run_config(path)) != cfg_hash:
        resume = f"`rlarena resume {path}` continues it, or "
        raise ConfigError(f"{path} holds an unfinished run of another config; {resume}{how}")
    log.info("%s: clearing the files of an unfinished earlier attempt of this config", path)
    clear_run_files(path)


def _train(
    cfg: DictConfig,
    built: Built,
    run: RunDirectory,
    start_step: int,
    first_iter: int,
    recent: list[float],
    pending: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    env, policy, algo = built.env, built.policy, built.algo
    steps_per_iter = algo.rollout_length * env.num_envs
    num_iters = math.ceil(cfg.total_steps / steps_per_iter)
    eval_every = cfg.eval.every_steps
    ckpt_every = cfg.checkpoint.every_steps
    step = start_step
    start = time.perf_counter()
    eval_time = 0.0
    if num_iters * steps_per_iter != cfg.total_steps and start_step == 0:
        log.info(
            "total_steps=%d is not a whole number of rollouts of %d steps: training runs %d steps",
            cfg.total_steps,
            steps_per_iter,
            num_iters * steps_per_iter,
        )

    bar = Progress(
        num_iters * steps_per_iter, step, f"{cfg.algo.name} {cfg.env.name} s{cfg.seed}", bool(cfg.progress)
    )
    rows_cap = OmegaConf.select(cfg, "metrics.train_rows", default=None)  # absent: a run made before it
    rows = TrainRows(run, 1 if rows_cap is None else math.ceil(num_iters / rows_cap), pending)
    for iteration in range(first_iter, num_iters):
        algo.set_progress(step / (num_iters * steps_per_iter))
        batch = env.collect(policy, algo.rollout_length)
        metrics = algo.learn(batch)
        step += steps_per_iter
        recent = (recent + list(batch.info.get("episode_returns", [])))[-TRAIN_WINDOW:]
        elapsed = time.perf_counter() - start - eval_time
        metrics.update(
            episode_return_mean=_mean(recent[-LOG_WINDOW:]),
            steps_per_sec=(step - start_step) / max(elapsed, 1e-9),
            time_s=time.perf_counter() - start,
        )
        for key, value in batch.info.items():  # scalar statistics an environment chooses to report
            if key.startswith("stat/"):
                metrics[key[5:]] = float(value)
        last = iteration == num_iters - 1
        rows.add(step, metrics, write=last or (iteration + 1) % rows.every == 0)
        bar.update(steps_per_iter, metrics["episode_return_mean"], metrics["steps_per_sec"])

        if eval_every and not last and (step // eval_every) > ((step - steps_per_iter) // eval_every):
            t0 = time.perf_counter()
            result = env.evaluate(policy, cfg.eval.episodes, deterministic=cfg.eval.deterministic)
            _log_eval(run, step, result)
            _maybe_clip(cfg, env, policy, run, step)
            eval_time += time.perf_counter() - t0
        if ckpt_every and not last and (step // ckpt_every) > ((step - steps_per_iter) // ckpt_every):
            run.save_checkpoint(_checkpoint_state(built, step, iteration + 1, recent, cfg, rows.pending))
    bar.close()
    wall = time.perf_counter() - start
    train_time = wall - eval_time

    # A run killed after its final checkpoint (which follows the final evaluation) has that evaluation in its
    # log already: reuse it, so the step is never evaluated and logged twice.
    result = _logged_eval(run.path, step) if first_iter >= num_iters else None
    if result is None:
        result = env.evaluate(policy, cfg.eval.episodes, deterministic=cfg.eval.deterministic)
        _log_eval(run, step, result)
        _maybe_clip(cfg, env, policy, run, step)
        run.save_checkpoint(_checkpoint_state(built, step, num_iters, recent, cfg))
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
        "code_path": ops.code_path(),  # bit-identical results are promised per code path
        **get_algorithm(cfg.algo.name).implementation(),  # whose code: rlarena's or a peer library's
        # CleanRL's headline metric: mean of the last 100 training episodes (true rewards, stochastic policy)
        "train_return_last100": _mean(recent),
        "train_episodes_in_window": len(recent),
        "random_score": cfg.env.get("random_score"),
        "reference_score": cfg.env.get("reference_score"),
        "status": "finished",
        "run_dir": str(run.path),
    }
    if start_step:
        summary["resumed_from_step"] = start_step
        # False: the environments started new episodes at the resume (docs/architecture.md)
        summary["resumed_exactly"] = env.resumes_exactly
    for key, value in result.items():  # extra evaluation figures (text: task score, KL, length)
        if key not in ("returns", "lengths") and isinstance(value, (int, float)):
            summary[f"eval_{key}"] = float(value)
    run.write_summary(summary)
    (run.path / FAILED).unlink(missing_ok=True)  # a crash this run has now recovered from
    if cfg.progress:
        title = f"{cfg.algo.name} on {summary['env_id']} (seed {cfg.seed}): final evaluation"
        _print_eval_table(title, returns)
    return summary


def _restore(built: Built, state: dict[str, Any], source: Path) -> None:
    """Load a checkpoint into freshly built objects; a checkpoint that does not fit them (another
    architecture, a damaged state) raises :class:`RunFileError` naming ``source``, before anything changes
    on disk."""
    try:
        built.policy.load_state_dict(state["policy"])
        built.algo.load_state_dict(state["algorithm"])
        built.env.load_state_dict(state["env"])
        torch.set_rng_state(state["torch_rng"])
        rng = state["numpy_rng"]
        keys = np.asarray(rng["keys"], dtype=np.uint32)
        np.random.set_state(("MT19937", keys, rng["pos"], rng["has_gauss"], rng["cached_gaussian"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFileError(f"{source}: does not fit the run it belongs to: {reason}") from None


def resume_training(run_dir: str | os.PathLike, total_steps: int | None = None) -> dict[str, Any]:
    """Continue an interrupted run from its ``checkpoint.pt``, in its own directory and with its saved config;
    ``total_steps`` (optional) extends it, finished or not. Returns the summary. Missing, corrupt or foreign
    files raise :class:`RunFileError` naming the file; nothing on disk changes before they all check out."""
    run_dir = require_saved_run(
        run_dir,
        "rlarena resume",
        "a run writes its checkpoint every checkpoint.every_steps steps (0 = only at the end): nothing to "
        "resume from",
    )
    with exclusive_directory(run_dir):  # a resume racing a live run fails here, before touching anything
        cfg = read_saved_config(run_dir)
        state = read_checkpoint(run_dir, cfg)
        if total_steps is not None:
            _check_int("total_steps", total_steps, 1, MAX_TOTAL_STEPS)
            cfg.total_steps = int(total_steps)
        step, hint = int(state["step"]), "pass --total-steps to train it further"
        if step >= cfg.total_steps and (run_dir / SUMMARY).is_file():
            log.info("%s already finished at step %d (%s)", run_dir, step, hint)
            return read_finished_summary(run_dir)
        if step > cfg.total_steps:
            raise ConfigError(f"rlarena resume: the checkpoint is at step {step} > total_steps; {hint}")
        metrics_kept_at_resume(run_dir / METRICS, step)  # a damaged log is refused before anything changes
        # step == total_steps without a summary: killed before the end; the final evaluation remains
        log.info("resuming %s from step %d of %d", run_dir, int(state["step"]), cfg.total_steps)
        return run_training(cfg, run_dir, resume=state)


def _maybe_clip(cfg: DictConfig, env: Environment, policy: Policy, run: RunDirectory, step: int) -> None:
    video = cfg.get("video")  # absent from the configs of runs made before it existed
    if video is not None and video.get("at_eval"):
        from .clips import clip_at_eval

        clip_at_eval(env, policy, video, run, step)


EVAL_SUMMARY_KEYS = ("eval_return_mean", "eval_return_std", "eval_returns")  # what _log_eval derives


def _logged_eval(run_dir: Path, step: int) -> dict[str, Any] | None:
    """The evaluation at ``step`` as ``env.evaluate`` returned it, read back from the run's metrics log (the
    last such record), or None if the log has none. (A resume has checked the log and trimmed it to the
    checkpoint: every line is a record.)"""
    evals = [r for r in read_metrics(run_dir) if r.get("kind") == "eval" and r.get("step") == step]
    record = next((r for r in reversed(evals) if isinstance(r.get("eval_returns"), list)), None)
    if record is None:
        return None
    extra = {k: v for k, v in record.items() if k not in ("kind", "step", *EVAL_SUMMARY_KEYS)}
    return {"returns": record["eval_returns"], **extra}


def _log_eval(run: RunDirectory, step: int, result: dict[str, Any]) -> None:
    returns = result["returns"]
    if not np.isfinite(returns).all():  # whatever the environment: a NaN score fails as NaN in training does
        raise FloatingPointError(f"non-finite return during the evaluation at step {step}: {returns}")
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


class RunResult(dict):
    """A Hydra job's result: the run's summary (or its status), and, as ``float(result)``, the objective a
    search sweeper (Optuna) maximizes: the final evaluation's mean return; NaN for a failed job, which
    Optuna records as a failed trial."""

    def __float__(self) -> float:
        value = self.get("eval_return_mean")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def hydra_task(cfg: DictConfig) -> RunResult:
    """One Hydra job: skip if already finished, resume an interrupted attempt, else train; in a sweep a
    failure is recorded (``failed.json``) and the other jobs go on; a single run ends with one message."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        job_files = hydra_job_files(cfg, hydra_cfg)
        return RunResult(_hydra_job(cfg, run_dir, Path(hydra_cfg.runtime.cwd) / cfg.outputs_root, job_files))
    except UserError as exc:
        if not multirun:
            raise SystemExit(report_user_error("rlarena train", exc)) from None
        # Another process's directory, or another run's files this job was refused to touch: write nothing.
        others = any((run_dir / name).exists() for name in (SUMMARY, CONFIG))
        if not isinstance(exc, RunDirectoryInUse) and not others:
            write_failure(run_dir, {"error": str(exc), "kind": "config"})
        log.error("job %s: %s", hydra_cfg.job.num, exc)
        return RunResult(status="failed", error=str(exc))
    except Exception as exc:
        if not multirun:
            raise
        error = f"{type(exc).__name__}: {exc}"
        write_failure(run_dir, {"error": error, "traceback": traceback.format_exc()})
        log.error("job %s failed: %s: %s", hydra_cfg.job.num, type(exc).__name__, exc)
        return RunResult(status="failed", error=str(exc))


# Hydra writes a job's .hydra/ before the task runs (so a refused job would rewrite another run's):
# conf/config.yaml turns that off (hydra.output_subdir: null) and the job writes the same files itself.
HYDRA_SUBDIR = ".hydra"


def hydra_job_files(cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, str]:
    """The files Hydra's ``output_subdir`` would hold: the job's config, Hydra's config, the overrides."""
    return {
        f"{HYDRA_SUBDIR}/config.yaml": OmegaConf.to_yaml(cfg),
        f"{HYDRA_SUBDIR}/hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
        f"{HYDRA_SUBDIR}/overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
    }


def _hydra_job(
    cfg: DictConfig, run_dir: Path, outputs_root: Path, job_files: dict[str, str] | None = None
) -> dict[str, Any]:
    cfg = apply_env_run_defaults(cfg)  # before hashing, so a re-run finds the same hash
    cfg_hash = config_hash(cfg)
    with exclusive_directory(run_dir):
        if not cfg.force:
            here = ops.code_path()
            if finished_run_hash(run_dir) == cfg_hash:
                theirs = finished_code_path(run_dir)
                if theirs not in (None, here):  # the same config computes other numbers on this code path
                    raise ConfigError(
                        f"{run_dir} holds this run, finished on another CPU code path ({theirs}; this "
                        f"process: {here}): give it another hydra.run.dir, or force=true to replace it"
                    )
                log.info("skipping: this run already finished in %s (force=true to re-run)", run_dir)
                return read_json_file(run_dir / SUMMARY)
            done = find_finished_run(outputs_root, cfg_hash, code_path=here)
            if done is not None and done.resolve() != run_dir.resolve():
                log.info("skipping: an identical run already finished in %s (force=true to re-run)", done)
                atomic_write_json(run_dir / REUSED, {"existing": str(done), "config_hash": cfg_hash})
                reused = read_json_file(done / SUMMARY)  # its figures: a search sweeper reads them too
                return {**reused, "status": "skipped", "existing": str(done)}
            state = _resumable_checkpoint(run_dir, cfg_hash)
            if state is not None:
                log.info("resuming the interrupted run in %s from step %d", run_dir, int(state["step"]))
                return run_training(cfg, run_dir, resume=state, job_files=job_files)
        return run_training(cfg, run_dir, job_files=job_files)


def _resumable_checkpoint(run_dir: Path, cfg_hash: str) -> dict[str, Any] | None:
    """The checkpoint of an unfinished earlier attempt of this very config in ``run_dir``, if it loads."""
    if (run_dir / SUMMARY).exists() or not all((run_dir / f).is_file() for f in (CHECKPOINT, CONFIG)):
        return None
    try:
        saved = read_run_config(run_dir)
        if config_hash(saved) != cfg_hash:
            return None
        return read_checkpoint(run_dir, saved)
    except RunFileError as exc:
        log.warning("not resuming from %s: %s; starting over", run_dir, exc)
        return None
