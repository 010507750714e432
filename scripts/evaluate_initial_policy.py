#!/usr/bin/env python
"""Evaluate a run's starting policy (on text: the SFT model) with the evaluation a run ends with.

    .venv/bin/python scripts/evaluate_initial_policy.py --out sft_eval.json -- \
        algo=ppo env=text/dialogue env.hf_path=artifacts/hf/smollm2-135m-instruct-sft-dialogue \
        eval.episodes=64 eval.deterministic=false

The arguments after ``--`` are ``rlarena train`` overrides. The environment and policy are built as the
training loop builds them (same seed, same evaluation prompts and sampling seed), and the policy is evaluated
before any update: the "SFT" row beside RL runs' final evaluations, with the same keys as a run's
``summary.json`` (``eval_score``, its 95% interval, ``eval_exact``, ``eval_kl``, ``eval_ood_*``, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    p.add_argument("overrides", nargs="*", help="rlarena train overrides (after --)")
    args = p.parse_args(argv)

    import torch

    from rlarena.bench.configs import load_config
    from rlarena.bench.train import build_from, validate

    # As `rlarena train` does: the env's run defaults (text: 200 evaluation prompts) for keys not given.
    explicit = {o.partition("=")[0].lstrip("+~") for o in args.overrides}
    cfg, algo_cfg = validate(load_config(args.overrides), explicit)
    torch.set_num_threads(int(cfg.torch_threads))
    start = time.perf_counter()
    built = build_from(cfg, algo_cfg)
    result = built.env.evaluate(built.policy, int(cfg.eval.episodes), bool(cfg.eval.deterministic))
    summary = {f"eval_{k}": v for k, v in result.items() if k not in ("returns", "samples")}
    summary["seconds"] = time.perf_counter() - start
    summary["overrides"] = args.overrides
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
