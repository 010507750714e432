"""`rlarena leaderboard`: collecting runs (broken ones skipped with a reason), tables, CSV, the HTML report,
and the whole path from a Hydra sweep to a leaderboard."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from rlarena.bench import stats
from rlarena.bench.leaderboard import build_leaderboard, registered_counterparts
from rlarena.bench.leaderboard_cli import main, parse_reference
from rlarena.bench.results import REUSED, collect_runs
from rlarena.bench.tables import to_markdown

EVIL = "<script>alert(1)</script>"
REPS = "200"

# env -> (random, reference); algo -> final returns of seeds 0, 1, 2
ENVS = {"hopper": (0.0, 1000.0), "walker": (10.0, 110.0)}
SCORES = {
    ("hopper", "ppo"): [900.0, 1000.0, 1100.0],
    ("hopper", "a2c"): [300.0, 500.0, 400.0],
    ("walker", "ppo"): [90.0, 100.0, 95.0],
    ("walker", "a2c"): [50.0, 60.0, 55.0],
}


def write_run(
    path: Path,
    algo: str,
    env: str,
    seed: int,
    final: float,
    *,
    scores: tuple[float | None, float | None] = (0.0, 100.0),
    config_hash: str | None = None,
    implementation: tuple[str, str] | None = None,
) -> Path:
    """A run directory as `rlarena train` writes it; the eval curve is 0 -> final/2 -> final. Without
    ``implementation`` (name, version) its summary.json is one written before it recorded whose code ran."""
    path.mkdir(parents=True)
    (path / ".hydra").mkdir()
    records = [
        {"kind": "train", "step": 500, "time_s": 1.0, "episode_return_mean": final / 3},
        {"kind": "train", "step": 1000, "time_s": 2.0, "episode_return_mean": final / 2},
    ]
    records += [
        {
            "kind": "eval",
            "step": step,
            "eval_return_mean": value,
            "eval_return_std": 1.0,
            "eval_returns": [value],
        }
        for step, value in ((0, 0.0), (500, final / 2), (1000, final))
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "algo": algo,
        "env": env,
        "env_id": f"{env.capitalize()}-v5",
        "seed": seed,
        "total_steps": 1000,
        "eval_return_mean": final,
        "eval_return_std": 1.0,
        "eval_returns": [final],
        "steps_per_sec": 1000.0 + seed,
        "wall_time_s": 1.0,
        "config_hash": config_hash or f"{algo}-{env}-{seed}",
        "status": "finished",
        "random_score": scores[0],
        "reference_score": scores[1],
    }
    if implementation is not None:
        summary["implementation"], summary["implementation_version"] = implementation
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "config.yaml").write_text(f"env:\n  name: {env}\n")
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two envs x two algorithms x three seeds in Hydra multirun layout, plus every kind of broken run."""
    root = tmp_path_factory.mktemp("runs")
    job = 0
    for (env, algo), finals in SCORES.items():
        for seed, final in enumerate(finals):
            write_run(
                root / "multirun/2025-01-01/12-00-00" / str(job), algo, env, seed, final, scores=ENVS[env]
            )
            job += 1
    broken = root / "multirun/2025-01-01/13-00-00"
    bad_json = write_run(broken / "0", "ppo", "hopper", 7, 1.0)
    (bad_json / "summary.json").write_text('{"algo": "ppo", ')
    crashed = write_run(broken / "1", "ppo", "hopper", 8, 1.0)
    (crashed / "summary.json").unlink()
    failed = write_run(broken / "2", "ppo", "hopper", 9, 1.0)
    (failed / "summary.json").unlink()
    (failed / "failed.json").write_text(json.dumps({"error": "RuntimeError: boom"}))
    bad_metrics = write_run(broken / "3", "ppo", "hopper", 10, 1.0)
    with open(bad_metrics / "metrics.jsonl", "a") as f:
        f.write('{"kind": "eval", "step": \n')
    wrong_type = write_run(broken / "4", "ppo", "hopper", 11, 1.0)
    (wrong_type / "summary.json").write_text(json.dumps({"algo": "ppo", "env": "hopper", "seed": "eleven"}))
    (broken / "5" / ".hydra").mkdir(parents=True)  # a job that never wrote anything
    not_a_dict = write_run(broken / "6", "ppo", "hopper", 12, 1.0)
    (not_a_dict / "summary.json").write_text("[1, 2]")
    # Unrelated files and hidden folders are not runs.
    (root / "multirun/2025-01-01/12-00-00/multirun.yaml").write_text("hydra: {}\n")
    (root / ".cache" / "x").mkdir(parents=True)
    (root / ".cache" / "x" / "summary.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    """`rlarena leaderboard` on the sweep, run once for the tests that read its outputs."""
    out = tmp_path_factory.mktemp("report")
    buf = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(buf):
        code = main([str(sweep), "--out", str(out), "--reps", REPS, "--no-progress"])
    return code, buf.getvalue(), out


def test_collect_finds_runs_and_explains_every_skip(sweep):
    collection = collect_runs([sweep], progress=False)
    assert len(collection.runs) == 12
    reasons = {Path(s.path).name: s.reason for s in collection.skipped}
    assert set(reasons) == {"0", "1", "2", "3", "4", "5", "6"}
    assert "summary.json: invalid JSON" in reasons["0"]
    assert "unfinished or crashed" in reasons["1"]
    assert reasons["2"] == "failed: RuntimeError: boom"
    assert "metrics.jsonl line 6: invalid JSON" in reasons["3"]
    assert "'seed' should be a int" in reasons["4"]
    assert "no summary.json" in reasons["5"]
    assert "expected a JSON object" in reasons["6"]


def test_per_env_statistics(sweep):
    lb = build_leaderboard(collect_runs([sweep], progress=False), reps=int(REPS))
    assert lb.envs == ["hopper", "walker"] and lb.algos == ["a2c", "ppo"]
    ppo, a2c = lb.rows["hopper"]  # ranked by IQM
    assert (ppo.algo, a2c.algo) == ("ppo", "a2c")
    assert ppo.seeds == [0, 1, 2] and ppo.total_steps == [1000]
    assert ppo.mean == pytest.approx(1000.0) and ppo.std == pytest.approx(100.0)
    assert ppo.iqm.value == pytest.approx(sps.trim_mean([900, 1000, 1100], 0.25))
    assert ppo.iqm.low <= ppo.iqm.value <= ppo.iqm.high
    assert ppo.normalized_iqm.value == pytest.approx(1.0)
    assert ppo.auc == pytest.approx(500.0)  # curve 0 -> f/2 -> f averages f/2
    assert ppo.final_train_return == pytest.approx(500.0)
    assert ppo.steps_per_sec == pytest.approx(1001.0)
    curve = lb.curves["hopper"]["ppo"]
    assert curve.steps.tolist() == [0, 500, 1000] and curve.mean.tolist() == pytest.approx([0, 500, 1000])


def test_across_env_statistics(sweep):
    lb = build_leaderboard(collect_runs([sweep], progress=False), reps=int(REPS))
    best = lb.aggregate[0]
    assert best.algo == "ppo" and best.n_tasks == 2 and best.n_runs == 6
    normalized = [0.9, 1.0, 1.1, 0.8, 0.9, 0.85]
    assert best.metrics["IQM"].value == pytest.approx(sps.trim_mean(normalized, 0.25))
    assert best.metrics["Mean"].value == pytest.approx(np.mean(normalized))
    p, n_tasks = lb.improvement[("ppo", "a2c")]
    assert n_tasks == 2 and (p.value, p.low, p.high) == pytest.approx((1.0, 1.0, 1.0))
    assert lb.improvement[("a2c", "ppo")][0].value == pytest.approx(0.0)
    profile, low, high = lb.profiles["ppo"]
    assert profile.shape == lb.profile_taus.shape and profile[0] == 1.0 and np.all(np.diff(profile) <= 0)


def test_main_writes_markdown_csv_and_html(report):
    code, stdout, out = report
    assert code == 0
    assert {p.name for p in out.iterdir()} == {
        "leaderboard.md",
        "leaderboard.csv",
        "aggregate.csv",
        "probability_of_improvement.csv",
        "runs.csv",
        "skipped.csv",
        "report.html",
    }
    assert stdout.strip() == (out / "leaderboard.md").read_text().strip()
    assert "| 1 | ppo | rlarena | 3 | 1000.0 ± 100.0 |" in stdout
    assert "## Skipped (7)" in stdout
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert len(rows) == 4 and {r["algo"] for r in rows} == {"ppo", "a2c"}
    hopper_ppo = next(r for r in rows if r["env"] == "hopper" and r["algo"] == "ppo")
    assert float(hopper_ppo["mean"]) == pytest.approx(1000.0) and hopper_ppo["n_seeds"] == "3"
    assert len(list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))) == 12
    assert len(list(csv.DictReader(io.StringIO((out / "skipped.csv").read_text())))) == 7
    assert not list(out.glob(".*.tmp")), "atomic writes left a temporary file"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(html_text: str) -> _Collector:
    parser = _Collector()
    parser.feed(html_text)
    parser.close()
    return parser


def test_html_report_is_self_contained(report):
    _, _, out = report
    page = _parse((out / "report.html").read_text(encoding="utf-8"))
    # learning curves for 2 envs + aggregate intervals + performance profile + probability of improvement
    assert len(page.images) == 5
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "script" not in page.tags and "link" not in page.tags  # nothing loaded from elsewhere
    assert "RuntimeError: boom" in "".join(page.text)  # skipped runs are listed with their reason


def test_user_strings_are_escaped(tmp_path):
    write_run(tmp_path / "a", EVIL, "env|<b>x</b>", 0, 50.0)
    write_run(tmp_path / "b", EVIL, "env|<b>x</b>", 1, 60.0)
    write_run(tmp_path / "c", "$x_1$", "env|<b>x</b>", 0, 40.0)  # mathtext in a plot label must not break it
    (tmp_path / "d" / ".hydra").mkdir(parents=True)
    (tmp_path / "d" / "failed.json").write_text(json.dumps({"error": f"ValueError: {EVIL}"}))
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out), "--reps", REPS, "--no-progress", "--title", EVIL]) == 0
    page_text = (out / "report.html").read_text(encoding="utf-8")
    assert EVIL not in page_text and "<b>" not in page_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_text
    page = _parse(page_text)
    assert "script" not in page.tags and "b" not in page.tags
    assert EVIL in "".join(page.text)  # shown to the reader as text
    markdown = (out / "leaderboard.md").read_text()
    assert EVIL not in markdown and "env\\|&lt;b&gt;x&lt;/b&gt;" in markdown


def test_duplicates_nulls_and_references(tmp_path):
    run = write_run(tmp_path / "sweep1" / "0", "ppo", "hopper", 0, 500.0, scores=(None, None))
    write_run(tmp_path / "sweep1" / "1", "ppo", "hopper", 1, 700.0, scores=(None, None))
    shutil.copytree(run, tmp_path / "sweep2" / "0")  # the same run copied elsewhere counts once
    collection = collect_runs([tmp_path, tmp_path / "sweep1"], progress=False)  # overlapping paths
    assert len(collection.runs) == 2
    assert [s.reason.split(" of ")[0] for s in collection.skipped] == ["duplicate"]
    lb = build_leaderboard(collection, reps=int(REPS))
    assert lb.unnormalized_envs == ["hopper"] and not lb.aggregate  # no constants: no normalized scores
    assert lb.rows["hopper"][0].normalized_iqm is None
    lb = build_leaderboard(collection, reps=int(REPS), reference=parse_reference(["hopper=0,1000"]))
    assert lb.aggregate[0].metrics["Mean"].value == pytest.approx(0.6)


def test_one_config_and_seed_on_two_code_paths_counts_twice(tmp_path):
    """Bit-identity is promised per CPU code path: the same config and seed run under the AVX2 pins is
    another measurement, not a copy (summary.json's code_path, written by every run)."""
    run = write_run(tmp_path / "native" / "0", "ppo", "hopper", 0, 500.0)
    copy = shutil.copytree(run, tmp_path / "avx2" / "0")
    for path, code_path in ((run, "rlarena AVX-512, ATen AVX512"), (copy, "rlarena AVX2+FMA, ATen AVX2")):
        summary = json.loads((Path(path) / "summary.json").read_text())
        (Path(path) / "summary.json").write_text(json.dumps({**summary, "code_path": code_path}))
    shutil.copytree(copy, tmp_path / "avx2-again" / "0")  # a copy on the same code path still counts once
    collection = collect_runs([tmp_path], progress=False)
    assert sorted(r.code_path for r in collection.runs) == [
        "rlarena AVX-512, ATen AVX512",
        "rlarena AVX2+FMA, ATen AVX2",
    ]
    assert [s.reason.split(" of ")[0] for s in collection.skipped] == ["duplicate"]


def test_reused_sweep_jobs_are_noted_not_skipped(tmp_path):
    write_run(tmp_path / "first" / "0", "ppo", "hopper", 0, 500.0)
    rerun = tmp_path / "second" / "0"
    (rerun / ".hydra").mkdir(parents=True)
    (rerun / REUSED).write_text(json.dumps({"existing": str(tmp_path / "first" / "0")}))
    collection = collect_runs([tmp_path], progress=False)
    assert len(collection.runs) == 1 and not collection.skipped
    assert collection.reused == [str(rerun.resolve())]
    markdown = to_markdown(build_leaderboard(collection, reps=int(REPS)), collection)
    assert "1 sweep job(s) reused an identical finished run" in markdown


def test_config_differences_are_flagged_and_config_fills_in_scores(tmp_path):
    for seed, lr in enumerate((3e-4, 3e-4, 1e-3)):
        run = write_run(tmp_path / str(seed), "ppo", "hopper", seed, 500.0 + seed, scores=(None, None))
        config = f"seed: {seed}\nalgo: {{name: ppo, learning_rate: {lr}}}\n"
        (run / "config.yaml").write_text(
            config + "env: {name: hopper, random_score: 0, reference_score: 1000}\n"
        )
    collection = collect_runs([tmp_path], progress=False)
    assert collection.warnings == [
        "hopper/ppo: pooled runs differ in their config (algo.learning_rate); compare like with like"
    ]
    assert {(r.random_score, r.reference_score) for r in collection.runs} == {(0.0, 1000.0)}


def test_a_key_added_later_with_a_null_default_is_not_a_config_difference(tmp_path):
    """A run written before a release added ``algo.kl_coef: null`` lacks the key: the same config."""
    for seed, extra in enumerate(("", ", kl_coef: null", ", kl_coef: null")):
        run = write_run(tmp_path / str(seed), "grpo", "hopper", seed, 500.0 + seed)
        (run / "config.yaml").write_text(
            f"seed: {seed}\nalgo: {{name: grpo{extra}}}\nenv: {{name: hopper}}\n"
        )
    assert collect_runs([tmp_path], progress=False).warnings == []
    (tmp_path / "2" / "config.yaml").write_text(
        "seed: 2\nalgo: {name: grpo, kl_coef: 0.04}\nenv: {name: hopper}\n"
    )
    assert collect_runs([tmp_path], progress=False).warnings == [
        "hopper/grpo: pooled runs differ in their config (algo.kl_coef); compare like with like"
    ]


# ------------------------------------------------------------------ return vs preference labels

# total_labels (None: plain ppo, the true reward) -> final returns of seeds 0, 1, 2 on hopper
LABEL_SCORES = {100: [200.0, 260.0, 230.0], 700: [600.0, 720.0, 690.0], None: [900.0, 1000.0, 1100.0]}
LABEL_MEANS = {100: 230.0, 700: 670.0, None: 1000.0}  # by hand


def write_preference_run(
    path: Path, env: str, seed: int, final: float, labels: int | None, inner: str = "ppo"
) -> Path:
    """A preference run: config.yaml records algo.inner and (unless None) algo.total_labels."""
    run = write_run(
        path, "preference", env, seed, final, scores=(0.0, 1000.0), config_hash=f"pref-{labels}-{env}-{seed}"
    )
    budget = "" if labels is None else f", total_labels: {labels}"
    (run / "config.yaml").write_text(
        f"seed: {seed}\nalgo: {{name: preference, inner: {inner}{budget}}}\nenv: {{name: {env}}}\n"
    )
    return run


@pytest.fixture(scope="module")
def label_sweep(tmp_path_factory) -> Path:
    """A total_labels=100,700 x seed=0,1,2 preference sweep, plain ppo (true reward) and a2c on hopper."""
    root = tmp_path_factory.mktemp("label_runs")
    for labels, finals in LABEL_SCORES.items():
        for seed, final in enumerate(finals):
            if labels is None:
                write_run(root / f"ppo_{seed}", "ppo", "hopper", seed, final, scores=(0.0, 1000.0))
            else:
                write_preference_run(root / f"pref_{labels}_{seed}", "hopper", seed, final, labels)
    for seed, final in enumerate((300.0, 500.0, 400.0)):  # not the inner algorithm: not in the view
        write_run(root / f"a2c_{seed}", "a2c", "hopper", seed, final, scores=(0.0, 1000.0))
    return root


def test_labels_view_rows(label_sweep):
    collection = collect_runs([label_sweep], progress=False)
    # The label budgets are separate experiments, not pooled seeds with differing configs.
    assert collection.warnings == []
    lb = build_leaderboard(collection, reps=int(REPS))
    assert list(lb.labels) == ["hopper"]
    rows = lb.labels["hopper"]
    assert [(r.labels, r.inner, r.algo) for r in rows] == [
        (100, "ppo", "preference-ppo (100 labels)"),
        (700, "ppo", "preference-ppo (700 labels)"),
        (None, "ppo", "ppo"),
    ]
    for row in rows:
        assert row.n_runs == 3 and row.seeds == [0, 1, 2] and row.total_steps == [1000]
        assert row.mean.value == pytest.approx(LABEL_MEANS[row.labels])
        assert row.mean.low < row.mean.value < row.mean.high  # a bootstrap CI over 3 distinct seeds
        assert row.iqm.value == pytest.approx(LABEL_MEANS[row.labels])  # 3 seeds: IQM is the mean
        assert row.std == pytest.approx(np.std(LABEL_SCORES[row.labels], ddof=1))
    # The main table ranks each budget as a variant of its own, beside the plain algorithms.
    main_rows = {row.algo: row for row in lb.rows["hopper"]}
    assert set(main_rows) == {"ppo", "a2c", "preference-ppo (100 labels)", "preference-ppo (700 labels)"}
    assert main_rows["preference-ppo (700 labels)"].mean == pytest.approx(670.0)
    assert lb.algos == ["a2c", "ppo", "preference-ppo (100 labels)", "preference-ppo (700 labels)"]


def test_labels_view_in_markdown_csv_and_html(label_sweep, tmp_path):
    out = tmp_path / "out"
    buf = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(buf):
        assert main([str(label_sweep), "--out", str(out), "--reps", REPS, "--no-progress"]) == 0
    markdown = (out / "leaderboard.md").read_text()
    section = markdown.split("## Return vs preference labels", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| Labels | Inner algorithm | Seeds | Final return mean [95% CI] |")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
    assert [c[:3] for c in cells] == [["100", "ppo", "3"], ["700", "ppo", "3"], ["true reward", "ppo", "3"]]
    assert [c[3].split(" [")[0] for c in cells] == ["230.0", "670.0", "1000.0"]

    rows = list(csv.DictReader(io.StringIO((out / "labels.csv").read_text())))
    assert [(r["labels"], r["reward"], r["n_seeds"]) for r in rows] == [
        ("100", "preferences", "3"),
        ("700", "preferences", "3"),
        ("", "true", "3"),
    ]
    assert [float(r["mean"]) for r in rows] == pytest.approx([230.0, 670.0, 1000.0])
    assert all(float(r["mean_low"]) < float(r["mean"]) < float(r["mean_high"]) for r in rows)
    runs = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    assert sorted(r["total_labels"] for r in runs if r["algo"] == "preference") == ["100"] * 3 + ["700"] * 3

    page_text = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="labels">' in page_text and "<td>true reward</td>" in page_text
    # curves (1 env) + aggregate intervals + performance profile + improvement + the labels plot
    assert len(_parse(page_text).images) == 5


def test_labels_view_orders_budgets_numerically_and_matches_env(tmp_path):
    write_preference_run(tmp_path / "a", "hopper", 0, 500.0, 1400)
    write_preference_run(tmp_path / "b", "hopper", 0, 300.0, 300)
    write_preference_run(tmp_path / "c", "hopper", 1, 100.0, None)  # no budget recorded
    write_run(tmp_path / "d", "ppo", "walker", 0, 90.0)  # true reward on another env: no reference
    collection = collect_runs([tmp_path], progress=False)
    lb = build_leaderboard(collection, reps=int(REPS))
    assert list(lb.labels) == ["hopper"]
    assert [r.labels for r in lb.labels["hopper"]] == [300, 1400]
    assert not lb.labels["hopper"][0].mean.has_ci  # one seed: no interval, not a zero-width one
    assert any("left out of the labels view" in w for w in collection.warnings)
    assert "preference" in {row.algo for row in lb.rows["hopper"]}  # still ranked, as plain 'preference'


def test_labels_view_warns_when_step_budgets_differ(tmp_path):
    write_preference_run(tmp_path / "a", "hopper", 0, 500.0, 700)
    reference = write_run(tmp_path / "b", "ppo", "hopper", 0, 900.0, scores=(0.0, 1000.0))
    summary = json.loads((reference / "summary.json").read_text())
    (reference / "summary.json").write_text(json.dumps({**summary, "total_steps": 2000}))
    collection = collect_runs([tmp_path], progress=False)
    lb = build_leaderboard(collection, reps=int(REPS))
    assert [r.labels for r in lb.labels["hopper"]] == [700, None]  # shown, but not silently
    assert collection.warnings == [
        "hopper: the labels view compares preference-ppo runs of 1000 steps with ppo (true reward) runs "
        "of 2000 steps"
    ]


def test_no_labels_view_without_preference_runs(sweep, report):
    assert build_leaderboard(collect_runs([sweep], progress=False), reps=int(REPS)).labels == {}
    _, stdout, out = report
    assert "preference labels" not in stdout
    assert not (out / "labels.csv").exists()
    assert 'id="labels"' not in (out / "report.html").read_text(encoding="utf-8")


def test_text_runs_show_their_generalization_split_score(tmp_path, report):
    for seed, (final, ood) in enumerate([(0.8, 0.5), (0.9, 0.6)]):
        run = write_run(tmp_path / f"text_{seed}", "ppo", "text/format", seed, final, scores=(0.0, 1.0))
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "eval_ood_score": ood}))
    write_run(tmp_path / "hopper_0", "ppo", "hopper", 0, 500.0)  # no generalization split: no column
    out = tmp_path / "out"
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):
        assert main([str(tmp_path), "--out", str(out), "--reps", REPS, "--no-progress"]) == 0
    markdown = (out / "leaderboard.md").read_text()

    def table(env: str) -> list[list[str]]:
        section = markdown.split(f"## {env} (", 1)[1].split("\n## ", 1)[0]
        lines = [line for line in section.splitlines() if line.startswith("| ")]
        return [[c.strip() for c in line.strip("|").split("|")] for line in lines]

    text = table("text/format")
    assert text[0][-1] == "OOD score" and text[1][-1] == "0.550"  # the mean over the two seeds
    assert "OOD score" not in table("hopper")[0]
    runs = {
        r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(io.StringIO((out / "runs.csv").read_text()))
    }
    assert [runs[name]["ood_score"] for name in ("text_0", "text_1", "hopper_0")] == ["0.5", "0.6", ""]
    assert "<th>OOD score</th>" in (out / "report.html").read_text(encoding="utf-8")
    # Without text runs the tables are as they were: no OOD column anywhere.
    _, stdout, plain = report
    assert "OOD score" not in stdout and "ood_score" not in (plain / "runs.csv").read_text().splitlines()[0]


# ------------------------------------------------------------------ implementations: rlarena vs peer

SB3 = ("stable-baselines3", "2.9.2")
# (env, algo) -> final returns of seeds 0, 1, 2; ppo's are SCORES'. sb3_ppo implements ppo (its registered
# counterpart); sb3_a2c and a2c never share a task and trpo never ran, so neither pairs.
PEER_SCORES = {
    ("hopper", "ppo"): [900.0, 1000.0, 1100.0],
    ("hopper", "sb3_ppo"): [950.0, 1050.0, 800.0],
    ("walker", "ppo"): [90.0, 100.0, 95.0],
    ("walker", "sb3_ppo"): [100.0, 80.0, 120.0],
    ("hopper", "a2c"): [300.0, 500.0, 400.0],
    ("walker", "sb3_a2c"): [50.0, 60.0, 55.0],
    ("hopper", "sb3_trpo"): [700.0, 800.0, 900.0],
}
# By hand, pairs (ppo run, sb3_ppo run) won over 9, ties half. Hopper: 900 beats 800; 1000 beats 950 and
# 800; 1100 beats all three: 6/9. Walker: 90 beats 80; 100 ties 100 and beats 80; 95 beats 80: 3.5/9.
P_HOPPER, P_WALKER = 6 / 9, 3.5 / 9
P_ACROSS = (P_HOPPER + P_WALKER) / 2  # the mean over the two tasks


@pytest.fixture(scope="module")
def peer_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("peer_runs")
    for (env, algo), finals in PEER_SCORES.items():
        peer = algo.startswith("sb3_")
        for seed, final in enumerate(finals):
            write_run(
                root / f"{algo}_{env}_s{seed}",
                algo,
                env,
                seed,
                final,
                scores=ENVS[env],
                implementation=SB3 if peer else None,  # rlarena's runs: written before the key existed
            )
    return root


def test_implementation_column_defaults_to_rlarena(peer_sweep, tmp_path):
    lb = build_leaderboard(collect_runs([peer_sweep], progress=False), reps=int(REPS))
    assert {(row.algo, row.implementation) for row in lb.rows["hopper"]} == {
        ("ppo", "rlarena"),
        ("sb3_ppo", "stable-baselines3"),
        ("a2c", "rlarena"),
        ("sb3_trpo", "stable-baselines3"),
    }
    out = tmp_path / "out"
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):
        assert main([str(peer_sweep), "--out", str(out), "--reps", REPS, "--no-progress"]) == 0
    hopper = (out / "leaderboard.md").read_text().split("## hopper (Hopper-v5)", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in hopper.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:4] == ["Rank", "Algorithm", "Implementation", "Seeds"]
    cells = {c[1]: c[2] for c in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}
    assert cells == {
        "ppo": "rlarena",
        "sb3_ppo": "stable-baselines3",
        "a2c": "rlarena",
        "sb3_trpo": "stable-baselines3",
    }
    runs = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    assert {(r["algo"], r["implementation"], r["implementation_version"]) for r in runs} == {
        ("ppo", "rlarena", ""),
        ("a2c", "rlarena", ""),
        ("sb3_ppo", *SB3),
        ("sb3_a2c", *SB3),
        ("sb3_trpo", *SB3),
    }
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert {(r["algo"], r["implementation"]) for r in rows if r["env"] == "walker"} == {
        ("ppo", "rlarena"),
        ("sb3_ppo", "stable-baselines3"),
        ("sb3_a2c", "stable-baselines3"),
    }
    assert "<th>Implementation</th>" in (out / "report.html").read_text(encoding="utf-8")


def test_rlarena_vs_peer_pairs_through_the_registry(peer_sweep):
    # sb3_ppo's registered class names ppo as its counterpart; a name nobody registered has none.
    assert registered_counterparts(["ppo", "sb3_ppo", "a2c", "no_such_algo"]) == {"sb3_ppo": "ppo"}
    lb = build_leaderboard(collect_runs([peer_sweep], progress=False), reps=int(REPS))
    assert [(r.algo, r.peer, r.env, r.n_tasks, r.algo_runs, r.peer_runs) for r in lb.versus] == [
        ("ppo", "sb3_ppo", "hopper", 1, 3, 3),
        ("ppo", "sb3_ppo", "walker", 1, 3, 3),
        ("ppo", "sb3_ppo", None, 2, 6, 6),
    ]
    for row, expected in zip(lb.versus, (P_HOPPER, P_WALKER, P_ACROSS)):
        assert row.p.value == pytest.approx(expected)
        assert 0.0 <= row.p.low < row.p.value < row.p.high <= 1.0  # a bootstrap over 3 distinct seeds a side
        assert (row.algo_implementation, row.peer_implementation, row.peer_version) == ("rlarena", *SB3)
    # The across row is the pair's entry of the probability-of-improvement matrix (one bootstrap, not two).
    assert lb.versus[-1].p == lb.improvement[("ppo", "sb3_ppo")][0]
    # The per-task interval is probability_of_improvement's over that one task, with the leaderboard's seed.
    ours, theirs = PEER_SCORES[("hopper", "ppo")], PEER_SCORES[("hopper", "sb3_ppo")]
    assert lb.versus[0].p == stats.probability_of_improvement([ours], [theirs], reps=int(REPS))
    # Explicit counterparts replace the registry's; a pair without a shared task has no row.
    lb = build_leaderboard(
        collect_runs([peer_sweep], progress=False), reps=int(REPS), counterparts={"sb3_a2c": "a2c"}
    )
    assert lb.versus == []


def test_rlarena_vs_peer_in_markdown_csv_and_html(peer_sweep, tmp_path, report):
    out = tmp_path / "out"
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):
        assert main([str(peer_sweep), "--out", str(out), "--reps", REPS, "--no-progress"]) == 0
    markdown = (out / "leaderboard.md").read_text()
    section = markdown.split("## rlarena vs peer", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines[0] == "| Algorithm | Peer | Implementations | Task | Runs | P(rlarena > peer) [95% CI] |"
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
    assert [c[:5] for c in cells] == [
        ["ppo", "sb3_ppo", "rlarena vs stable-baselines3 2.9.2", "hopper (Hopper-v5)", "3 vs 3"],
        ["ppo", "sb3_ppo", "rlarena vs stable-baselines3 2.9.2", "walker (Walker-v5)", "3 vs 3"],
        [
            "ppo",
            "sb3_ppo",
            "rlarena vs stable-baselines3 2.9.2",
            "across 2 tasks",
            "6 vs 6",
        ],
    ]
    assert [c[5].split(" [")[0] for c in cells] == ["0.667", "0.389", "0.528"]

    rows = list(csv.DictReader(io.StringIO((out / "implementations.csv").read_text())))
    assert [(r["scope"], r["env"], r["n_tasks"], r["algo"], r["peer"]) for r in rows] == [
        ("task", "hopper", "1", "ppo", "sb3_ppo"),
        ("task", "walker", "1", "ppo", "sb3_ppo"),
        ("across", "", "2", "ppo", "sb3_ppo"),
    ]
    assert [float(r["p_algo_better"]) for r in rows] == pytest.approx([P_HOPPER, P_WALKER, P_ACROSS])
    assert all(float(r["low"]) < float(r["p_algo_better"]) < float(r["high"]) for r in rows)

    page_text = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="versus">' in page_text and "<td>across 2 tasks</td>" in page_text
    # Without a peer and its counterpart: no such section or file.
    _, stdout, plain = report
    assert "rlarena vs peer" not in stdout and not (plain / "implementations.csv").exists()
    assert 'id="versus"' not in (plain / "report.html").read_text(encoding="utf-8")


def test_parse_reference(tmp_path):
    spec = tmp_path / "ref.yaml"
    spec.write_text(
        "hopper: {random_score: 1, reference_score: 2}\nant: {random_score: -5, reference_score: 5}\n"
    )
    assert parse_reference([str(spec), "ant=0,10"]) == {"hopper": (1.0, 2.0), "ant": (0.0, 10.0)}
    for bad in (["hopper=1"], ["hopper=2,2"], [str(tmp_path / "missing.yaml")]):
        with pytest.raises(ValueError):
            parse_reference(bad)


def test_nothing_to_report(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert "path does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()
    assert main([str(tmp_path), "--reference", "x=1"]) == 2


# ------------------------------------------------------------------ from a real sweep to a leaderboard


def _sweep_then_leaderboard(cli, tmp_path: Path, tiny: list[str], launcher: str) -> None:
    sweep_dir = tmp_path / "sweep"
    cli(
        "train",
        "--multirun",
        f"hydra/launcher={launcher}",
        "algo=ppo",
        "env=invertedpendulum",
        "seed=0,1",
        "tensorboard=false",
        f"hydra.sweep.dir={sweep_dir}",
        *tiny,
        cwd=tmp_path,
    )
    summaries = sorted(sweep_dir.rglob("summary.json"))
    assert len(summaries) == 2, sorted(p.relative_to(sweep_dir) for p in sweep_dir.rglob("*"))
    out = tmp_path / "leaderboard"
    proc = cli("leaderboard", str(sweep_dir), "--out", str(out), "--reps", REPS, cwd=tmp_path)
    assert "| 1 | ppo | rlarena | 2 |" in proc.stdout
    rows = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    assert sorted(int(r["seed"]) for r in rows) == [0, 1]
    assert _parse((out / "report.html").read_text(encoding="utf-8")).images


def test_joblib_sweep_then_leaderboard(cli, tmp_path, tiny_overrides):
    _sweep_then_leaderboard(cli, tmp_path, tiny_overrides, "local")


def test_submitit_local_sweep_then_leaderboard(cli, tmp_path, tiny_overrides):
    _sweep_then_leaderboard(cli, tmp_path, tiny_overrides, "local_submitit")
