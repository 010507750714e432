"""Faults and bad input, as a careless or unlucky user meets them: nothing lost, nothing mixed, one message.

Each test names the break it guards against (found by probing the CLI); the labeling page's malformed
requests are in tests/test_label_server_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlarena.bench.results import CHECKPOINT, FAILED, METRICS, SUMMARY, read_metrics
from rlarena.bench.train import load_config, resume_training, run_training
from rlarena.errors import ConfigError, RunDirectoryInUse, RunFileError
from rlarena.io import atomic_write_json, exclusive_directory

QUIET = ["progress=false", "tensorboard=false", "eval.every_steps=0", "eval.episodes=2"]
SHORT = ["env=invertedpendulum", "total_steps=640", "algo.num_steps=64", "checkpoint.every_steps=256", *QUIET]
TIMING = ("steps_per_sec", "time_s")


def _train_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


# ---- bad overrides: one paragraph, exit code 2, nothing created --------------------------------------------

BAD_OVERRIDES = [
    ("seed=-1", "seed must be an integer >= 0"),
    ("seed=abc", "seed must be an integer >= 0"),
    ("device=cuda:0" if not torch.cuda.is_available() else "device=cuda:99", "device="),
    ("device=warp-drive", "is not a torch device"),
    ("env.id=NoSuchEnv-v5", "env.id='NoSuchEnv-v5' is not the task of env=hopper"),
    ("eval.episodes=abc", "eval.episodes must be a positive integer"),
    ("torch_threads=0", "torch_threads must be a positive integer"),
    ("algo.vf_coef=inf", "vf_coef must be a finite number >= 0"),
    ("algo.learning_rate=nan", "learning_rate must be > 0"),
    ("algo.num_envs=two", "algo.num_envs=two: Value 'two' of type 'str' could not be converted"),
    ("algo=nope", "Available options in 'algo'"),
    ("algo.nope=1", "Could not override 'algo.nope'"),
]


@pytest.mark.parametrize(("override", "message"), BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override_is_one_message_and_leaves_no_directory(cli, tmp_path, override, message):
    run_dir = tmp_path / "run"
    proc = cli("train", f"hydra.run.dir={run_dir}", "progress=false", override, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and proc.stderr.startswith("rlarena train: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not run_dir.exists(), "a run directory was created for a refused config"


# ---- one writer per run directory ------------------------------------------------------------------------


@contextmanager
def _held_by_another_process(run_dir: Path) -> Iterator[int]:
    """Another process holds the run directory's lock for the ``with`` block; yields its PID."""
    code = (
        "import time; from rlarena.io import exclusive_directory\n"
        f"with exclusive_directory({str(run_dir)!r}):\n    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_second_writer_fails_fast_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    with _held_by_another_process(run_dir) as pid:
        with pytest.raises(RunDirectoryInUse, match=f"in use by PID {pid}"):
            run_training(load_config(SHORT), run_dir, explicit_keys=set())
        assert not (run_dir / METRICS).exists()
    # The lock dies with its holder: the directory is usable again at once.
    with exclusive_directory(run_dir):
        pass


def test_resume_racing_a_live_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_training(load_config(SHORT), run_dir, explicit_keys=set())
    before = (run_dir / METRICS).read_text()
    with _held_by_another_process(run_dir), pytest.raises(RunDirectoryInUse):
        resume_training(run_dir, total_steps=768)
    assert (run_dir / METRICS).read_text() == before


# ---- re-running into a used directory -----------------------------------------------------------------


def test_a_finished_run_is_neither_retrained_nor_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_training(load_config(SHORT), run_dir, explicit_keys=set())
    before = {name: (run_dir / name).read_bytes() for name in (METRICS, SUMMARY)}
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run_training(load_config(SHORT), run_dir, explicit_keys=set())
    with pytest.raises(ConfigError, match="finished run of another config"):
        run_training(load_config([*SHORT, "seed=1"]), run_dir, explicit_keys=set())
    assert before == {name: (run_dir / name).read_bytes() for name in (METRICS, SUMMARY)}
    # force=true replaces it, and the new metrics are not appended to the old ones
    run_training(load_config([*SHORT, "seed=1", "force=true"]), run_dir, explicit_keys=set())
    assert _train_steps(run_dir) == [64 * i for i in range(1, 11)]
    assert json.loads((run_dir / SUMMARY).read_text())["seed"] == 1


def test_an_unfinished_attempt_is_replaced_not_appended_to(tmp_path):
    run_dir = tmp_path / "run"
    run_training(load_config(SHORT), run_dir, explicit_keys=set())
    (run_dir / SUMMARY).unlink()  # as if killed just before the end
    run_training(load_config(SHORT), run_dir, explicit_keys=set())
    assert _train_steps(run_dir) == [64 * i for i in range(1, 11)]


def test_sweep_rerun_in_place_skips_finished_jobs_and_redoes_the_broken_one(cli, tmp_path, tiny_overrides):
    sweep_dir = tmp_path / "elsewhere" / "sweep"  # not under outputs_root
    args = [
        "train",
        "--multirun",
        "algo=ppo",
        "env=invertedpendulum",
        "seed=0,1",
        "tensorboard=false",
        f"hydra.sweep.dir={sweep_dir}",
        *tiny_overrides,
    ]
    cli(*args, cwd=tmp_path)
    jobs = sorted(p.parent for p in sweep_dir.rglob(SUMMARY))
    assert len(jobs) == 2
    kept = (jobs[0] / METRICS).read_bytes()
    # Job 0's summary as an older release wrote it, hashing a key that is non-semantic now: the hash is
    # recomputed from its config.yaml, so the run is still recognised as this config's.
    summary = json.loads((jobs[0] / SUMMARY).read_text())
    (jobs[0] / SUMMARY).write_text(json.dumps({**summary, "config_hash": "hashed-by-older-rules"}))
    (jobs[1] / SUMMARY).unlink()  # job 1 "was killed" after logging its metrics
    (jobs[1] / CHECKPOINT).unlink()
    proc = cli(*args, cwd=tmp_path)
    assert "already finished" in proc.stdout + proc.stderr
    assert (jobs[0] / METRICS).read_bytes() == kept, "a finished job was retrained"
    steps = _train_steps(jobs[1])
    assert (jobs[1] / SUMMARY).exists() and len(steps) == len(set(steps)), steps
    # Other seeds into the same folders: refused (finished runs of another config), and the refusal writes
    # nothing into the finished runs' folders.
    other = [a.replace("seed=0,1", "seed=7,8") for a in args]
    other.append("hydra.sweep.subdir=${hydra.job.num}_ppo_invertedpendulum_s${hydra.job.num}")  # same folders
    proc = cli(*other, cwd=tmp_path, check=False)
    assert "finished run of another config" in proc.stdout + proc.stderr
    assert not any((job / FAILED).exists() for job in jobs)


# ---- resume: validate and restore before touching anything ------------------------------------------------


def test_resume_that_cannot_restore_keeps_the_metrics(tmp_path):
    run_dir = tmp_path / "run"
    run_training(load_config(SHORT), run_dir, explicit_keys=set())
    (run_dir / SUMMARY).unlink()
    state = torch.load(run_dir / CHECKPOINT, weights_only=True)
    state["step"], state["iteration"] = 256, 4
    state["policy"] = {k: torch.zeros(3) for k in state["policy"]}  # loads, but does not fit the policy
    torch.save(state, run_dir / CHECKPOINT)
    before = (run_dir / METRICS).read_text()
    with pytest.raises(RunFileError, match="checkpoint.pt: does not fit"):
        resume_training(run_dir)
    assert (run_dir / METRICS).read_text() == before


def _corrupt(run_dir: Path, name: str, how: str) -> None:
    path = run_dir / name
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbled":
        path.write_bytes(b"\x00garbage\xff" * 50)
    elif how == "foreign":
        path.write_text("[1, 2, 3]\n" if name != CHECKPOINT else "")
        if name == CHECKPOINT:
            torch.save({"weights": torch.ones(2)}, path)


@pytest.mark.parametrize(
    ("name", "how"),
    [
        (CHECKPOINT, "truncated"),
        (CHECKPOINT, "garbled"),
        (CHECKPOINT, "foreign"),
        ("config.yaml", "garbled"),
        ("config.yaml", "foreign"),
        (SUMMARY, "garbled"),
    ],
)
def test_corrupt_run_file_on_resume_is_one_message_naming_it(cli, tmp_path, name, how):
    run_dir = tmp_path / "run"
    run_training(load_config(SHORT), run_dir, explicit_keys=set())
    if name != SUMMARY:
        (run_dir / SUMMARY).unlink()  # unfinished, so resume reads the checkpoint and config
    _corrupt(run_dir, name, how)
    before = (run_dir / METRICS).read_text()
    proc = cli("resume", str(run_dir), cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert name in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (run_dir / METRICS).read_text() == before


# ---- temp files and file modes -----------------------------------------------------------------------------


def test_stale_temp_files_are_cleaned_and_results_are_group_readable(tmp_path):
    run_dir = tmp_path / "run"
    run_training(load_config(SHORT), run_dir, explicit_keys=set())
    (run_dir / SUMMARY).unlink()
    stale = run_dir / ".checkpoint.pt.k1ll3d.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"half a checkpoint")
    resume_training(run_dir)
    assert not stale.exists()
    umask = os.umask(0)
    os.umask(umask)
    for name in (SUMMARY, CHECKPOINT, "config.yaml"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# ---- non-finite values: named where the simulator produced them ----------------------------------------


class _NaNAfter(gym.Wrapper):
    """InvertedPendulum whose second instance returns a NaN observation element at its 5th step."""

    instances = 0

    def __init__(self) -> None:
        super().__init__(gym.make("InvertedPendulum-v5"))
        self.index = _NaNAfter.instances
        _NaNAfter.instances += 1
        self.steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.index % 2 == 1 and self.steps == 5:
            obs = obs.copy()
            obs[2] = np.nan
        return obs, reward, terminated, truncated, info


gym.register("rlarena-test/NaNPendulum-v0", entry_point=_NaNAfter)


def test_non_finite_observation_is_named_at_its_source_and_the_run_records_failure(tmp_path):
    _NaNAfter.instances = 0
    run_dir = tmp_path / "run"
    overrides = [*SHORT, "env=gym", "env.id=rlarena-test/NaNPendulum-v0", "algo.num_envs=2"]
    overrides.remove("env=invertedpendulum")
    with pytest.raises(FloatingPointError) as info:
        run_training(load_config(overrides), run_dir, explicit_keys={"algo.num_envs"})
    message = str(info.value)
    assert "non-finite observation from sub-environment 1 at global step 10" in message, message
    assert "element 2" in message
    failed = json.loads((run_dir / "failed.json").read_text())
    assert "non-finite observation" in failed["error"]


# ---- kill -9 and exact resume ----------------------------------------------------------------------------

EXACT = [
    "algo=ppo",
    "env=hopper",
    "total_steps=6144",
    "algo.num_steps=512",
    "algo.num_minibatches=4",
    "algo.update_epochs=2",
    "checkpoint.every_steps=1024",
    *QUIET,
]


def _comparable(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run_dir)]


def _weights(run_dir: Path) -> list[torch.Tensor]:
    return list(torch.load(run_dir / CHECKPOINT, weights_only=True)["policy"].values())


def test_killed_run_resumes_bit_identically(tmp_path):
    """kill -9 at a random step after a checkpoint, then `rlarena resume`: the metrics and the final
    weights equal an uninterrupted run's (the simulators are restored mid-episode)."""
    whole = tmp_path / "whole"
    run_training(load_config(EXACT), whole, explicit_keys=set())

    killed = tmp_path / "killed"
    rng = np.random.default_rng(int(time.time()))
    kill_after = int(rng.choice([1536, 2048, 2560, 3072, 3584]))  # train steps logged past a checkpoint
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlarena.bench.cli", "train", f"hydra.run.dir={killed}", *EXACT],
        cwd=tmp_path,
        env=_cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (killed / METRICS).exists() and any(s >= kill_after for s in _train_steps(killed)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / SUMMARY).exists(), "the run finished before it could be killed"

    summary = resume_training(killed)
    assert summary["resumed_exactly"] is True
    assert _comparable(killed) == _comparable(whole), f"killed after step {kill_after}"
    assert all(torch.equal(a, b) for a, b in zip(_weights(killed), _weights(whole)))
    whole_summary = json.loads((whole / SUMMARY).read_text())
    assert summary["eval_returns"] == whole_summary["eval_returns"]


def test_atomic_json_write_leaves_only_the_target(tmp_path):
    # The temp file of an atomic write is renamed over the target: nothing else is left in the folder.
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [target]


def test_a_finished_run_of_another_cpu_code_path_is_not_taken_for_this_one(tmp_path):
    """The same config on another code path (e.g. RLARENA_CPU_ISA=avx2) computes other numbers: a sweep does
    not skip it as already done elsewhere under outputs_root, and the finished run's own folder is refused
    with a message, not silently reused or overwritten."""
    from rlarena import ops
    from rlarena.bench.results import find_finished_run
    from rlarena.bench.train import _hydra_job

    root = tmp_path / "outputs"
    first = root / "native"
    run_training(load_config(SHORT), first, explicit_keys=set())
    summary = json.loads((first / SUMMARY).read_text())
    assert summary["code_path"] == ops.code_path()
    cfg_hash = summary["config_hash"]
    assert find_finished_run(root, cfg_hash, code_path=ops.code_path()) == first
    (first / SUMMARY).write_text(json.dumps({**summary, "code_path": "another CPU"}))
    kept = (first / METRICS).read_bytes()
    assert find_finished_run(root, cfg_hash, code_path=ops.code_path()) is None
    assert find_finished_run(root, cfg_hash, code_path="another CPU") == first
    assert find_finished_run(root, cfg_hash) == first  # no code path asked: any

    with pytest.raises(ConfigError, match="finished on another CPU code path"):
        _hydra_job(load_config(SHORT), first, root)
    assert (first / METRICS).read_bytes() == kept
    second = root / "here"
    result = _hydra_job(load_config(SHORT), second, root)
    assert result["status"] == "finished" and (second / SUMMARY).exists()
    assert find_finished_run(root, cfg_hash, code_path=ops.code_path()) == second
