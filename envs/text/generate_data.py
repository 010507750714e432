"""Generate the shipped task data (Step 0: instructions and demonstrations), deterministically from a seed.

    python -m rlarena.envs.text.generate_data            # rewrite envs/text/data/*.jsonl
    python -m rlarena.envs.text.generate_data --check    # fail if the shipped files differ from a fresh run

Train and test prompts never overlap (a test prompt seen in training would flatter every score).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from .tasks import DATA_DIR, TASKS

SEED = 20220127  # InstructGPT's arXiv date
NUM_TRAIN = 2000
NUM_TEST = 200


def generate(
    task: str, seed: int = SEED, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST
) -> dict[str, list]:
    """``{"train": [...], "test": [...]}`` with distinct prompts (repeats of the pool are skipped)."""
    rng = random.Random(f"{seed}-{task}")  # one stream per task: adding a task changes no other file
    make = TASKS[task].make
    seen: set[str] = set()
    records: list[dict] = []
    attempts = 0
    while len(records) < num_train + num_test:
        attempts += 1
        if attempts > 100 * (num_train + num_test):
            raise RuntimeError(f"task {task!r} cannot produce {num_train + num_test} distinct prompts")
        record = make(rng)
        if record["prompt"] not in seen:
            seen.add(record["prompt"])
            records.append(record)
    return {"test": records[:num_test], "train": records[num_test:]}


def render(records: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=DATA_DIR, help="output folder (default: the package data)"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for task in TASKS:
        for split, records in generate(task, args.seed).items():
            path = args.out / f"{task}_{split}.jsonl"
            text = render(records)
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path))
            else:
                from rlarena.io import atomic_write_text

                atomic_write_text(path, text)
                print(f"wrote {path} ({len(records)} records)")
    if stale:
        print("out of date (run without --check):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
