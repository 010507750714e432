"""Reward-model over-optimization on text: gold score and reward-model score against KL to the SFT model.

Gao, Schulman, Hilton (2022), "Scaling laws for reward model overoptimization": a policy optimized against a
learned reward model moves away from the SFT model (KL, nats), its reward-model score keeps rising, and its
gold score (here the task scorer) rises, then stalls or falls. Plotting both against KL, with best-of-n
sampling as the reference curve, shows how much of an algorithm's reward-model gain is real; the table
compares algorithms at matched KL, since a higher score bought with more KL is not a better optimizer.

Text-like runs are recognised by their data (eval records with a finite ``kl`` and ``score``, as the text
environment's ``evaluate`` writes them), not by the environment's name. The view exists only when at least
one run has them; ``leaderboard_cli.py`` adds its Markdown section, ``overoptimization.csv`` and the HTML
section. Imports: ``results`` and ``tables`` (and ``report``, lazily, for the plots); none of them imports
this module.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .results import METRICS, Collection, Run, read_json_file
from .tables import _csv, _md_table, fmt, md_escape

TITLE = "Over-optimization (text)"
ANCHOR = "overoptimization"
CSV_NAME = "overoptimization.csv"
KL_TARGETS = (0.25, 0.5, 1.0, 1.5, 2.0)  # nats per response: where algorithms are compared
BEST_OF_N = "best-of-n"  # the reference's variant name in the CSV
BEST_OF_N_ROW = "best-of-n (reference)"  # and its row in the tables
BLANK = "—"


def _number(value: Any) -> float | None:
    """A finite float, else None (JSON null, NaN, a string, a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def best_of_n_kl(n: int) -> float:
    """KL (nats) of best-of-n to its base policy, ``log n - (n - 1) / n`` (as ``envs/text/best_of_n.py``,
    without importing torch into the leaderboard)."""
    return math.log(n) - (n - 1) / n


def gold_at_kl(kl: Sequence[float], score: Sequence[float], target: float) -> float | None:
    """The score where a trajectory of evaluations (in step order) first reaches KL ``target``, linear
    between the two evaluations around it; None outside [min KL, max KL]: never extrapolated (not even
    towards the SFT model at KL 0, which a run's first evaluation is not)."""
    kl, score = np.asarray(kl, dtype=float), np.asarray(score, dtype=float)
    if not len(kl) or not kl.min() <= target <= kl.max():
        return None
    for i in range(len(kl)):
        if kl[i] == target:
            return float(score[i])
        # A KL that goes up and down crosses a target more than once: the first crossing is when the run
        # got there, the question the table asks.
        if i + 1 < len(kl) and min(kl[i], kl[i + 1]) < target < max(kl[i], kl[i + 1]):
            t = (target - kl[i]) / (kl[i + 1] - kl[i])
            return float(score[i] + t * (score[i + 1] - score[i]))
    return None  # not reached: a piecewise-linear path through min and max crosses every value between


# ------------------------------------------------------------------------------------------------ data


@dataclass
class EvalPoint:
    """One evaluation of a text run: gold (task) score, exact KL per response, reward-model score."""

    step: int
    kl: float
    score: float
    score_ci_low: float | None = None
    score_ci_high: float | None = None
    rm_score: float | None = None


@dataclass
class TextCurve:
    """A run's evaluations in step order."""

    run: Run
    points: list[EvalPoint]

    @property
    def variant(self) -> str:
        return self.run.variant

    @property
    def kl(self) -> np.ndarray:
        return np.array([p.kl for p in self.points])

    @property
    def score(self) -> np.ndarray:
        return np.array([p.score for p in self.points])

    def at(self, targets: Sequence[float]) -> list[float | None]:
        return [gold_at_kl(self.kl, self.score, t) for t in targets]


@dataclass
class BestOfNPoint:
    n: int
    kl: float
    score: float
    score_ci_low: float | None = None
    score_ci_high: float | None = None
    rm_score: float | None = None
    oracle_best_score: float | None = None


@dataclass
class BestOfN:
    """A ``rlarena best-of-n`` result: the reference curve of env ``text/<task>``."""

    path: str
    env: str
    points: list[BestOfNPoint]  # ascending n, hence ascending KL
    prompts: int | None = None
    temperature: float | None = None

    @property
    def kl(self) -> np.ndarray:
        return np.array([p.kl for p in self.points])

    @property
    def score(self) -> np.ndarray:
        return np.array([p.score for p in self.points])

    def at(self, targets: Sequence[float]) -> list[float | None]:
        return [gold_at_kl(self.kl, self.score, t) for t in targets]


@dataclass
class MatchedRow:
    """A row of the gold-score-at-matched-KL table: one variant's runs, or the best-of-n reference."""

    variant: str
    n_runs: int
    values: list[float | None]  # per KL target: mean over the runs that reach it; None if none does
    reached: list[int]  # per KL target: how many runs reach it
    max_kl: float  # runs: mean over seeds of each run's largest KL; best-of-n: its largest n's
    final_kl: float
    final_score: float
    reference: bool = False


@dataclass
class EnvView:
    env: str
    curves: list[TextCurve]
    rows: list[MatchedRow]  # variants in leaderboard order, then best-of-n
    best_of_n: BestOfN | None = None


@dataclass
class Overoptimization:
    targets: list[float]
    envs: dict[str, EnvView]
    variants: list[str] = field(default_factory=list)  # all of the leaderboard's: colours match its plots


def read_text_evals(path: str | os.PathLike) -> list[EvalPoint]:
    """The eval records of ``metrics.jsonl`` that carry a finite ``kl`` and ``score``, in step order (a
    repeated step, from a resumed run, keeps the latest); [] for any other run. Lines that do not parse
    are passed over: ``collect_runs`` has already skipped runs whose metrics are broken."""
    points: dict[int, EvalPoint] = {}
    try:
        with open(Path(path) / METRICS, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(record, dict) or record.get("kind") != "eval":
                    continue
                step, kl, score = record.get("step"), _number(record.get("kl")), _number(record.get("score"))
                if not isinstance(step, int) or kl is None or score is None:
                    continue
                points[step] = EvalPoint(
                    step=step,
                    kl=kl,
                    score=score,
                    score_ci_low=_number(record.get("score_ci_low")),
                    score_ci_high=_number(record.get("score_ci_high")),
                    rm_score=_number(record.get("rm_score")),
                )
    except (OSError, UnicodeDecodeError):
        return []
    return [points[s] for s in sorted(points)]


def load_best_of_n(path: str | os.PathLike) -> BestOfN:
    """Read a ``rlarena best-of-n`` JSON file; ``ValueError`` saying what is wrong with it. The KL of each
    row is recomputed from its ``n``: it is a formula, not a measurement."""
    from rlarena.errors import RunFileError

    try:
        data = read_json_file(path)
    except RunFileError as exc:
        raise ValueError(f"--best-of-n {exc}") from None
    config, rows = data.get("config"), data.get("rows")
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(task, str) or not task:
        raise ValueError(f"--best-of-n {path}: no config.task (is it a `rlarena best-of-n` result?)")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"--best-of-n {path}: no rows")
    points = []
    for i, row in enumerate(rows):
        n = row.get("n") if isinstance(row, dict) else None
        score = _number(row.get("score")) if isinstance(row, dict) else None
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or score is None:
            raise ValueError(f"--best-of-n {path}: row {i} needs an integer n >= 1 and a finite score")
        points.append(
            BestOfNPoint(
                n=n,
                kl=best_of_n_kl(n),
                score=score,
                score_ci_low=_number(row.get("score_ci_low")),
                score_ci_high=_number(row.get("score_ci_high")),
                rm_score=_number(row.get("rm_score")),
                oracle_best_score=_number(row.get("oracle_best_score")),
            )
        )
    ns = [p.n for p in points]
    if len(set(ns)) != len(ns):
        raise ValueError(f"--best-of-n {path}: n repeated")
    prompts = config.get("prompts")
    return BestOfN(
        path=str(path),
        env=f"text/{task}",
        points=sorted(points, key=lambda p: p.n),
        prompts=prompts if isinstance(prompts, int) and not isinstance(prompts, bool) else None,
        temperature=_number(config.get("temperature")),
    )


def load_best_of_n_files(paths: Sequence[str | os.PathLike]) -> dict[str, BestOfN]:
    """``--best-of-n`` values: env -> its reference curve; one file per env (``ValueError`` otherwise)."""
    result: dict[str, BestOfN] = {}
    for path in paths:
        curve = load_best_of_n(path)
        if curve.env in result:
            raise ValueError(f"--best-of-n: two files for {curve.env} ({result[curve.env].path}, {path})")
        result[curve.env] = curve
    return result


def _config_value(run: Run, key: str) -> Any:
    """A key of the run's flattened config (stored as JSON text), or None."""
    text = (run.config or {}).get(key)
    try:
        return None if text is None else json.loads(text)
    except json.JSONDecodeError:
        return None


def _variant_row(name: str, curves: list[TextCurve], targets: Sequence[float]) -> MatchedRow:
    per_run = [c.at(targets) for c in curves]
    values, reached = [], []
    for j in range(len(targets)):
        present = [v[j] for v in per_run if v[j] is not None]
        values.append(float(np.mean(present)) if present else None)
        reached.append(len(present))
    return MatchedRow(
        variant=name,
        n_runs=len(curves),
        values=values,
        reached=reached,
        max_kl=float(np.mean([c.kl.max() for c in curves])),
        final_kl=float(np.mean([c.points[-1].kl for c in curves])),
        final_score=float(np.mean([c.points[-1].score for c in curves])),
    )


def _reference_row(curve: BestOfN, targets: Sequence[float]) -> MatchedRow:
    values = curve.at(targets)
    return MatchedRow(
        variant=BEST_OF_N_ROW,
        n_runs=0,
        values=values,
        reached=[int(v is not None) for v in values],
        max_kl=float(curve.kl.max()),
        final_kl=curve.points[-1].kl,
        final_score=curve.points[-1].score,
        reference=True,
    )


def _comparability_warnings(env: str, curves: list[TextCurve], reference: BestOfN | None) -> list[str]:
    """What makes this env's curves hard to read or not comparable with its best-of-n reference."""
    warnings = []
    single = [c for c in curves if len(c.points) == 1]
    if single:
        warnings.append(
            f"{env}: {len(single)} text run(s) evaluated only at the end: a point, not a curve "
            "(train with eval.every_steps, e.g. 3840, to evaluate along the way; docs/text.md)"
        )
    if reference is None:
        return warnings
    greedy = [c for c in curves if _config_value(c.run, "eval.deterministic") is True]
    if greedy:
        warnings.append(
            f"{env}: {len(greedy)} run(s) evaluated greedily (eval.deterministic=true) while best-of-n "
            "samples: their gold scores are not comparable with its curve"
        )
    episodes = {_config_value(c.run, "eval.episodes") for c in curves} - {None}
    if reference.prompts is not None and episodes - {reference.prompts}:
        shown = ", ".join(map(str, sorted(episodes)))
        warnings.append(
            f"{env}: runs evaluated on {shown} prompts (eval.episodes), best-of-n on {reference.prompts}"
        )
    return warnings


def build_overoptimization(
    collection: Collection,
    best_of_n: dict[str, BestOfN] | None = None,
    targets: Sequence[float] = KL_TARGETS,
) -> Overoptimization | None:
    """The view over every text-like run of ``collection`` (None when there is none); what the reader
    should know (a best-of-n file without runs, curves of one point, greedy evaluations) goes to
    ``collection.warnings``."""
    best_of_n = best_of_n or {}
    by_env: dict[str, list[TextCurve]] = {}
    for run in collection.runs:
        points = read_text_evals(run.path)
        if points:
            by_env.setdefault(run.env, []).append(TextCurve(run, points))
    for env, curve in sorted(best_of_n.items()):
        if env not in by_env:
            collection.warnings.append(f"--best-of-n {curve.path}: no text run on {env}; not shown")
    if not by_env:
        return None

    # Every variant of the leaderboard: report.algo_colors gives each the colour it has in the other plots.
    variants = sorted({r.variant for r in collection.runs})
    envs: dict[str, EnvView] = {}
    for env in sorted(by_env):
        curves = sorted(by_env[env], key=lambda c: (c.variant, c.run.seed, str(c.run.path)))
        reference = best_of_n.get(env)
        rows = [
            _variant_row(name, [c for c in curves if c.variant == name], targets)
            for name in sorted({c.variant for c in curves}, key=variants.index)
        ]
        if reference is not None:
            rows.append(_reference_row(reference, targets))
        envs[env] = EnvView(env, curves, rows, reference)
        collection.warnings.extend(_comparability_warnings(env, curves, reference))
    return Overoptimization(targets=list(targets), envs=envs, variants=variants)


# --------------------------------------------------------------------------------- Markdown, CSV, HTML


def intro() -> str:
    return (
        "Reward-model over-optimization (Gao, Schulman, Hilton 2022): the gold score (the task scorer, mean "
        "over an evaluation's held-out prompts) against the exact KL per response from the SFT model "
        "(nats), along training. 'Score @ KL k': each run's gold score linearly interpolated where its "
        "evaluations first reach KL k (from its first evaluation on; never extrapolated beyond its KL "
        "range), averaged over the runs that reach it (runs reaching / runs in brackets). Max KL, final KL "
        "and final score are means over runs. Variants ending in '[RM reward]' trained on the reward model "
        "(env.reward=rm), the others on the task scorer. Best-of-n, the reference: the SFT model's best of "
        "n samples by the reward model, at KL log n - (n-1)/n."
    )


def matched_header(targets: Sequence[float]) -> list[str]:
    return ["Variant", "Runs", "Max KL", "Final KL", "Final score", *[f"Score @ KL {t:g}" for t in targets]]


def matched_rows(env_view: EnvView, escape=md_escape) -> list[list[str]]:
    rows = []
    for row in env_view.rows:
        if row.reference:
            ns = [p.n for p in env_view.best_of_n.points] if env_view.best_of_n else []
            runs = f"n = {ns[0]}-{ns[-1]}" if ns else BLANK
            cells = [BLANK if v is None else fmt(v) for v in row.values]
        else:
            runs = str(row.n_runs)
            cells = [
                f"{BLANK if v is None else fmt(v)} ({k}/{row.n_runs})"
                for v, k in zip(row.values, row.reached)
            ]
        rows.append(
            [escape(row.variant), runs, fmt(row.max_kl), fmt(row.final_kl), fmt(row.final_score), *cells]
        )
    return rows


def _env_note(env_view: EnvView) -> str:
    n_points = sum(len(c.points) for c in env_view.curves)
    note = f"{len(env_view.curves)} runs, {n_points} evaluations"
    if env_view.best_of_n is not None:
        note += f"; best-of-n: {env_view.best_of_n.path}"
    return note


def to_markdown(view: Overoptimization) -> str:
    """The leaderboard's Markdown section."""
    out = [f"## {TITLE}", "", md_escape(intro()), ""]
    for env, env_view in view.envs.items():
        out += [
            f"### {md_escape(env)}",
            "",
            md_escape(_env_note(env_view)) + ".",
            "",
            _md_table(matched_header(view.targets), matched_rows(env_view)),
            "",
        ]
    return "\n".join(out)


CSV_HEADER = [
    "kind",
    "env",
    "variant",
    "algo",
    "reward",
    "seed",
    "path",
    "step",
    "n",
    "kl",
    "score",
    "score_ci_low",
    "score_ci_high",
    "rm_score",
    "oracle_best_score",
    "n_runs",
    "n_reached",
]


def _csv_row(**cells: Any) -> list[Any]:
    return [cells.get(key) for key in CSV_HEADER]


def to_csv(view: Overoptimization) -> str:
    """``overoptimization.csv``, long form, one ``kind`` per row: ``eval`` (a run's evaluation: a point of
    its curve), ``best_of_n`` (a point of the reference), ``run_at_kl`` (a run's gold score at a KL target;
    empty beyond its range), ``at_kl`` (the table: a variant's mean over ``n_reached`` of ``n_runs`` runs,
    or best-of-n's, at a KL target)."""
    rows: list[list[Any]] = []
    for env, env_view in view.envs.items():
        reference = env_view.best_of_n
        for c in env_view.curves:
            run = dict(env=env, variant=c.variant, algo=c.run.algo, reward=c.run.reward, seed=c.run.seed)
            run["path"] = str(c.run.path)
            for p in c.points:
                ci = dict(score_ci_low=p.score_ci_low, score_ci_high=p.score_ci_high)
                rows.append(
                    _csv_row(
                        kind="eval", **run, step=p.step, kl=p.kl, score=p.score, **ci, rm_score=p.rm_score
                    )
                )
        for p in reference.points if reference is not None else []:
            rows.append(
                _csv_row(
                    kind="best_of_n",
                    env=env,
                    variant=BEST_OF_N,
                    path=reference.path,
                    n=p.n,
                    kl=p.kl,
                    score=p.score,
                    score_ci_low=p.score_ci_low,
                    score_ci_high=p.score_ci_high,
                    rm_score=p.rm_score,
                    oracle_best_score=p.oracle_best_score,
                )
            )
        for c in env_view.curves:
            run = dict(env=env, variant=c.variant, algo=c.run.algo, reward=c.run.reward, seed=c.run.seed)
            for target, value in zip(view.targets, c.at(view.targets)):
                rows.append(_csv_row(kind="run_at_kl", **run, path=str(c.run.path), kl=target, score=value))
        for row in env_view.rows:
            if row.reference:
                where: dict[str, Any] = dict(variant=BEST_OF_N, path=reference.path if reference else None)
            else:
                where = dict(variant=row.variant, n_runs=row.n_runs)
            for target, value, k in zip(view.targets, row.values, row.reached):
                reached = None if row.reference else k
                rows.append(
                    _csv_row(kind="at_kl", env=env, **where, kl=target, score=value, n_reached=reached)
                )
    return _csv(CSV_HEADER, rows)


def overoptimization_png(view: Overoptimization, env: str) -> bytes:
    """Gold score against KL (left) and, when any run or the reference has one, the reward model's score
    against KL (right): each run a thin line with markers in its variant's colour, best-of-n in black with
    its 95% band (and, dotted, the task scorer's own best of n: the ceiling)."""
    from matplotlib.figure import Figure

    from .report import _band, _label, algo_colors, figure_png

    env_view = view.envs[env]
    colors = algo_colors(view.variants)
    reference = env_view.best_of_n
    has_rm = any(p.rm_score is not None for c in env_view.curves for p in c.points) or (
        reference is not None and any(p.rm_score is not None for p in reference.points)
    )
    fig = Figure(figsize=(11.0 if has_rm else 6.4, 4.0), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(1, 2 if has_rm else 1, sharex=True)))
    counts = {row.variant: row.n_runs for row in env_view.rows if not row.reference}
    labelled: list[set[str]] = [set() for _ in axes]  # one legend entry per variant and panel

    def plot(k: int, x: Sequence[float], y: Sequence[float], variant: str) -> None:
        label = None if variant in labelled[k] else f"{_label(variant)} (n={counts[variant]})"
        labelled[k].add(variant)
        axes[k].plot(x, y, color=colors[variant], lw=0.9, marker="o", ms=3, alpha=0.85, label=label)

    for c in env_view.curves:
        plot(0, c.kl, c.score, c.variant)
        rm = [(p.kl, p.rm_score) for p in c.points if p.rm_score is not None]
        if has_rm and rm:
            plot(1, *zip(*rm), c.variant)
    if reference is not None:
        label = f"best-of-n (n={reference.points[0].n}-{reference.points[-1].n})"
        low = np.array([np.nan if p.score_ci_low is None else p.score_ci_low for p in reference.points])
        high = np.array([np.nan if p.score_ci_high is None else p.score_ci_high for p in reference.points])
        axes[0].plot(reference.kl, reference.score, color="black", lw=1.8, marker="s", ms=3.5, label=label)
        _band(axes[0], reference.kl, low, high, "black")
        oracle = [(p.kl, p.oracle_best_score) for p in reference.points if p.oracle_best_score is not None]
        if oracle:
            axes[0].plot(*zip(*oracle), color="black", ls=":", lw=1.0, label="best-of-n by the task scorer")
        rm = [(p.kl, p.rm_score) for p in reference.points if p.rm_score is not None]
        if has_rm and rm:
            axes[1].plot(*zip(*rm), color="black", lw=1.8, marker="s", ms=3.5, label=label)
    for ax in axes:
        for target in view.targets:  # where the table compares
            ax.axvline(target, color="gray", lw=0.6, alpha=0.35)
        ax.set_xlabel("KL to the SFT model (nats per response)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("gold score (task scorer)")
    axes[0].set_title(_label(f"{env}: gold score"))
    if has_rm:
        axes[1].set_ylabel("reward-model score (normalized)")
        axes[1].set_title(_label(f"{env}: reward-model score"))
    return figure_png(fig)


def to_html(view: Overoptimization) -> str:
    """The report's section: per env the table and the plot."""
    from .report import _e, _img, _table

    parts = [f'<section id="{ANCHOR}"><h2>{_e(TITLE)}</h2>', f"<p>{_e(intro())}</p>"]
    for env, env_view in view.envs.items():
        parts += [
            f"<h3>{_e(env)}</h3>",
            f'<p class="meta">{_e(_env_note(env_view))}.</p>',
            _table(matched_header(view.targets), matched_rows(env_view, escape=str)),
            _img(overoptimization_png(view, env), f"gold score against KL on {env}"),
        ]
    parts.append("</section>")
    return "\n".join(parts)
