#!/usr/bin/env python
"""Score text reward models on one common set of held-out comparisons: overall and per scorer part.

    .venv/bin/python scripts/compare_reward_models.py --task dialogue \
        --rm artifacts/text/dialogue/rm.pt --rm artifacts/text/dialogue/rm_k8.pt --out compare.json

`rlarena reward-model` reports its held-out accuracy on comparisons it samples with its own settings
(``samples_per_prompt``, ``heldout_prompts``), so two reward models trained with different settings are
measured on different pairs. This samples one held-out set (the SFT model's responses to the first
``--prompts`` test prompts, ``--samples`` each, every pair of one prompt's responses labeled by the task
scorer) and measures every model on it, overall and on the pairs that differ in one scorer part only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--rm", action="append", required=True, help="a reward model checkpoint (repeat)")
    p.add_argument("--sft", default=None, help="default: artifacts/text/<task>/sft.pt")
    p.add_argument("--prompts", type=int, default=200, help="held-out (test split) prompts")
    p.add_argument("--samples", type=int, default=8, help="responses per prompt")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import rlarena.envs.text  # noqa: F401  (registers the tasks)
    from rlarena.envs.text.reward_model import load_text_reward_model, pairwise_accuracy, sample_comparisons
    from rlarena.envs.text.sft import default_path, load_lm
    from rlarena.envs.text.tasks import load_split

    missing = [path for path in [*args.rm, args.sft or ""] if path and not Path(path).is_file()]
    if missing:
        p.error(f"no such checkpoint: {', '.join(missing)}")
    lm, tok, _ = load_lm(args.sft or default_path(args.task, "sft"), args.task)
    records = load_split(args.task, "test")[: args.prompts]
    gen = torch.Generator().manual_seed(args.seed)
    data = sample_comparisons(lm, records, args.task, tok, args.samples, args.max_new_tokens, gen)
    parts = {part: data.differing_in_only(part) for part in data.components or {}}
    results = {}
    for path in args.rm:
        rm = load_text_reward_model(path, args.task)
        row = {"all": pairwise_accuracy(rm, data, args.samples)}
        for part, idx in parts.items():
            row[part] = pairwise_accuracy(rm, data, args.samples, pairs=idx)
        results[path] = row
    counts = {"all": len(data.winner), **{part: len(idx) for part, idx in parts.items()}}
    columns = list(counts)
    print(f"{args.task}: {args.prompts} held-out prompts x {args.samples} responses, seed {args.seed}")
    print("| reward model | " + " | ".join(f"{c} ({counts[c]} pairs)" for c in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for path, row in results.items():
        print(f"| {path} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    if args.out:
        report = {"task": args.task, "prompts": args.prompts, "samples": args.samples, "seed": args.seed}
        report.update({"pairs": counts, "accuracy": results})
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
