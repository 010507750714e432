"""The reward-model over-optimization view of `rlarena leaderboard` (bench/overoptimization.py): gold score at
matched KL by hand, blanks beyond a run's KL range, oracle vs reward-model variants, the best-of-n reference,
and the Markdown section, overoptimization.csv and the HTML plot the command writes (only with text runs)."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from rlarena.bench.leaderboard import build_leaderboard
from rlarena.bench.leaderboard_cli import main
from rlarena.bench.overoptimization import (
    BEST_OF_N_ROW,
    CSV_NAME,
    TITLE,
    build_overoptimization,
    gold_at_kl,
    load_best_of_n,
)
from rlarena.bench.results import collect_runs, variant_name

REPS = "200"
ENV = "text/format"
TARGETS = (0.25, 0.5, 1.0, 1.5, 2.0)

# (algo, reward, seed) -> evaluations (kl, score) in step order; rm runs also log an rm_score
CURVES = {
    ("ppo", "rm", 0): [(0.1, 0.70), (0.6, 0.80), (1.2, 0.74)],
    ("ppo", "rm", 1): [(0.2, 0.66), (1.0, 0.82), (1.6, 0.70)],
    ("ppo", "oracle", 0): [(0.05, 0.68), (0.3, 0.75), (0.7, 0.79)],
    ("ppo", "oracle", 1): [(0.1, 0.70), (0.4, 0.76), (0.9, 0.81)],
}
# By hand, per KL target (None: beyond the run's KL range):
#   rm/0: 0.25 -> 0.70 + 0.15/0.5 * 0.10 = 0.73; 0.5 -> 0.70 + 0.4/0.5 * 0.10 = 0.78;
#         1.0 -> 0.80 - 0.4/0.6 * 0.06 = 0.76; 1.5, 2.0 -> None (max KL 1.2)
#   rm/1: 0.25 -> 0.66 + 0.05/0.8 * 0.16 = 0.67; 0.5 -> 0.66 + 0.3/0.8 * 0.16 = 0.72; 1.0 -> 0.82;
#         1.5 -> 0.82 - 0.5/0.6 * 0.12 = 0.72; 2.0 -> None
#   oracle/0: 0.25 -> 0.68 + 0.2/0.25 * 0.07 = 0.736; 0.5 -> 0.75 + 0.2/0.4 * 0.04 = 0.77; rest None
#   oracle/1: 0.25 -> 0.70 + 0.15/0.3 * 0.06 = 0.73; 0.5 -> 0.76 + 0.1/0.5 * 0.05 = 0.77; rest None
RUN_AT_KL = {
    ("rm", 0): [0.73, 0.78, 0.76, None, None],
    ("rm", 1): [0.67, 0.72, 0.82, 0.72, None],
    ("oracle", 0): [0.736, 0.77, None, None, None],
    ("oracle", 1): [0.73, 0.77, None, None, None],
}
VARIANT_AT_KL = {  # mean over the seeds that reach each KL, and how many do
    "ppo [RM reward]": ([0.70, 0.75, 0.79, 0.72, None], [2, 2, 2, 1, 0]),
    "ppo": ([0.733, 0.77, None, None, None], [2, 2, 0, 0, 0]),
}
# Best-of-n: n = 1, 2, 4, 8 at KL log n - (n-1)/n = 0, 0.1931, 0.6363, 1.2044
BON_SCORES = {1: 0.65, 2: 0.70, 4: 0.74, 8: 0.76}


def _bon_kl(n: int) -> float:
    return math.log(n) - (n - 1) / n


def _bon_at(target: float) -> float | None:
    """Best-of-n's score at ``target`` by hand: the line between the two n around it."""
    ns = sorted(BON_SCORES)
    for a, b in zip(ns, ns[1:]):
        if _bon_kl(a) <= target <= _bon_kl(b):
            t = (target - _bon_kl(a)) / (_bon_kl(b) - _bon_kl(a))
            return BON_SCORES[a] + t * (BON_SCORES[b] - BON_SCORES[a])
    return None


def write_text_run(
    path: Path,
    algo: str,
    reward: str,
    seed: int,
    curve: list[tuple[float, float]],
    *,
    deterministic: bool = False,
) -> Path:
    """A text run directory as `rlarena train env=text/format` writes it: eval records with score and exact
    KL every 3840 steps (rm_score with env.reward=rm), config.yaml with env.reward and algo.name."""
    path.mkdir(parents=True)
    records = []
    for i, (kl, score) in enumerate(curve):
        record = {
            "kind": "eval",
            "step": 3840 * (i + 1),
            "eval_return_mean": score,
            "eval_return_std": 0.1,
            "eval_returns": [score],
            "score": score,
            "score_ci_low": score - 0.02,
            "score_ci_high": score + 0.02,
            "kl": kl,
            "kl_sampled": kl,
            "length": 15.0,
        }
        if reward == "rm":
            record["rm_score"] = 0.5 + kl  # the reward model's score keeps rising
        records.append(record)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    final = curve[-1][1]
    summary = {
        "algo": algo,
        "env": ENV,
        "env_id": ENV,
        "seed": seed,
        "total_steps": 3840 * len(curve),
        "eval_return_mean": final,
        "eval_returns": [final],
        "steps_per_sec": 100.0,
        "wall_time_s": 10.0,
        "config_hash": f"{algo}-{reward}-{seed}",
        "status": "finished",
        "random_score": 0.0,
        "reference_score": 1.0,
    }
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "config.yaml").write_text(
        f"seed: {seed}\nalgo: {{name: {algo}}}\nenv: {{name: {ENV}, task: format, reward: {reward}}}\n"
        f"eval: {{episodes: 200, deterministic: {str(deterministic).lower()}}}\n"
    )
    return path


def write_mujoco_run(path: Path, algo: str, seed: int, final: float) -> Path:
    """A run without text eval records (no kl/score): not part of the view."""
    path.mkdir(parents=True)
    records = [
        {"kind": "eval", "step": s, "eval_return_mean": v, "eval_return_std": 1.0, "eval_returns": [v]}
        for s, v in ((500, final / 2), (1000, final))
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "algo": algo,
        "env": "hopper",
        "seed": seed,
        "total_steps": 1000,
        "eval_return_mean": final,
        "config_hash": f"{algo}-hopper-{seed}",
        "status": "finished",
    }
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "config.yaml").write_text(f"seed: {seed}\nalgo: {{name: {algo}}}\nenv: {{name: hopper}}\n")
    return path


def write_best_of_n(path: Path, task: str = "format", prompts: int = 200) -> Path:
    rows = [
        {
            "n": n,
            "kl": _bon_kl(n),
            "score": score,
            "score_ci_low": score - 0.03,
            "score_ci_high": score + 0.03,
            "rm_score": 0.4 * math.log(n),
            "oracle_best_score": min(1.0, score + 0.1 * math.log2(n)),
        }
        for n, score in BON_SCORES.items()
    ]
    config = {"task": task, "prompts": prompts, "ns": sorted(BON_SCORES), "temperature": 1.0}
    path.write_text(json.dumps({"config": config, "rows": rows, "seconds": 1.0}))
    return path


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text_runs")
    for (algo, reward, seed), curve in CURVES.items():
        write_text_run(root / f"{algo}_{reward}_{seed}", algo, reward, seed, curve)
    for seed, final in enumerate((900.0, 1100.0)):
        write_mujoco_run(root / f"hopper_ppo_{seed}", "ppo", seed, final)
    return root


# ------------------------------------------------------------------------------------------ computation


def test_gold_at_kl_interpolates_and_never_extrapolates():
    kl, score = [0.1, 0.6, 1.2], [0.70, 0.80, 0.74]
    assert gold_at_kl(kl, score, 0.25) == pytest.approx(0.73)
    assert gold_at_kl(kl, score, 0.6) == pytest.approx(0.80)  # on an evaluation
    assert gold_at_kl(kl, score, 1.0) == pytest.approx(0.76)
    assert gold_at_kl(kl, score, 0.05) is None  # below the first evaluation: no line to KL 0
    assert gold_at_kl(kl, score, 1.5) is None  # beyond the last
    # A KL that goes back down: the first time the run reaches the target counts.
    kl, score = [0.3, 1.0, 0.5, 1.4], [0.6, 0.8, 0.5, 0.9]
    assert gold_at_kl(kl, score, 0.75) == pytest.approx(0.6 + 0.45 / 0.7 * 0.2)
    assert gold_at_kl(kl, score, 1.2) == pytest.approx(0.5 + 0.7 / 0.9 * 0.4)
    assert gold_at_kl([0.4], [0.7], 0.4) == pytest.approx(0.7) and gold_at_kl([], [], 0.4) is None


def test_variants_split_oracle_and_reward_model(text_runs):
    collection = collect_runs([text_runs], progress=False)
    assert collection.warnings == []  # oracle and rm runs are not pooled as seeds of one experiment
    assert {r.variant for r in collection.runs if r.env == ENV} == {"ppo", "ppo [RM reward]"}
    assert {r.variant for r in collection.runs if r.env == "hopper"} == {"ppo"}  # no env.reward: plain
    lb = build_leaderboard(collection, reps=int(REPS))
    rows = {row.algo: row for row in lb.rows[ENV]}
    assert set(rows) == {"ppo", "ppo [RM reward]"}
    assert rows["ppo [RM reward]"].mean == pytest.approx((0.74 + 0.70) / 2)
    assert rows["ppo"].mean == pytest.approx((0.79 + 0.81) / 2)
    # A preference run learns its own reward model whatever env.reward says: no suffix there.
    assert variant_name("preference", "ppo", 700, "rm") == "preference-ppo (700 labels)"
    assert variant_name("a2c", reward="oracle") == "a2c"


def test_matched_kl_table_by_hand(text_runs, tmp_path):
    collection = collect_runs([text_runs], progress=False)
    best_of_n = {ENV: load_best_of_n(write_best_of_n(tmp_path / "bon.json"))}
    view = build_overoptimization(collection, best_of_n, TARGETS)
    assert view is not None and list(view.envs) == [ENV]  # hopper has no text evaluations
    env_view = view.envs[ENV]
    for curve in env_view.curves:
        expected = RUN_AT_KL[(curve.run.reward, curve.run.seed)]
        got = curve.at(TARGETS)
        assert [g is None for g in got] == [e is None for e in expected], curve.run.path
        assert [g for g in got if g is not None] == pytest.approx([e for e in expected if e is not None])
    rows = {row.variant: row for row in env_view.rows}
    assert list(rows) == ["ppo", "ppo [RM reward]", BEST_OF_N_ROW]
    for name, (means, reached) in VARIANT_AT_KL.items():
        row = rows[name]
        assert row.n_runs == 2 and row.reached == reached
        assert [v is None for v in row.values] == [m is None for m in means]
        assert [v for v in row.values if v is not None] == pytest.approx(
            [m for m in means if m is not None], abs=1e-3
        )
    assert rows["ppo [RM reward]"].max_kl == pytest.approx((1.2 + 1.6) / 2)
    assert rows["ppo [RM reward]"].final_score == pytest.approx((0.74 + 0.70) / 2)


def test_best_of_n_reference_row(tmp_path):
    curve = load_best_of_n(write_best_of_n(tmp_path / "bon.json"))
    assert curve.env == ENV and curve.prompts == 200
    assert [p.kl for p in curve.points] == pytest.approx([0.0, 0.193147, 0.636294, 1.204442], abs=1e-6)
    values = curve.at(TARGETS)
    expected = [_bon_at(t) for t in TARGETS]
    assert expected[3:] == [None, None]  # beyond n=8's KL of 1.20
    assert values[:3] == pytest.approx(expected[:3]) and values[3:] == [None, None]
    assert values[0] == pytest.approx(0.70 + (0.25 - 0.193147) / (0.636294 - 0.193147) * 0.04, abs=1e-6)
    with pytest.raises(ValueError, match="config.task"):
        load_best_of_n(_json(tmp_path / "bad1.json", {"rows": [{"n": 1, "score": 0.5}]}))
    with pytest.raises(ValueError, match="row 0"):
        load_best_of_n(_json(tmp_path / "bad2.json", {"config": {"task": "format"}, "rows": [{"n": 0}]}))


def _json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------------------ the command


def _leaderboard(paths: list[Path], out: Path, *extra: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main([*map(str, paths), "--out", str(out), "--reps", REPS, "--no-progress", *extra])
    return code, buf.getvalue()


def test_cli_writes_csv_markdown_and_plot(text_runs, tmp_path):
    bon = write_best_of_n(tmp_path / "best_of_n.json")
    out = tmp_path / "out"
    code, stdout = _leaderboard([text_runs], out, "--best-of-n", str(bon))
    assert code == 0

    markdown = (out / "leaderboard.md").read_text()
    assert f"## {TITLE}" in markdown
    section = markdown.split(f"## {TITLE}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines[0] == (
        "| Variant | Runs | Max KL | Final KL | Final score | Score @ KL 0.25 | Score @ KL 0.5 | "
        "Score @ KL 1 | Score @ KL 1.5 | Score @ KL 2 |"
    )
    cells = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[1:])}
    assert cells["ppo [RM reward]"][1:] == [
        "2",
        "1.40",
        "1.40",
        "0.720",
        "0.700 (2/2)",
        "0.750 (2/2)",
        "0.790 (2/2)",
        "0.720 (1/2)",
        "— (0/2)",
    ]
    assert cells["ppo"][5:] == ["0.733 (2/2)", "0.770 (2/2)", "— (0/2)", "— (0/2)", "— (0/2)"]
    assert cells[BEST_OF_N_ROW][1] == "n = 1-8" and cells[BEST_OF_N_ROW][8:] == ["—", "—"]
    assert float(cells[BEST_OF_N_ROW][5]) == pytest.approx(_bon_at(0.25), abs=1e-3)
    assert float(cells[BEST_OF_N_ROW][7]) == pytest.approx(
        0.74 + (1.0 - 0.636294) / 0.568148 * 0.02, abs=1e-3
    )
    assert "## text/format" in markdown  # the per-environment tables are still there

    rows = list(csv.DictReader(io.StringIO((out / CSV_NAME).read_text())))
    evals = [r for r in rows if r["kind"] == "eval"]
    assert len(evals) == sum(len(c) for c in CURVES.values())
    assert {r["variant"] for r in evals} == {"ppo", "ppo [RM reward]"}
    assert all(r["rm_score"] for r in evals if r["reward"] == "rm")
    assert not any(r["rm_score"] for r in evals if r["reward"] == "oracle")
    assert len([r for r in rows if r["kind"] == "best_of_n"]) == 4
    at_kl = {(r["variant"], float(r["kl"])): r for r in rows if r["kind"] == "at_kl"}
    assert float(at_kl[("ppo [RM reward]", 1.5)]["score"]) == pytest.approx(0.72)
    assert at_kl[("ppo [RM reward]", 1.5)]["n_reached"] == "1"
    assert at_kl[("ppo [RM reward]", 2.0)]["score"] == "" and at_kl[("ppo", 1.0)]["n_reached"] == "0"
    assert float(at_kl[("best-of-n", 0.5)]["score"]) == pytest.approx(_bon_at(0.5))
    assert at_kl[("best-of-n", 1.5)]["score"] == ""
    run_at_kl = [r for r in rows if r["kind"] == "run_at_kl"]
    assert len(run_at_kl) == 4 * len(TARGETS) and sum(1 for r in run_at_kl if r["score"] == "") == 9

    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="overoptimization">' in page and 'href="#overoptimization"' in page
    marker = 'alt="gold score against KL on text/format" src="data:image/png;base64,'
    assert marker in page
    png = base64.b64decode(page.split(marker, 1)[1].split('"', 1)[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert f"<td>{BEST_OF_N_ROW}</td>" in page and "<td>0.700 (2/2)</td>" in page


def test_no_view_without_text_runs(text_runs, tmp_path):
    hopper = tmp_path / "hopper"
    for seed, final in enumerate((900.0, 1100.0)):
        write_mujoco_run(hopper / f"ppo_{seed}", "ppo", seed, final)
    collection = collect_runs([hopper], progress=False)
    assert build_overoptimization(collection) is None
    out = tmp_path / "out"
    code, stdout = _leaderboard([hopper], out)
    assert code == 0
    assert TITLE not in stdout and "Over-optimization" not in (out / "leaderboard.md").read_text()
    assert not (out / CSV_NAME).exists()
    assert 'id="overoptimization"' not in (out / "report.html").read_text(encoding="utf-8")
    # A best-of-n file without text runs: nothing drawn, and a warning says why.
    code, stdout = _leaderboard(
        [hopper], tmp_path / "out2", "--best-of-n", str(write_best_of_n(tmp_path / "b.json"))
    )
    assert code == 0 and not (tmp_path / "out2" / CSV_NAME).exists()
    assert "no text run on text/format" in (tmp_path / "out2" / "leaderboard.md").read_text()


def test_cli_refuses_bad_best_of_n_and_warns_on_greedy_runs(text_runs, tmp_path, capsys):
    assert (
        main([str(text_runs), "--out", str(tmp_path / "o"), "--best-of-n", str(tmp_path / "nope.json")]) == 2
    )
    assert "--best-of-n" in capsys.readouterr().err
    a, b = write_best_of_n(tmp_path / "a.json"), write_best_of_n(tmp_path / "b.json")
    assert (
        main([str(text_runs), "--out", str(tmp_path / "o"), "--best-of-n", str(a), "--best-of-n", str(b)])
        == 2
    )
    assert "two files for text/format" in capsys.readouterr().err
    greedy = tmp_path / "greedy"
    write_text_run(greedy / "0", "a2c", "rm", 0, [(0.3, 0.8)], deterministic=True)
    collection = collect_runs([greedy], progress=False)
    view = build_overoptimization(collection, {ENV: load_best_of_n(a)})
    assert view is not None and view.envs[ENV].rows[0].variant == "a2c [RM reward]"
    assert any("evaluated greedily" in w for w in collection.warnings)
    assert any("evaluated only at the end" in w for w in collection.warnings)
