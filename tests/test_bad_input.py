"""Issue 29's probes of careless input and of run directories describing runs that never happened there.

Every bad value is refused by ``rlarena train`` before Hydra makes a run directory: one line, exit code 2.
The ``train_main`` cases run in-process (they return before Hydra starts); the ``.hydra/`` cases run the
real command, since only Hydra's job runner writes those files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlarena.bench.cli import train_main
from rlarena.bench.results import METRICS, SUMMARY, collect_runs, read_metrics
from rlarena.bench.train import load_config, resume_training, run_training

QUIET = ["progress=false", "tensorboard=false", "eval.every_steps=0", "eval.episodes=2"]
SHORT = ["env=invertedpendulum", "total_steps=256", "algo.num_steps=64", "checkpoint.every_steps=128", *QUIET]

# (overrides, what the one-line message must say)
BAD_RUN_INPUT = [
    (["algo.num_envs=100000"], "num_envs must be >= 1 and <= 4096"),
    (
        ["algo.num_minibatches=4096"],
        "num_minibatches must be >= 1 and <= num_envs x num_steps (2048 samples)",
    ),
    (["algo.policy.log_std_init=nan"], "policy.log_std_init must be in [-20.0, 5.0]"),
    (["algo.policy.log_std_init=1e6"], "policy.log_std_init must be in [-20.0, 5.0]"),
    (["algo.adam_eps=0"], "adam_eps must be > 0"),
    (["algo=a2c", "algo.learning_rate=1e308"], "learning_rate must be > 0 and <= 1"),
    (["algo.policy.hidden_sizes=[100000,100000]"], "beyond this library's bound"),
    (["+env.kwargs.foo=1"], "env.kwargs are not accepted by Hopper-v5"),
    (["torch_threads=100000"], "torch_threads must be a positive integer and <= "),
    (["video.width=100000", "video.height=100000"], "video.width must be a positive integer and <= 4096"),
    (["total_steps=1000000000000000000"], "total_steps must be a positive integer and <= 10000000000"),
    (["total_steps=2048", "algo.num_steps=100000000"], "total_steps=2048 is less than one rollout"),
    (
        ["total_steps=100"],
        "total_steps=100 is less than one rollout (algo.num_envs x algo.num_steps = 1 x 2048",
    ),
    # a run labelled with one task that simulates another would be pooled with the first task's runs
    (
        ["env=invertedpendulum", "env.id=Hopper-v5"],
        "env.id='Hopper-v5' is not the task of env=invertedpendulum",
    ),
    (["env=invertedpendulum", "env.name=hopper"], "env.name is the name of the env config"),
    (["env.reference_score=nan"], "env.reference_score must be a finite number or null, got nan"),
    (["env.random_score=2609.3"], "env.random_score and env.reference_score are both 2609.3"),
    (["env=gym"], "env=gym runs any gymnasium task: name it with env.id=<id>"),
    (["env=gym", "env.id=NoSuchEnv-v5"], "not a registered gymnasium environment"),
    (["env=gym", "env.id=no_such_module:Env-v0"], "the module 'no_such_module' that should"),
    (["hydra.run.dir=/proc/rlarena/run"], "cannot create the run directory /proc/rlarena/run"),
    # Hydra's -r (run) flag: still a single run, still checked before Hydra starts
    (["-r", "algo.num_envs=1.5"], "Value '1.5' of type 'float' could not be converted to Integer"),
]


def _refused(argv: list[str], capsys) -> str:
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlarena train: ") and err.count("\n") == 1, err  # one line
    return err


@pytest.mark.parametrize(("overrides", "message"), BAD_RUN_INPUT, ids=[" ".join(o) for o, _ in BAD_RUN_INPUT])
def test_bad_run_input_is_one_line_before_any_directory(tmp_path, capsys, overrides, message):
    run_dir = tmp_path / "run"
    given = [] if any(o.startswith("hydra.run.dir=") for o in overrides) else [f"hydra.run.dir={run_dir}"]
    err = _refused([*given, "progress=false", *overrides], capsys)
    assert message in err, err
    assert not run_dir.exists()


def test_a_total_budget_off_the_rollout_grid_is_rounded_up_and_said(tmp_path, caplog):
    caplog.set_level("INFO", logger="rlarena")
    summary = run_training(load_config([*SHORT, "total_steps=200"]), tmp_path / "run", explicit_keys=set())
    assert summary["steps_done"] == 256
    assert (
        "total_steps=200 is not a whole number of rollouts of 64 steps: training runs 256 steps"
        in caplog.text
    )


# ---- the text environment's files, read before a run directory exists ------------------------------------


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory) -> Path:
    from rlarena.envs.text.sft import SFTConfig, train_sft

    path = tmp_path_factory.mktemp("sft") / "sft.pt"
    cfg = SFTConfig(task="format", out=str(path), steps=2, d_model=32, n_layer=1, n_head=2, eval_prompts=8)
    train_sft(cfg, log=lambda message: None)
    return path


def test_text_files_that_are_not_models_are_refused_without_suggesting_to_overwrite_them(
    tmp_path, capsys, tiny_sft
):
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("root:x:0:0:root:/root:/bin/bash\n")
    rm_folder = tmp_path / "rm"
    rm_folder.mkdir()
    (rm_folder / "config.json").write_text("{}")
    cases = [
        ([f"env.sft_checkpoint={not_a_model}"], "not a readable SFT checkpoint"),
        (
            [f"env.sft_checkpoint={tiny_sft}", "env.reward=rm", f"env.rm_checkpoint={not_a_model}"],
            "not a readable reward-model checkpoint",
        ),
        (
            [f"env.sft_checkpoint={tiny_sft}", "env.reward=rm", f"env.rm_checkpoint={rm_folder}"],
            "is a folder without reward_head.pt",
        ),
        ([f"env.hf_path={tmp_path}"], "has no config.json: not a saved Hugging Face model"),
        (
            [f"env.sft_checkpoint={tiny_sft}", "env.max_new_tokens=100000"],
            "env.max_new_tokens=100000 does not fit the model's context of 192 tokens",
        ),
    ]
    run_dir = tmp_path / "run"
    for overrides, message in cases:
        err = _refused([f"hydra.run.dir={run_dir}", "env=text/format", "progress=false", *overrides], capsys)
        assert message in err, err
        assert "out=/" not in err  # never `rlarena sft ... out=<the file named>`
        assert not run_dir.exists()


# ---- nothing mixed --------------------------------------------------------------------------------------


def test_resuming_after_the_final_checkpoint_logs_the_final_evaluation_once(tmp_path):
    """Killed after the final checkpoint, before summary.json: the resume reuses the logged evaluation."""
    run_dir = tmp_path / "run"
    first = run_training(load_config(SHORT), run_dir, explicit_keys=set())
    (run_dir / SUMMARY).unlink()
    again = resume_training(run_dir)
    evals = [(r["step"], r["eval_returns"]) for r in read_metrics(run_dir) if r["kind"] == "eval"]
    assert evals == [(256, first["eval_returns"])]
    assert again["eval_returns"] == first["eval_returns"]
    assert again["eval_return_mean"] == first["eval_return_mean"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlarena.bench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_refused_run_leaves_the_directorys_hydra_files_alone(tmp_path):
    """.hydra/ describes the run in its folder: a job refused there (a finished run of another config, a
    directory another process holds) must not rewrite it."""
    sweep = tmp_path / "sweep"
    done = _cli(
        "train", "--multirun", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=job", *SHORT, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    job = sweep / "job"
    hydra_files = {
        name: (job / ".hydra" / name).read_text() for name in ("config.yaml", "hydra.yaml", "overrides.yaml")
    }
    assert "seed: 0" in hydra_files["config.yaml"] and "- total_steps=256" in hydra_files["overrides.yaml"]
    before = {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()}

    other = _cli("train", f"hydra.run.dir={job}", *SHORT, "seed=1", cwd=tmp_path)
    assert other.returncode == 2 and "already holds a finished run of another config" in other.stderr
    code = (
        "import sys, time; from rlarena.io import exclusive_directory\n"
        f"with exclusive_directory({str(job)!r}):\n    print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = _cli(
            "train",
            "--multirun",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=job",
            *SHORT,
            "seed=2",
            cwd=tmp_path,
        )
        assert "in use by PID" in busy.stderr + busy.stdout
    finally:
        holder.kill()
        holder.wait()
    assert {name: (job / ".hydra" / name).read_text() for name in hydra_files} == hydra_files
    kept = lambda files: {k: v for k, v in files.items() if k not in ("train.log", ".lock")}  # noqa: E731
    assert kept({p.name: p.read_bytes() for p in job.iterdir() if p.is_file()}) == kept(before)


def test_the_leaderboard_never_pools_different_tasks_under_one_name(tmp_path):
    """env=gym runs share a name; runs of different ids are different rows (so are old mislabelled runs)."""
    for i, env_id in enumerate(["Swimmer-v5", "Swimmer-v5", "Reacher-v5"]):
        run = tmp_path / f"r{i}"
        run.mkdir()
        summary = {
            "algo": "ppo",
            "env": "gym",
            "env_id": env_id,
            "seed": i,
            "eval_return_mean": float(i),
            "status": "finished",
        }
        (run / SUMMARY).write_text(json.dumps(summary))
        (run / METRICS).write_text(
            json.dumps({"kind": "eval", "step": 100, "eval_return_mean": float(i)}) + "\n"
        )
    collection = collect_runs([tmp_path], progress=False)
    assert not collection.skipped, collection.skipped
    assert sorted(r.env for r in collection.runs) == ["gym:Reacher-v5", "gym:Swimmer-v5", "gym:Swimmer-v5"]
    assert any("runs of different tasks (Reacher-v5, Swimmer-v5)" in w for w in collection.warnings)
