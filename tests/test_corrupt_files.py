"""A run directory's files as they come back damaged, foreign or from a full disk (issue 29): every case is
one message naming the file, exit code 2 from the CLI, and nothing good on disk is replaced or lost.

The runs are tiny (InvertedPendulum, a few rollouts); one finished run is trained per module and copied.
"""

from __future__ import annotations

import builtins
import errno
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlarena.bench import results
from rlarena.bench.cli import main as cli_main
from rlarena.bench.evaluate import evaluate_run
from rlarena.bench.results import CHECKPOINT, CONFIG, FAILED, METRICS, SUMMARY, read_metrics
from rlarena.bench.train import load_config, resume_training, run_training
from rlarena.bench.video import record_run
from rlarena.errors import ConfigError, DiskFullError, RunFileError

QUIET = ["progress=false", "tensorboard=false", "eval.every_steps=0", "eval.episodes=2", "torch_threads=1"]
TINY = ["env=invertedpendulum", "total_steps=256", "algo.num_steps=64", "checkpoint.every_steps=128", *QUIET]


def _train(run_dir: Path, overrides: list[str] = TINY) -> Path:
    run_training(load_config(overrides), run_dir, explicit_keys=set())
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("trained") / "run")


@pytest.fixture
def finished(trained, tmp_path) -> Path:
    """A copy of a finished run (ppo on InvertedPendulum, 256 steps, checkpoint at the end)."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture
def unfinished(finished) -> Path:
    """As if killed after its last checkpoint, before the summary: resume does the final evaluation."""
    (finished / SUMMARY).unlink()
    return finished


def _set_config(run_dir: Path, old: str, new: str) -> None:
    text = (run_dir / CONFIG).read_text()
    assert old in text
    (run_dir / CONFIG).write_text(text.replace(old, new, 1))


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}


# ---- 1: the config read back from a run directory is validated as the command line's -----------------------


@pytest.mark.parametrize("command", ["eval", "video", "resume"])
def test_a_saved_config_with_a_bad_setting_is_one_message_naming_config_yaml(finished, command, capsys):
    _set_config(finished, "torch_threads: 1", "torch_threads: -3")
    before = _files(finished)
    assert cli_main([command, str(finished)]) == 2
    err = capsys.readouterr().err
    assert f"{finished / CONFIG}: torch_threads must be a positive integer, got -3" in err, err
    assert _files(finished) == before


def test_a_saved_config_is_checked_by_every_reader(finished):
    _set_config(finished, "episodes: 2", "episodes: two")
    for read in (evaluate_run, record_run, resume_training):
        with pytest.raises(RunFileError, match=r"config.yaml: eval.episodes must be a positive integer"):
            read(finished)


# ---- 2: a finished run's summary.json ----------------------------------------------------------------------


@pytest.mark.parametrize("summary", [{}, {"eval_return_mean": "abc"}], ids=["empty", "eval_return_mean abc"])
def test_resume_of_a_finished_run_with_a_broken_summary_names_summary_json(finished, summary, capsys):
    if summary:
        summary = {**json.loads((finished / SUMMARY).read_text()), **summary}
    (finished / SUMMARY).write_text(json.dumps(summary))
    assert cli_main(["resume", str(finished)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlarena resume: ") and str(finished / SUMMARY) in err, err


# ---- 3: metrics.jsonl on resume ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["binary", "garbage line", "missing"])
def test_resume_refuses_a_damaged_metrics_log_naming_it(unfinished, how):
    metrics = unfinished / METRICS
    lines = metrics.read_bytes().splitlines(keepends=True)
    if how == "binary":
        metrics.write_bytes(b"".join(lines[:2]) + b"\x00\xff\xfe binary \x80\n" + b"".join(lines[2:]))
    elif how == "garbage line":
        metrics.write_bytes(lines[0] + b"{not json\n" + b"".join(lines[1:]))
    else:
        metrics.unlink()
    before = _files(unfinished)
    with pytest.raises(RunFileError, match=str(metrics)):
        resume_training(unfinished)
    assert _files(unfinished) == before


def test_resume_still_drops_the_torn_last_line_of_a_kill(unfinished):
    metrics = unfinished / METRICS
    metrics.write_bytes(metrics.read_bytes() + b'{"kind": "train", "st')
    resume_training(unfinished)
    records = read_metrics(unfinished)  # every line parses again
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == [64, 128, 192, 256] and (unfinished / SUMMARY).exists()


# ---- 4: a checkpoint knows which run it belongs to ---------------------------------------------------------


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory) -> Path:
    """The checkpoint of another task's run: a2c, 512 steps (more than the ppo run's 256)."""
    run_dir = tmp_path_factory.mktemp("foreign") / "run"
    _train(run_dir, ["algo=a2c", *TINY, "total_steps=512", "algo.num_steps=8"])
    return run_dir / CHECKPOINT


@pytest.mark.parametrize("state", ["finished", "unfinished"])
def test_a_checkpoint_of_another_run_is_refused_as_foreign(finished, foreign_checkpoint, state):
    if state == "unfinished":
        (finished / SUMMARY).unlink()
    shutil.copy(foreign_checkpoint, finished / CHECKPOINT)
    before = _files(finished)
    foreign = r"does not belong to this run \(checkpoint: algo a2c on invertedpendulum"
    with pytest.raises(RunFileError, match=rf"{finished / CHECKPOINT} {foreign}.*run: algo ppo on"):
        resume_training(finished)
    with pytest.raises(RunFileError, match=foreign):
        evaluate_run(finished)
    assert _files(finished) == before


def test_a_checkpoint_from_before_the_run_record_still_loads(unfinished):
    state = torch.load(unfinished / CHECKPOINT, weights_only=True)
    assert state.pop("run") == {"algo": "ppo", "env": "invertedpendulum", "env_id": "InvertedPendulum-v5"}
    torch.save(state, unfinished / CHECKPOINT)
    assert evaluate_run(unfinished)["step"] == 256
    assert resume_training(unfinished)["status"] == "finished"


def test_an_unloadable_checkpoint_message_does_not_advise_weights_only_false(unfinished, capsys):
    torch.save({"step": Path("not allowed")}, unfinished / CHECKPOINT)  # a global weights_only refuses
    assert cli_main(["resume", str(unfinished)]) == 2
    err = capsys.readouterr().err
    assert str(unfinished / CHECKPOINT) in err and "pathlib.PosixPath" in err, err
    assert "weights_only" not in err and "arbitrary code" not in err and "\x1b[" not in err, err


# ---- 5: a full disk ----------------------------------------------------------------------------------------


class _FillingFile:
    """A file on a filesystem with ``room`` bytes left: the write that overflows it writes what fits, then
    fails with ENOSPC, as write(2) does."""

    def __init__(self, file: Any, room: int) -> None:
        self._file, self._room = file, room

    def write(self, data: Any) -> int:
        if len(data) > self._room:
            self._file.write(data[: self._room])
            self._file.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _full_disk_after(monkeypatch, module: Any, starts: str, room: int, stays_full: bool = True) -> None:
    """``module``'s ``open`` of a file whose name starts with ``starts`` gets ``room`` bytes; with
    ``stays_full`` every file opened for writing after that one gets none (failed.json neither)."""
    full = []

    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        file = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 - the caller closes it
        if not any(c in mode for c in "wax"):
            return file
        if Path(path).name.startswith(starts):
            full.append(True)
            return _FillingFile(file, room)
        return _FillingFile(file, 0) if full and stays_full else file

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def _assert_disk_full_message(exc: DiskFullError, file: Path, step: int, run_dir: Path) -> None:
    expected = (
        f"no space left on device while writing {file}; the last good checkpoint is step {step}; "
        f"free space and run `rlarena resume {run_dir}`"
    )
    assert str(exc) == expected


def _no_temp_files(run_dir: Path) -> bool:
    return not list(run_dir.glob(".*.tmp"))


# torch.save's errors for a write that ran out of room (the last one: a real 300 KB tmpfs, 2026-12-08)
TORCH_FULL_DISK_ERRORS = [
    "basic_ios::clear: iostream error",
    "PytorchStreamWriter failed writing file data/0: file write failed",
    "[enforce fail at inline_container.cc:672] . unexpected pos 75712 vs 75604",
]


@pytest.mark.parametrize("error", TORCH_FULL_DISK_ERRORS, ids=["basic_ios", "writer", "unexpected pos"])
def test_a_full_disk_while_checkpointing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, error):
    from rlarena import io

    monkeypatch.setattr(io, "_no_room_left", lambda folder: True)  # torch says it in words, the room tells
    real_save = torch.save
    calls = []

    def save(obj: Any, path: Any) -> None:
        calls.append(path)
        if len(calls) < 2:
            return real_save(obj, path)
        Path(path).write_bytes(b"PK\x03\x04 half a zip")  # what a write that ran out of room leaves
        raise RuntimeError(error)

    monkeypatch.setattr(torch, "save", save)
    run_dir = tmp_path / "run"
    with pytest.raises(DiskFullError) as info:
        _train(run_dir)
    _assert_disk_full_message(info.value, run_dir / CHECKPOINT, 128, run_dir)
    assert torch.load(run_dir / CHECKPOINT, weights_only=True)["step"] == 128  # the good one, intact
    assert _no_temp_files(run_dir) and not (run_dir / SUMMARY).exists()
    assert json.loads((run_dir / FAILED).read_text())["error"] == str(info.value)
    monkeypatch.setattr(torch, "save", real_save)
    assert resume_training(run_dir)["steps_done"] == 256  # space freed: the run goes on from step 128


def test_a_failed_checkpoint_write_with_room_left_is_not_called_a_full_disk(tmp_path, monkeypatch):
    from rlarena import io

    def save(obj: Any, path: Any) -> None:
        raise RuntimeError(TORCH_FULL_DISK_ERRORS[0])

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(io, "_no_room_left", lambda folder: False)
    with pytest.raises(RuntimeError, match="iostream error"):
        io.atomic_torch_save(tmp_path / "x.pt", {})
    assert not any(tmp_path.iterdir())  # no temporary file left


def test_a_full_disk_while_logging_metrics_is_resumable(trained, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    records = (trained / METRICS).read_bytes().splitlines(keepends=True)
    room = len(records[0]) + len(records[1]) + len(records[2]) // 2  # the third record is cut short
    _full_disk_after(monkeypatch, results, METRICS, room, stays_full=False)
    with pytest.raises(DiskFullError) as info:
        _train(run_dir)
    _assert_disk_full_message(info.value, run_dir / METRICS, 128, run_dir)
    assert (run_dir / FAILED).exists()
    monkeypatch.undo()
    resume_training(run_dir)
    assert [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"] == [64, 128, 192, 256]


def test_a_full_disk_at_the_summary_replaces_nothing_and_failed_json_is_best_effort(
    unfinished, monkeypatch, capsys
):
    from rlarena import io

    before = _files(unfinished)
    _full_disk_after(monkeypatch, io, f".{SUMMARY}.", room=10)  # and failed.json cannot be written either
    assert cli_main(["resume", str(unfinished)]) == 2
    err = capsys.readouterr().err
    assert (
        f"no space left on device while writing {unfinished / SUMMARY}; the last good checkpoint is step 256"
        in err
    )
    assert "Traceback" not in err
    assert not (unfinished / SUMMARY).exists() and not (unfinished / FAILED).exists()
    assert torch.load(unfinished / CHECKPOINT, weights_only=True)["step"] == 256  # written before the summary
    assert (unfinished / CONFIG).read_bytes() == before[CONFIG] and _no_temp_files(unfinished)


def test_failed_json_that_cannot_be_written_does_not_raise(tmp_path, monkeypatch):
    from rlarena import io

    _full_disk_after(monkeypatch, io, f".{FAILED}.", room=0)
    results.write_failure(tmp_path, {"error": "x"})  # logs a warning, raises nothing
    assert not (tmp_path / FAILED).exists() and _no_temp_files(tmp_path)


# ---- 6: NaN during evaluation only -------------------------------------------------------------------------


class _NaNInEvaluation(gym.Wrapper):
    """InvertedPendulum that returns NaN (an observation element or the reward) at the 3rd step of an
    evaluation episode only: evaluation environments are reset with seeds from seed + 1_000_003 on."""

    def __init__(self, what: str) -> None:
        super().__init__(gym.make("InvertedPendulum-v5"))
        self.what, self.evaluating, self.steps = what, False, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.evaluating = seed >= 1_000_003
        self.steps = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.evaluating and self.steps == 3:
            if self.what == "observation":
                obs = obs.copy()
                obs[1] = np.nan
            else:
                reward = float("nan")
        return obs, reward, terminated, truncated, info


for _what in ("observation", "reward"):
    gym.register(f"rlarena-test/NaNEval-{_what}-v0", entry_point=_NaNInEvaluation, kwargs={"what": _what})


@pytest.mark.parametrize("what", ["observation", "reward"])
def test_nan_only_during_evaluation_fails_the_run_naming_the_source(tmp_path, what):
    run_dir = tmp_path / "run"
    with pytest.raises(FloatingPointError) as info:
        overrides = [o for o in TINY if o != "env=invertedpendulum"]
        _train(run_dir, [*overrides, "env=gym", f"env.id=rlarena-test/NaNEval-{what}-v0"])
    message = str(info.value)
    assert f"non-finite {what}" in message and "during evaluation" in message, message
    assert not (run_dir / SUMMARY).exists()
    assert f"non-finite {what}" in json.loads((run_dir / FAILED).read_text())["error"]


# ---- 8: gymnasium's module:Env-v0 ids ----------------------------------------------------------------------


def test_a_module_qualified_env_id_imports_its_module(monkeypatch):
    from custom_env_module import ENV_ID

    from rlarena.envs.gym_env import GymTask
    from rlarena.rollout import EnvSettings

    # As in a fresh process: the module not imported yet, so its environment not registered.
    monkeypatch.delitem(sys.modules, "custom_env_module")
    monkeypatch.delitem(gym.registry, ENV_ID)
    task = GymTask("gym", None)  # env=gym env.id=custom_env_module:...
    env_cfg = {"id": f"custom_env_module:{ENV_ID}"}
    task.validate(env_cfg)
    env = task(env_cfg, EnvSettings(num_envs=1))
    try:
        assert env.observation_space.shape == (4,)
    finally:
        env.close()
    with pytest.raises(ConfigError, match=r"'no_such_env_module'.*cannot be imported") as info:
        task.validate({"id": f"no_such_env_module:{ENV_ID}"})
    assert "\n" not in str(info.value)
