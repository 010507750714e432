"""Generate the shipped task data (Step 0: instructions and demonstrations), deterministically from a seed.

    python -m rlarena.envs.text.generate_data            # rewrite envs/text/data/*.jsonl
    python -m rlarena.envs.text.generate_data --check    # fail if the shipped files differ from a fresh run

Train and test prompts never overlap (a test prompt seen in training would flatter every score). The
generalization split (``<task>_ood.jsonl``) comes from the task's ``make_ood``, on a random stream of its
own, so the train and test files are the same as before it existed; its words/values occur in no train or
test prompt (checked here and in tests/test_text_tasks.py).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from .tasks import DATA_DIR, TASKS, Record, prompt_words

SEED = 20220127  # InstructGPT's arXiv date
NUM_TRAIN = 2000
NUM_TEST = 200
NUM_OOD = 200


def _distinct(task: str, make: Callable[[random.Random], Record], rng: random.Random, n: int) -> list[Record]:
    """``n`` records with distinct prompts (repeats of the pool are skipped)."""
    seen: set[str] = set()
    records: list[Record] = []
    attempts = 0
    while len(records) < n:
        attempts += 1
        if attempts > 100 * n:
            raise RuntimeError(f"task {task!r} cannot produce {n} distinct prompts")
        record = make(rng)
        if record["prompt"] not in seen:
            seen.add(record["prompt"])
            records.append(record)
    return records


def generate(
    task: str,
    seed: int = SEED,
    num_train: int = NUM_TRAIN,
    num_test: int = NUM_TEST,
    num_ood: int = NUM_OOD,
) -> dict[str, list[Record]]:
    """``{"test": [...], "train": [...], "ood": [...]}`` with distinct prompts."""
    spec = TASKS[task]
    # One stream per task: adding a task changes no other file.
    records = _distinct(task, spec.make, random.Random(f"{seed}-{task}"), num_train + num_test)
    # The generalization split draws from a stream of its own: train and test do not depend on it.
    ood = _distinct(task, spec.make_ood, random.Random(f"{seed}-{task}-ood"), num_ood)
    seen = set().union(*(prompt_words(r["prompt"]) for r in records))
    leaked = sorted({item.lower() for r in ood for item in spec.ood_items(r)} & seen)
    if leaked:  # a pool edited carelessly: the split would not be a generalization split
        raise RuntimeError(f"task {task!r}: ood words/values also in train/test prompts: {leaked[:10]}")
    return {"test": records[:num_test], "train": records[num_test:], "ood": ood}


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
