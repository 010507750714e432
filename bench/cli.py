"""The ``rlarena`` command.

``rlarena train [hydra overrides]``   train one run, or a sweep with ``--multirun``
``rlarena resume RUN_DIR``            continue an interrupted run from its checkpoint
``rlarena eval RUN_DIR``              evaluate a saved run without retraining (table + eval.json)
``rlarena video RUN_DIR``             render a saved MuJoCo policy's episodes to MP4 and GIF
``rlarena list``                      registered algorithms and environments
``rlarena leaderboard PATH...``       compare finished runs (Markdown, CSV, HTML report)
``rlarena bench``                     kernel benchmarks against the peers (table + JSON)
``rlarena sft | reward-model``        steps 1 and 2 of the text pipeline (SFT model, text reward model)
``rlarena label``                     the labeling page of ``algo=preference`` (a person answers queries)
``rlarena reward-from-labels``        the preference plugin's reward model from a labels file alone

Subcommands are imported lazily so ``rlarena list`` does not pay for Hydra or matplotlib.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rlarena.bench.cli", "train_main"),
    "resume": ("rlarena.bench.cli", "resume_main"),
    "eval": ("rlarena.bench.evaluate", "main"),
    "video": ("rlarena.bench.video", "main"),
    "list": ("rlarena.bench.cli", "list_main"),
    "leaderboard": ("rlarena.bench.leaderboard_cli", "main"),
    "bench": ("rlarena.bench.cli", "bench_main"),
    "sft": ("rlarena.bench.text_pipeline", "sft_main"),
    "reward-model": ("rlarena.bench.text_pipeline", "reward_model_main"),
    "best-of-n": ("rlarena.bench.text_pipeline", "best_of_n_main"),
    "convert-smollm2": ("rlarena.bench.text_pipeline", "convert_smollm2_main"),
    "label": ("rlarena.bench.label_server", "main"),
    "reward-from-labels": ("rlarena.bench.reward_model_cli", "main"),
}

USAGE = f"""usage: rlarena <command> [args]

commands: {", ".join(SUBCOMMANDS)}
  rlarena train algo=ppo env=hopper seed=1 total_steps=100000
  rlarena train --multirun algo=ppo,a2c env=hopper,walker2d seed=0,1,2 hydra/launcher=joblib
  rlarena resume outputs/runs/<run> [--total-steps N]
  rlarena eval outputs/runs/<run> [--episodes N] [--deterministic | --stochastic]
  rlarena video outputs/runs/<run> [--episodes N] [--width W --height H]
  rlarena list
  rlarena sft task=format && rlarena reward-model task=format && rlarena train algo=ppo env=text/format
  rlarena reward-from-labels labels=labels.sqlite out=rm/
  rlarena convert-smollm2 out=artifacts/hf/smollm2   # then env.hf_path=artifacts/hf/smollm2
  rlarena <command> --help
"""

FAILED_JOBS: list[str] = []


def train_main(argv: list[str]) -> int:
    import hydra

    from .configs import prepare_hydra, with_plugin_search_path
    from .train import hydra_task

    prepare_hydra()  # the algorithms' Config dataclasses become the options of algo=...
    overrides = [a for a in argv if a not in RUN_FLAGS]
    # One run (no --multirun, --cfg, --config-name, ...): check it all before Hydra makes its directory.
    if not any(a.startswith("-") for a in overrides):
        problem = check_train_overrides(overrides)
        if problem is not None:
            return problem
    sys.argv = ["rlarena train", *with_plugin_search_path(argv)]
    hydra.main(version_base=None, config_path="pkg://rlarena.conf", config_name="config")(hydra_task)()
    if FAILED_JOBS:
        print(f"{len(FAILED_JOBS)} job(s) failed:\n  " + "\n  ".join(FAILED_JOBS), file=sys.stderr)
        return 1
    return 0


# Hydra's flags that leave a single run a single run of the same config (-r: run, the default mode).
RUN_FLAGS = ("-r", "--run")


def check_train_overrides(argv: list[str]) -> int | None:
    """Compose and validate a single run's config as training would, and check that its run directory can
    be made; on bad input print one paragraph and return the exit code (2), else None. (A sweep's jobs are
    checked one by one as they start.)"""
    from rlarena.errors import ConfigError, UserError, report

    from .train import load_config, validate

    explicit = {a.split("=", 1)[0].lstrip("+~") for a in argv}
    try:
        cfg, _ = validate(load_config(argv), explicit_keys=explicit)  # composition errors: ConfigError
        run_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")), None)
        problem = unwritable_reason(Path(run_dir if run_dir is not None else cfg.outputs_root))
        if problem is not None:
            raise ConfigError(f"cannot create the run directory {run_dir or cfg.outputs_root}: {problem}")
    except UserError as exc:
        return report("rlarena train", exc)
    return None


def unwritable_reason(path: Path) -> str | None:
    """Why a directory could not be made at ``path`` (None if it could): tried for real, with a temporary
    folder in its first existing ancestor, since permissions alone do not tell (root, /proc, read-only
    mounts)."""
    import tempfile

    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    try:
        Path(tempfile.mkdtemp(dir=ancestor, prefix=".rlarena-probe-")).rmdir()
    except OSError as exc:
        return f"{ancestor} is not writable ({exc.strerror or exc})"
    return None


def resume_main(argv: list[str]) -> int:
    import argparse
    import logging

    parser = argparse.ArgumentParser(
        prog="rlarena resume",
        description="Continue a run from its checkpoint.pt, in its directory, with its saved config. The "
        "environments start new episodes; everything else (weights, optimizers, normalizers, RNGs, "
        "counters) is restored.",
    )
    parser.add_argument("run_dir", help="the run's directory (it holds config.yaml and checkpoint.pt)")
    parser.add_argument("--total-steps", type=int, help="train to this many steps (extends a finished run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")

    from rlarena.errors import UserError, report

    from .train import resume_training

    try:
        summary = resume_training(args.run_dir, args.total_steps)
    except UserError as exc:
        return report("rlarena resume", exc)
    done, ret = summary["steps_done"], summary["eval_return_mean"]
    shown = "null (NaN)" if ret is None else f"{ret:.1f}"  # null: an old run that ended in NaN
    print(f"{summary.get('run_dir', args.run_dir)}: step {done}, eval return {shown}")
    return 0


def bench_main(argv: list[str]) -> int:
    """``rlarena bench``: the fused ops vs their peers; ``--loop``: the training loop vs SB3 (bench/perf/)."""
    if "--loop" in argv:
        from .perf import loop

        return loop.main([a for a in argv if a != "--loop"])
    from .perf import run

    return run.main(argv)


def list_main(argv: list[str]) -> int:
    from rlarena.registry import ALGORITHMS, ENVS

    for registry in (ALGORITHMS, ENVS):
        print(f"{registry.kind}s:")
        for name in registry.names():
            print(f"  {name:<22} {registry.origin(name)}")
        for name, error in registry.load_errors.items():
            print(f"  (failed to load plugin {name!r}: {error})")
    return 0


def main(argv: list[str] | None = None) -> int:
    import logging

    # A log file that cannot be written (a full disk) must not print tracebacks of its own over the one
    # message the command ends with (logging's production setting).
    logging.raiseExceptions = False
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"rlarena: unknown command {command!r}. Commands: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module, function = SUBCOMMANDS[command]
    try:
        fn: Callable[[list[str]], int | None] = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        print(f"rlarena {command}: not available in this installation ({exc})", file=sys.stderr)
        return 2
    return int(fn(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
