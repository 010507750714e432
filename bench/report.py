"""Plots and the self-contained HTML report of a leaderboard.

Figures are drawn with matplotlib's object API (no pyplot, so no global state and no GUI backend) and
embedded as base64 PNG ``data:`` URIs: the report is one file that opens anywhere, offline. Every string
that comes from runs (algorithm and environment names, paths, error messages) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from . import stats
from .leaderboard import Leaderboard
from .results import Collection, Run
from .tables import (
    AGGREGATE_HEADER,
    LABELS_HEADER,
    LABELS_TITLE,
    TRUE_REWARD,
    VERSUS_HEADER,
    VERSUS_TITLE,
    aggregate_table_rows,
    env_header,
    env_table_rows,
    env_title,
    improvement_matrix,
    labels_intro,
    labels_table_rows,
    methodology,
    reused_note,
    versus_intro,
    versus_table_rows,
)


def _identity(text: str) -> str:
    return text


def _label(text: str) -> str:
    """A user string as a matplotlib label: '$' would start mathtext, a leading '_' hides a legend entry."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def algo_colors(algos: list[str]) -> dict[str, tuple]:
    """One stable colour per algorithm across every figure."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {algo: palette[i % len(palette)] for i, algo in enumerate(sorted(algos))}


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _band(ax, x: np.ndarray, low: np.ndarray, high: np.ndarray, color, step: str | None = None) -> None:
    ok = np.isfinite(low) & np.isfinite(high)  # no band where there is no CI (a single run)
    if ok.any():
        low, high = np.where(ok, low, np.nan), np.where(ok, high, np.nan)
        ax.fill_between(x, low, high, color=color, alpha=0.2, step=step)


def learning_curves_png(lb: Leaderboard, env: str) -> bytes:
    colors = algo_colors(lb.algos)
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for algo, curve in sorted(lb.curves[env].items()):
        label = f"{_label(algo)} (n={curve.n_runs})"
        marker = "o" if len(curve.steps) == 1 else None
        ax.plot(curve.steps, curve.mean, color=colors[algo], label=label, marker=marker)
        _band(ax, curve.steps, curve.low, curve.high, colors[algo])
    ax.set_title(_label(env_title(lb, env)))
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return figure_png(fig)


def aggregate_png(lb: Leaderboard) -> bytes:
    """Interval estimates of the aggregate metrics of normalized scores, one panel per metric."""
    colors = algo_colors(lb.algos)
    names = list(stats.AGGREGATES)
    rows = lb.aggregate[::-1]  # best at the top
    fig = Figure(figsize=(3.0 * len(names), 0.5 * len(rows) + 1.4), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True)
    for ax, name in zip(axes, names):
        for y, row in enumerate(rows):
            e = row.metrics[name]
            if e.has_ci:
                ax.barh(y, e.high - e.low, left=e.low, height=0.6, color=colors[row.algo], alpha=0.5)
            ax.plot([e.value], [y], marker="|", markersize=14, color="black")
        values = [
            v
            for row in rows
            for v in (row.metrics[name].low, row.metrics[name].value, row.metrics[name].high)
        ]
        lo, hi = np.nanmin(values), np.nanmax(values)
        pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
        ax.set_xlim(lo - pad, hi + pad)  # bars touching the frame would hide markers at the edges
        ax.set_title(name + (" (lower is better)" if name == "Optimality gap" else ""), fontsize="medium")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("normalized score")
    axes[0].set_yticks(range(len(rows)), [_label(row.algo) for row in rows])
    return figure_png(fig)


def profile_png(lb: Leaderboard) -> bytes:
    colors = algo_colors(lb.algos)
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for algo, (profile, low, high) in sorted(lb.profiles.items()):
        # A profile is a step function of tau: draw it as one.
        ax.plot(lb.profile_taus, profile, color=colors[algo], label=_label(algo), drawstyle="steps-post")
        _band(ax, lb.profile_taus, low, high, colors[algo], step="post")
    ax.set_xlabel(r"normalized score $\tau$")
    ax.set_ylabel(r"fraction of runs with score > $\tau$")
    ax.set_title("Performance profile")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return figure_png(fig)


def improvement_png(lb: Leaderboard) -> bytes:
    """P(X > Y) with its interval for each pair, each pair once (P(Y > X) = 1 - P(X > Y))."""
    pairs = [(x, y) for i, x in enumerate(lb.algos) for y in lb.algos[i + 1 :] if (x, y) in lb.improvement]
    fig = Figure(figsize=(6.4, 0.45 * len(pairs) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    for k, (x, y) in enumerate(pairs[::-1]):
        e, _ = lb.improvement[(x, y)]
        if e.has_ci:
            ax.barh(k, e.high - e.low, left=e.low, height=0.6, color="tab:blue", alpha=0.4)
        ax.plot([e.value], [k], marker="|", markersize=14, color="black")
    ax.axvline(0.5, color="gray", ls="--", lw=1)
    ax.set_yticks(range(len(pairs)), [f"P({_label(x)} > {_label(y)})" for x, y in pairs[::-1]])
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("probability of improvement")
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def _yerr(estimates: list[stats.Estimate]) -> np.ndarray:
    """Asymmetric error bars (2, n) from CIs; 0 where there is no CI (a single seed) rather than NaN."""
    err = np.array([[e.value - e.low, e.high - e.value] for e in estimates], dtype=float).T
    return np.where(np.isfinite(err), err, 0.0)


def labels_png(lb: Leaderboard, env: str) -> bytes:
    """Final return against the number of preference labels (log x), one line per inner algorithm with CI
    error bars; the inner algorithm on the true reward is a horizontal line with its CI as a band."""
    rows = lb.labels[env]
    colors = algo_colors(sorted({row.inner for row in rows}))
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    budgets = sorted({row.labels for row in rows if row.labels is not None})
    for inner, color in colors.items():
        points = [row for row in rows if row.inner == inner and row.labels is not None]
        seeds = "/".join(sorted({str(row.n_runs) for row in points}))
        ax.errorbar(
            [row.labels for row in points],
            [row.mean.value for row in points],
            yerr=_yerr([row.mean for row in points]),
            color=color,
            marker="o",
            capsize=4,
            label=f"preference-{_label(inner)} (n={seeds})",
        )
        for ref in (row for row in rows if row.inner == inner and row.labels is None):
            label = f"{_label(inner)}, {TRUE_REWARD} (n={ref.n_runs})"
            ax.axhline(ref.mean.value, color=color, ls="--", lw=1.2, label=label)
            if ref.mean.has_ci:
                ax.axhspan(ref.mean.low, ref.mean.high, color=color, alpha=0.15, lw=0)
    ax.set_xscale("log")
    # Ticks at the budgets that ran, written out: a sweep's budgets rarely fall on powers of ten.
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xticks([], minor=True)
    ax.set_title(_label(env_title(lb, env)))
    ax.set_xlabel("preference labels (log scale)")
    ax.set_ylabel("final evaluation return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return figure_png(fig)


# ------------------------------------------------------------------------------------------------ HTML

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:nth-child(2), td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
.meta { color: #666; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


MAX_CLIP_BYTES = 2_000_000  # a clip larger than this is linked, not embedded: the report stays light


def best_run_clip(runs: list[Run]) -> Path | None:
    """The GIF of the best run (highest final return) among ``runs`` that has one: ``rlarena video``'s
    episode clips first, else the clip of its latest evaluation (``video.at_eval``)."""

    def step_of(p: Path) -> int:
        tail = p.stem.removeprefix("step_")
        return int(tail) if tail.isdigit() else -1

    for run in sorted(runs, key=lambda r: -r.final_return):
        folder = run.path / "videos"
        episodes = sorted(folder.glob("episode_*.gif"))
        steps = sorted(folder.glob("step_*.gif"), key=step_of)
        if episodes or steps:
            return episodes[0] if episodes else steps[-1]
    return None


def _clips(lb: Leaderboard, collection: Collection, env: str) -> str:
    cells = []
    for algo in sorted({r.variant for r in collection.runs if r.env == env}):  # the table's rows
        clip = best_run_clip([r for r in collection.runs if r.env == env and r.variant == algo])
        if clip is None:
            continue
        if clip.stat().st_size <= MAX_CLIP_BYTES:
            data = base64.b64encode(clip.read_bytes()).decode("ascii")
            media = f'<img alt="{_e(algo)} on {_e(env)}" src="data:image/gif;base64,{data}">'
        else:
            media = f'<a href="{_e(clip.resolve().as_uri())}">{_e(clip.name)}</a>'
        cells.append(f"<figure>{media}<figcaption>{_e(algo)}: best run</figcaption></figure>")
    return f'<div class="clips">{"".join(cells)}</div>' if cells else ""


def render_html(
    lb: Leaderboard,
    collection: Collection,
    title: str = "rlarena leaderboard",
    extra_sections: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The whole report as one HTML document. ``extra_sections``: (anchor, link text, HTML of a
    ``<section id="anchor">``) each, e.g. the over-optimization view; placed after the labels view."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{lb.n_runs} runs, {len(lb.algos)} algorithms x {len(lb.envs)} environments, '
        f"{len(collection.skipped)} skipped; generated {_e(when)}.{_e(reused_note(collection))}</p>",
    ]
    nav = ['<a href="#aggregate">across environments</a>'] if lb.aggregate or lb.improvement else []
    # Anchors are numbered: names are data and stay out of attributes.
    nav += ['<a href="#versus">rlarena vs peer</a>'] if lb.versus else []
    nav += [f'<a href="#env-{i}">{_e(env)}</a>' for i, env in enumerate(lb.envs)]
    nav += ['<a href="#labels">preference labels</a>'] if lb.labels else []
    nav += [f'<a href="#{_e(anchor)}">{_e(text)}</a>' for anchor, text, _ in extra_sections]
    nav += ['<a href="#skipped">skipped</a>'] if collection.skipped else []
    nav += ['<a href="#method">how to read this</a>']
    parts.append("<nav>" + " · ".join(nav) + "</nav>")

    if lb.aggregate or lb.improvement:
        parts.append('<section id="aggregate"><h2>Across environments</h2>')
        if lb.aggregate:
            scores = ", ".join(
                f"{env}: random {random_score:g}, reference {reference_score:g}"
                for env, (random_score, reference_score) in sorted(lb.normalization.items())
            )
            parts += [
                f"<p>Normalized scores (random policy = 0, reference = 1; {_e(scores)}).</p>",
                _table(AGGREGATE_HEADER, aggregate_table_rows(lb, escape=_identity)),
                _img(aggregate_png(lb), "aggregate metrics of normalized scores with confidence intervals"),
                _img(profile_png(lb), "performance profile of normalized scores"),
            ]
        if lb.unnormalized_envs:
            names = ", ".join(lb.unnormalized_envs)
            parts.append(f"<p>Not in the aggregate (no random/reference score recorded): {_e(names)}.</p>")
        if lb.improvement:
            header, rows = improvement_matrix(lb, escape=_identity)
            parts += ["<h3>Probability of improvement</h3>", _table(header, rows)]
            if len(lb.algos) > 1:
                parts.append(_img(improvement_png(lb), "probability of improvement between algorithm pairs"))
        parts.append("</section>")

    if lb.versus:
        parts += [
            f'<section id="versus"><h2>{_e(VERSUS_TITLE)}</h2>',
            f"<p>{_e(versus_intro())}</p>",
            _table(VERSUS_HEADER, versus_table_rows(lb, escape=_identity)),
            "</section>",
        ]

    for i, env in enumerate(lb.envs):
        parts += [
            f'<section id="env-{i}"><h2>{_e(env_title(lb, env))}</h2>',
            _table(env_header(lb, env), env_table_rows(lb, env, escape=_identity)),
            _img(learning_curves_png(lb, env), f"learning curves on {env}"),
            _clips(lb, collection, env),
            "</section>",
        ]

    if lb.labels:
        parts += [f'<section id="labels"><h2>{_e(LABELS_TITLE)}</h2>', f"<p>{_e(labels_intro(lb))}</p>"]
        for env in lb.labels:
            parts += [
                f"<h3>{_e(env_title(lb, env))}</h3>",
                _table(LABELS_HEADER, labels_table_rows(lb, env, escape=_identity)),
                _img(labels_png(lb, env), f"final return against preference labels on {env}"),
            ]
        parts.append("</section>")

    parts += [section for _, _, section in extra_sections]
    if collection.skipped:
        rows = [[s.path, s.reason] for s in collection.skipped]
        parts += [f'<section id="skipped"><h2>Skipped ({len(rows)})</h2>', _table(["Path", "Reason"], rows)]
        parts.append("</section>")
    if collection.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in collection.warnings)
        parts.append(f"<section><h2>Warnings</h2><ul>{items}</ul></section>")
    items = "".join(f"<li>{_e(line)}</li>" for line in methodology(lb))
    parts.append(f'<section id="method"><h2>How to read this</h2><ul>{items}</ul></section>')

    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
