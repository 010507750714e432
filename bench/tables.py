"""The leaderboard as tables: the Markdown page and the CSV files of `rlarena leaderboard`.

Also the pieces the HTML report (``report.py``) shares: number formats, the table headers and rows (with
the escaping left to the caller), titles and the methodology notes. Every user string (algorithm and
environment names, paths, error messages) is escaped for Markdown and guarded against spreadsheet formulas
in CSV.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from . import stats
from .leaderboard import LabelsRow, Leaderboard, VersusRow
from .results import Collection, Run

# ------------------------------------------------------------------------------------------- Markdown


def ranks(scores: Sequence[float]) -> list[int]:
    """Competition ranks of scores sorted best first: equal scores share a rank (1, 1, 3)."""
    return [1 + sum(other > score for other in scores) for score in scores]


def fmt(x: float | None) -> str:
    """Compact fixed-point numbers; n/a for missing or NaN."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_ci(e: stats.Estimate | None) -> str:
    if e is None:
        return "n/a"
    return f"{fmt(e.value)} [{fmt(e.low)}, {fmt(e.high)}]" if e.has_ci else f"{fmt(e.value)} (no CI)"


def md_escape(text: str) -> str:
    """Keep user strings (algorithm, env names, paths, error messages) from breaking a table or
    injecting HTML into a rendered Markdown page."""
    return (
        str(text)
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def env_title(lb: Leaderboard, env: str) -> str:
    ids = lb.rows[env][0].env_id if lb.rows[env] else ""
    return f"{env} ({ids})" if ids and ids != env else env


ENV_HEADER = [
    "Rank",
    "Algorithm",
    "Implementation",
    "Seeds",
    "Final return (mean ± std)",
    "IQM [95% CI]",
    "Normalized IQM",
    "AUC",
    "Best eval",
    "Last-100 train",
    "Steps/s",
    "Steps",
]


OOD_HEADER = "OOD score"  # text: the score on the generalization split (docs/text.md)


def has_ood(lb: Leaderboard, env: str) -> bool:
    """Whether a run on ``env`` reported a generalization-split score (only then is the column shown)."""
    return any(row.ood_score is not None for row in lb.rows[env])


def env_header(lb: Leaderboard, env: str) -> list[str]:
    return ENV_HEADER + ([OOD_HEADER] if has_ood(lb, env) else [])


def env_table_rows(lb: Leaderboard, env: str, escape=md_escape) -> list[list[str]]:
    """The rows under :func:`env_header`."""
    ood = has_ood(lb, env)
    return [
        [
            str(rank),
            escape(row.algo),
            escape(row.implementation),
            str(row.n_runs),
            f"{fmt(row.mean)} ± {fmt(row.std)}",
            fmt_ci(row.iqm),
            fmt_ci(row.normalized_iqm),
            fmt(row.auc),
            fmt(row.best_eval),
            fmt(row.train_last100),
            fmt(row.steps_per_sec),
            ", ".join(map(str, row.total_steps)) or "n/a",
            *([fmt(row.ood_score)] if ood else []),
        ]
        for rank, row in zip(ranks([r.iqm.value for r in lb.rows[env]]), lb.rows[env])
    ]


LABELS_TITLE = "Return vs preference labels"
TRUE_REWARD = "true reward"  # the Labels cell of the inner algorithm trained on the environment's reward
LABELS_HEADER = [
    "Labels",
    "Inner algorithm",
    "Seeds",
    "Final return mean [95% CI]",
    "Std",
    "IQM [95% CI]",
    "Steps",
]


def labels_cell(row: LabelsRow) -> str:
    return TRUE_REWARD if row.true_reward else str(row.labels)


def labels_intro(lb: Leaderboard) -> str:
    inners = sorted({row.inner for rows in lb.labels.values() for row in rows})
    return (
        f"Reward from preferences (algo=preference): final return per label budget (algo.total_labels), "
        f"against the inner algorithm ({', '.join(inners)}) trained on the true reward."
    )


def labels_table_rows(lb: Leaderboard, env: str, escape=md_escape) -> list[list[str]]:
    return [
        [
            labels_cell(row),
            escape(row.inner),
            str(row.n_runs),
            fmt_ci(row.mean),
            fmt(row.std),
            fmt_ci(row.iqm),
            ", ".join(map(str, row.total_steps)) or "n/a",
        ]
        for row in lb.labels.get(env, [])
    ]


AGGREGATE_HEADER = ["Rank", "Algorithm", "Tasks", "Runs", *[f"{name} [95% CI]" for name in stats.AGGREGATES]]


def aggregate_table_rows(lb: Leaderboard, escape=md_escape) -> list[list[str]]:
    n_envs = len(lb.normalization)
    return [
        [
            str(rank),
            escape(row.algo),
            f"{row.n_tasks}/{n_envs}",
            str(row.n_runs),
            *[fmt_ci(row.metrics[name]) for name in stats.AGGREGATES],
        ]
        for rank, row in zip(ranks([r.metrics["IQM"].value for r in lb.aggregate]), lb.aggregate)
    ]


def improvement_matrix(lb: Leaderboard, escape=md_escape) -> tuple[list[str], list[list[str]]]:
    header = ["P(row > column)", *[escape(a) for a in lb.algos]]
    rows = []
    for x in lb.algos:
        cells = [escape(x)]
        for y in lb.algos:
            entry = lb.improvement.get((x, y))
            cells.append("—" if x == y else "n/a" if entry is None else fmt_ci(entry[0]))
        rows.append(cells)
    return header, rows


VERSUS_TITLE = "rlarena vs peer"
VERSUS_HEADER = ["Algorithm", "Peer", "Implementations", "Task", "Runs", "P(rlarena > peer) [95% CI]"]


def versus_intro() -> str:
    return (
        "Each peer plugin (another library's implementation, run under rlarena's protocol) against the "
        "rlarena algorithm its registered class names as its counterpart: the probability that a run of "
        "rlarena's implementation beats a run of the peer's (final evaluation return; ties count half), per "
        "task both ran and across those tasks. Above 0.5: rlarena's is better."
    )


def versus_task(lb: Leaderboard, row: VersusRow) -> str:
    return env_title(lb, row.env) if row.env is not None else f"across {row.n_tasks} tasks"


def versus_implementations(row: VersusRow) -> str:
    peer = f"{row.peer_implementation} {row.peer_version}" if row.peer_version else row.peer_implementation
    return f"{row.algo_implementation} vs {peer}"


def versus_table_rows(lb: Leaderboard, escape=md_escape) -> list[list[str]]:
    return [
        [
            escape(row.algo),
            escape(row.peer),
            escape(versus_implementations(row)),
            escape(versus_task(lb, row)),
            f"{row.algo_runs} vs {row.peer_runs}",
            fmt_ci(row.p),
        ]
        for row in lb.versus
    ]


def methodology(lb: Leaderboard) -> list[str]:
    pct = f"{lb.confidence:.0%}"
    notes = [
        "A run's score is the mean return of its final evaluation; seeds are the runs of one algorithm on "
        "one environment.",
        f"IQM is the interquartile mean (25% trimmed mean; with fewer than 4 seeds it equals the mean). "
        f"Intervals are {pct} percentile intervals of a stratified bootstrap ({lb.reps} resamples; runs "
        "resampled within each environment). 'no CI' means a single run.",
        "AUC is the area under the evaluation curve divided by its step range (the curve's average return).",
        "Normalized score = (score - random) / (reference - random). Aggregates pool the normalized scores "
        "of the environments with both constants; an algorithm missing some of them shows it in 'Tasks'.",
        "Probability of improvement P(X > Y): the chance that a run of X beats a run of Y on the same "
        "environment (ties count half), averaged over the environments both ran.",
    ] + (
        [
            "Preference runs are ranked per inner algorithm and label budget, e.g. 'preference-ppo (700 "
            f"labels)'. {LABELS_TITLE}: per budget, the mean final return with its {pct} bootstrap "
            f"interval; '{TRUE_REWARD}' is the inner algorithm trained on the environment's reward, the "
            "reference a budget should approach."
        ]
        if lb.labels
        else []
    )
    if lb.versus:
        notes.append(
            f"{VERSUS_TITLE}: P(rlarena > peer) is the probability of improvement above, restricted to an "
            "algorithm and the peer plugin that implements it (its registered counterpart), per task with "
            f"a {pct} bootstrap interval over the seeds of each side, and across the tasks both ran (shown "
            "from two tasks on)."
        )
    if any(has_ood(lb, env) for env in lb.envs):
        notes.append(
            f"{OOD_HEADER} (text): the mean over seeds of the final evaluation's task score on the "
            "generalization split, prompts whose words or values no training prompt has (docs/text.md); "
            "the return columns are the held-out test prompts."
        )
    return notes


def reused_note(collection: Collection) -> str:
    n = len(collection.reused)
    return f" {n} sweep job(s) reused an identical finished run instead of training." if n else ""


def to_markdown(lb: Leaderboard, collection: Collection, extra_sections: Sequence[str] = ()) -> str:
    """The Markdown page; ``extra_sections`` (whole Markdown sections, e.g. the over-optimization view of
    ``overoptimization.py``) go after the per-environment and labels tables."""
    out = [
        "# rlarena leaderboard",
        "",
        f"{lb.n_runs} runs: {len(lb.algos)} algorithms x {len(lb.envs)} environments; "
        f"{len(collection.skipped)} skipped.{reused_note(collection)}",
        "",
    ]
    if lb.aggregate:
        out += [
            "## Across environments (normalized: random = 0, reference = 1)",
            "",
            _md_table(AGGREGATE_HEADER, aggregate_table_rows(lb)),
            "",
        ]
    if lb.unnormalized_envs:
        names = ", ".join(md_escape(e) for e in lb.unnormalized_envs)
        out += [f"Not in the aggregate (no random/reference score recorded): {names}.", ""]
    if lb.improvement:
        header, rows = improvement_matrix(lb)
        out += ["### Probability of improvement", "", _md_table(header, rows), ""]
    if lb.versus:
        out += [f"## {VERSUS_TITLE}", "", md_escape(versus_intro()), ""]
        out += [_md_table(VERSUS_HEADER, versus_table_rows(lb)), ""]
    for env in lb.envs:
        out += [
            f"## {md_escape(env_title(lb, env))}",
            "",
            _md_table(env_header(lb, env), env_table_rows(lb, env)),
            "",
        ]
    if lb.labels:
        out += [f"## {LABELS_TITLE}", "", md_escape(labels_intro(lb)), ""]
        for env in lb.labels:
            out += [
                f"### {md_escape(env_title(lb, env))}",
                "",
                _md_table(LABELS_HEADER, labels_table_rows(lb, env)),
                "",
            ]
    for section in extra_sections:
        out += [section.rstrip("\n"), ""]
    if collection.skipped:
        rows = [[md_escape(s.path), md_escape(s.reason)] for s in collection.skipped]
        out += [f"## Skipped ({len(collection.skipped)})", "", _md_table(["Path", "Reason"], rows), ""]
    if collection.warnings:
        out += ["## Warnings", "", *[f"- {md_escape(w)}" for w in collection.warnings], ""]
    out += ["## How to read this", "", *[f"- {line}" for line in methodology(lb)], ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ CSV


def _csv_cell(value: Any) -> Any:
    """Numbers as numbers (NaN/None empty); strings guarded against spreadsheet formula injection."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(header: list[str], rows: Iterable[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    return buf.getvalue()


def _ci_cells(e: stats.Estimate | None) -> list[float | None]:
    return [None, None, None] if e is None else [e.value, e.low, e.high]


def _run_row(run: Run, normalization: dict[str, tuple[float, float]], ood: bool = False) -> list[Any]:
    normalized = (
        stats.normalize(run.final_return, *normalization[run.env]) if run.env in normalization else None
    )
    return [
        str(run.path),
        run.algo,
        run.implementation,
        run.implementation_version,
        run.env,
        run.seed,
        run.total_steps,
        run.final_return,
        None if normalized is None else float(normalized),
        run.auc,
        run.best_eval_return,
        run.train_return_last100,
        run.final_train_return,
        run.steps_per_sec,
        run.wall_time_s,
        run.config_hash,
        run.inner,
        run.total_labels,
        *([run.ood_score] if ood else []),
    ]


LABELS_CSV_HEADER = [
    "env",
    "env_id",
    "inner",
    "labels",
    "reward",
    "algo",
    "n_seeds",
    "seeds",
    "total_steps",
    "mean",
    "mean_low",
    "mean_high",
    "std",
    "iqm",
    "iqm_low",
    "iqm_high",
]


def to_csv(lb: Leaderboard, collection: Collection) -> dict[str, str]:
    """File name -> CSV text: the tables in long, machine-friendly form."""
    env_header = [
        "env",
        "env_id",
        "algo",
        "implementation",
        "rank",
        "n_seeds",
        "seeds",
        "total_steps",
        "mean",
        "std",
        "iqm",
        "iqm_low",
        "iqm_high",
        "normalized_iqm",
        "normalized_iqm_low",
        "normalized_iqm_high",
        "auc",
        "best_eval",
        "train_last100",
        "final_train_return",
        "steps_per_sec",
    ]
    env_rows = [
        [
            row.env,
            row.env_id,
            row.algo,
            row.implementation,
            rank,
            row.n_runs,
            " ".join(map(str, row.seeds)),
            " ".join(map(str, row.total_steps)),
            row.mean,
            row.std,
            *_ci_cells(row.iqm),
            *_ci_cells(row.normalized_iqm),
            row.auc,
            row.best_eval,
            row.train_last100,
            row.final_train_return,
            row.steps_per_sec,
        ]
        for env in lb.envs
        for rank, row in zip(ranks([r.iqm.value for r in lb.rows[env]]), lb.rows[env])
    ]
    metric_keys = [name.lower().replace(" ", "_") for name in stats.AGGREGATES]
    metric_cols = [f"{key}{suffix}" for key in metric_keys for suffix in ("", "_low", "_high")]
    aggregate_rows = [
        [row.algo, row.n_tasks, row.n_runs, *[v for m in stats.AGGREGATES for v in _ci_cells(row.metrics[m])]]
        for row in lb.aggregate
    ]
    runs_header = [
        "path",
        "algo",
        "implementation",
        "implementation_version",
        "env",
        "seed",
        "total_steps",
        "final_return",
        "normalized_return",
        "auc",
        "best_eval_return",
        "train_return_last100",
        "final_train_return",
        "steps_per_sec",
        "wall_time_s",
        "config_hash",
        "inner",
        "total_labels",
    ]
    # Text runs' generalization-split score; the column only when a run has one (no empty MuJoCo column).
    ood = any(r.ood_score is not None for r in collection.runs)
    runs_header += ["ood_score"] if ood else []
    files = {
        "leaderboard.csv": _csv(env_header, env_rows),
        "aggregate.csv": _csv(["algo", "n_tasks", "n_runs", *metric_cols], aggregate_rows),
        "probability_of_improvement.csv": _csv(
            ["algo_x", "algo_y", "n_tasks", "p_x_better", "low", "high"],
            [[x, y, n, *_ci_cells(e)] for (x, y), (e, n) in lb.improvement.items()],
        ),
        "runs.csv": _csv(runs_header, [_run_row(r, lb.normalization, ood) for r in collection.runs]),
        "skipped.csv": _csv(["path", "reason"], [[s.path, s.reason] for s in collection.skipped]),
    }
    if lb.labels:  # only with preference runs, like the Markdown section
        files["labels.csv"] = _csv(LABELS_CSV_HEADER, labels_csv_rows(lb))
    if lb.versus:  # only with a peer and its counterpart on a common task
        files["implementations.csv"] = _csv(VERSUS_CSV_HEADER, versus_csv_rows(lb))
    return files


VERSUS_CSV_HEADER = [
    "algo",
    "algo_implementation",
    "peer",
    "peer_implementation",
    "peer_version",
    "scope",
    "env",
    "n_tasks",
    "algo_runs",
    "peer_runs",
    "p_algo_better",
    "low",
    "high",
]


def versus_csv_rows(lb: Leaderboard) -> list[list[Any]]:
    """One row per rlarena-vs-peer row; ``scope`` is "task" (``env`` names it) or "across" (``env`` empty)."""
    return [
        [
            row.algo,
            row.algo_implementation,
            row.peer,
            row.peer_implementation,
            row.peer_version,
            "across" if row.across else "task",
            row.env,
            row.n_tasks,
            row.algo_runs,
            row.peer_runs,
            *_ci_cells(row.p),
        ]
        for row in lb.versus
    ]


def labels_csv_rows(lb: Leaderboard) -> list[list[Any]]:
    """One row per labels-view row; ``labels`` is empty and ``reward`` is "true" for the reference, whose
    ``algo`` (like every row's) names its row in leaderboard.csv."""
    return [
        [
            row.env,
            lb.rows[env][0].env_id if lb.rows[env] else "",
            row.inner,
            row.labels,
            "true" if row.true_reward else "preferences",
            row.algo,
            row.n_runs,
            " ".join(map(str, row.seeds)),
            " ".join(map(str, row.total_steps)),
            *_ci_cells(row.mean),
            row.std,
            *_ci_cells(row.iqm),
        ]
        for env, rows in lb.labels.items()
        for row in rows
    ]
