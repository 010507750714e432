"""`rlarena leaderboard PATH...`: collect finished runs, compare algorithms honestly, write the results.

Reading the runs is ``results.py``, the statistics ``leaderboard.py``, the Markdown and CSV ``tables.py``
and the HTML report ``report.py``; this module parses the command line and writes the files.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from rlarena.io import atomic_write_text

from . import overoptimization, stats
from .leaderboard import build_leaderboard
from .results import collect_runs
from .tables import to_csv, to_markdown


def parse_reference(specs: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``--reference`` values: ``ENV=RANDOM,REFERENCE`` or a YAML/JSON file mapping
    ``env: {random_score: .., reference_score: ..}``. Later values win."""
    result: dict[str, tuple[float, float]] = {}
    for spec in specs:
        if "=" in spec and not Path(spec).exists():
            env, _, values = spec.partition("=")
            try:
                random_score, reference_score = (float(v) for v in values.split(","))
            except ValueError:
                raise ValueError(f"--reference {spec!r}: expected ENV=RANDOM,REFERENCE") from None
            result[env.strip()] = (random_score, reference_score)
            continue
        import yaml  # JSON is YAML too

        try:
            data = yaml.safe_load(Path(spec).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"--reference {spec!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"--reference {spec!r}: expected a mapping of env -> scores")
        for env, entry in data.items():
            try:
                result[str(env)] = (float(entry["random_score"]), float(entry["reference_score"]))
            except (TypeError, KeyError, ValueError):
                msg = f"--reference {spec!r}: {env!r} needs random_score and reference_score"
                raise ValueError(msg) from None
    for env, (random_score, reference_score) in result.items():
        if random_score == reference_score or not all(map(math.isfinite, (random_score, reference_score))):
            raise ValueError(f"--reference {env}: random and reference must be finite and different")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlarena leaderboard",
        description="Collect finished runs below PATHs and write Markdown, CSV and an HTML report.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="folders to search for run directories")
    parser.add_argument("--out", default="leaderboard", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="ENV=RANDOM,REF|FILE",
        help="override random/reference scores for normalization (repeatable)",
    )
    parser.add_argument(
        "--best-of-n",
        action="append",
        default=[],
        metavar="PATH",
        help="a `rlarena best-of-n` JSON: the reference curve of the over-optimization view of its env "
        "text/<task> (repeatable, one per env)",
    )
    parser.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=stats.DEFAULT_CONFIDENCE, help="CI level")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (results are deterministic)")
    parser.add_argument("--title", default="rlarena leaderboard", help="title of the HTML report")
    parser.add_argument("--no-html", action="store_true", help="skip the plots and the HTML report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def write_outputs(out: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        atomic_write_text(out / name, text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps < 100:
        print("error: --reps must be at least 100", file=sys.stderr)
        return 2
    if not 0 < args.confidence < 1:
        print("error: --confidence must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        reference = parse_reference(args.reference)
        best_of_n = overoptimization.load_best_of_n_files(args.best_of_n)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    collection = collect_runs(args.paths, progress=not args.no_progress)
    for skipped in collection.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    if not collection.runs:
        print(f"error: no finished runs found under {', '.join(args.paths)}", file=sys.stderr)
        return 1

    lb = build_leaderboard(
        collection, reps=args.reps, confidence=args.confidence, seed=args.seed, reference=reference
    )
    # Reward-model over-optimization, only when some run has text eval records (KL and score).
    overopt = overoptimization.build_overoptimization(collection, best_of_n)
    markdown = to_markdown(lb, collection, [overoptimization.to_markdown(overopt)] if overopt else [])
    files = {"leaderboard.md": markdown, **to_csv(lb, collection)}
    if overopt:
        files[overoptimization.CSV_NAME] = overoptimization.to_csv(overopt)
    if not args.no_html:
        from .report import render_html  # matplotlib is only needed for the report

        sections = (
            [(overoptimization.ANCHOR, "over-optimization", overoptimization.to_html(overopt))]
            if overopt
            else []
        )
        files["report.html"] = render_html(lb, collection, title=args.title, extra_sections=sections)
    out = Path(args.out)
    write_outputs(out, files)

    print(markdown)
    for warning in collection.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {', '.join(sorted(files))} to {out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
