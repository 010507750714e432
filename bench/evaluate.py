"""``rlarena eval RUN_DIR``: evaluate a saved run without retraining.

The run's own ``config.yaml`` rebuilds the environment and the policy; ``checkpoint.pt`` (loaded with
``weights_only=True``) restores the weights and the environment's normalizer statistics; the evaluation is
the training loop's (separate environments, frozen statistics, true rewards). With the run's own episode
count and ``--deterministic`` it reproduces the final evaluation in ``summary.json`` exactly. The result is
printed as the training's final table and written to ``eval.json`` in the run directory.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlarena.errors import ConfigError, UserError, report
from rlarena.io import atomic_write_json, exclusive_directory

from .configs import algo_config_from_dict
from .results import CHECKPOINT, read_checkpoint, require_saved_run
from .train import Built, _print_eval_table, _restore, build_from, read_saved_config

EVAL = "eval.json"


def load_saved_run(run_dir: Path) -> tuple[Any, dict[str, Any], Built]:
    """The run's config, its checkpoint, and env + policy + algorithm rebuilt from them and restored (the
    caller holds the directory's lock and closes ``built.env``)."""
    cfg = read_saved_config(run_dir)
    state = read_checkpoint(run_dir, cfg)
    torch.set_num_threads(int(cfg.torch_threads))
    algo_cfg = algo_config_from_dict(cfg.algo.name, state["algo_config"])
    built = build_from(cfg, algo_cfg, run_dir=None)  # nothing of the environment's goes to the run
    try:
        _restore(built, state, run_dir / CHECKPOINT)
    except Exception:
        built.env.close()
        raise
    return cfg, state, built


def evaluate_run(
    run_dir: str | os.PathLike, episodes: int | None = None, deterministic: bool | None = None
) -> dict[str, Any]:
    """Evaluate the policy saved in ``run_dir``; returns what ``eval.json`` holds. ``episodes`` and
    ``deterministic`` default to the run's own ``eval`` settings. Missing or foreign files raise
    :class:`RunFileError` naming them; a run that is still training raises ``RunDirectoryInUse``."""
    run_dir = require_saved_run(run_dir, "rlarena eval", "nothing to evaluate")
    if episodes is not None and (isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1):
        raise ConfigError(f"--episodes must be a positive integer, got {episodes!r}")
    with exclusive_directory(run_dir):  # no evaluation of a run another process is still writing
        cfg, state, built = load_saved_run(run_dir)
        episodes = int(cfg.eval.episodes) if episodes is None else episodes
        deterministic = bool(cfg.eval.deterministic) if deterministic is None else deterministic
        try:
            result = built.env.evaluate(built.policy, episodes, deterministic=deterministic)
        finally:
            built.env.close()
        returns = [float(r) for r in result["returns"]]
        out: dict[str, Any] = {
            "run_dir": str(run_dir),
            "algo": cfg.algo.name,
            "env": cfg.env.name,
            "seed": int(cfg.seed),
            "step": int(state["step"]),
            "episodes": episodes,
            "deterministic": deterministic,
            "eval_return_mean": float(np.mean(returns)),
            "eval_return_std": float(np.std(returns)),
            "eval_returns": returns,
        }
        for key, value in result.items():  # extra figures (text: task score, KL, response length)
            if key not in ("returns", "lengths") and isinstance(value, (int, float)):
                out[f"eval_{key}"] = float(value)
        if result.get("samples"):  # text: what the policy writes
            out["samples"] = [str(s) for s in result["samples"]]
        atomic_write_json(run_dir / EVAL, out)
    return out


def saved_run_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of a command that reads a saved run (``RUN_DIR`` first)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("run_dir", help="the run's directory (it holds config.yaml and checkpoint.pt)")
    return parser


def main(argv: list[str]) -> int:
    parser = saved_run_parser(
        "rlarena eval",
        "Evaluate a saved run (its checkpoint.pt, with its config.yaml) without retraining; print the table "
        "training ends with and write eval.json into the run directory.",
    )
    parser.add_argument("--episodes", type=int, help="episodes (default: the run's eval.episodes)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=None,
                      help="the mean action (default: the run's eval.deterministic)")  # fmt: skip
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", help="sampled actions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s")
    try:
        out = evaluate_run(args.run_dir, args.episodes, args.deterministic)
    except UserError as exc:
        return report("rlarena eval", exc)
    how = "deterministic" if out["deterministic"] else "stochastic"
    _print_eval_table(
        f"{out['algo']} on {out['env']} (seed {out['seed']}, step {out['step']}): {how}", out["eval_returns"]
    )
    for key, value in out.items():
        if key.startswith("eval_") and key not in ("eval_return_mean", "eval_return_std", "eval_returns"):
            print(f"{key[5:]}: {value:.4f}")
    print(f"wrote {Path(args.run_dir) / EVAL}")
    return 0
