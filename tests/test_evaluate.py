"""rlarena eval: a saved run evaluated again from its own files, without retraining."""

from __future__ import annotations

import json

import pytest

from rlarena.bench.cli import main as rlarena
from rlarena.bench.evaluate import evaluate_run
from rlarena.bench.train import load_config, run_training

OVERRIDES = [
    "algo=ppo",
    "env=invertedpendulum",
    "total_steps=1024",
    "algo.num_steps=256",
    "eval.episodes=3",
    "eval.every_steps=0",
    "progress=false",
    "tensorboard=false",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    summary = run_training(load_config(OVERRIDES), run_dir, explicit_keys=set())
    return run_dir, summary


def test_eval_reproduces_the_final_evaluation_and_writes_eval_json(finished_run, capsys):
    run_dir, summary = finished_run
    assert rlarena(["eval", str(run_dir)]) == 0
    out = json.loads((run_dir / "eval.json").read_text())
    assert out["eval_returns"] == summary["eval_returns"]  # same episodes, same policy, deterministic
    assert out["episodes"] == 3 and out["deterministic"] is True and out["step"] == summary["steps_done"]
    printed = capsys.readouterr().out
    assert "final evaluation" not in printed and "deterministic" in printed and "eval.json" in printed


def test_eval_with_other_settings(finished_run):
    run_dir, _ = finished_run
    out = evaluate_run(run_dir, episodes=5, deterministic=False)
    assert len(out["eval_returns"]) == 5 and out["deterministic"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (["no/such/run"], "no run directory"),
        (["{empty}"], "has no config.yaml and no checkpoint.pt; nothing to evaluate"),
        (["{run}", "--episodes", "0"], "--episodes must be a positive integer"),
    ],
)
def test_eval_refuses_bad_input_in_one_line(args, message, finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    args = [a.format(empty=tmp_path, run=run_dir) for a in args]
    assert rlarena(["eval", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlarena eval: ") and message in err and "Traceback" not in err


def test_eval_of_a_text_run_reports_the_task_score_and_samples(tmp_path):
    overrides = ["algo=ppo", "env=text/arithmetic", "env.sft_checkpoint=untrained", "env.max_new_tokens=6"]
    overrides += ["algo.num_steps=6", "algo.num_envs=4", "algo.num_minibatches=2", "total_steps=24"]
    overrides += ["eval.episodes=4", "eval.every_steps=0", "progress=false", "tensorboard=false"]
    explicit = {o.split("=")[0] for o in overrides}
    summary = run_training(load_config(overrides), tmp_path / "run", explicit_keys=explicit)
    out = evaluate_run(tmp_path / "run")
    assert out["eval_returns"] == summary["eval_returns"]
    assert "eval_score" in out and out["samples"]


def test_video_renders_the_saved_policy_to_mp4_and_gif(finished_run, capsys):
    import imageio.v2 as imageio

    run_dir, summary = finished_run
    assert rlarena(["video", str(run_dir), "--episodes", "2", "--width", "96", "--height", "64"]) == 0
    listing = json.loads((run_dir / "videos" / "video.json").read_text())
    assert [ep["episode"] for ep in listing["episodes"]] == [0, 1]
    for ep in listing["episodes"]:
        assert ep["frames"] == ep["length"] + 1  # the reset frame, then one per step
        reader = imageio.get_reader(run_dir / "videos" / f"episode_{ep['episode']}.mp4", format="FFMPEG")
        assert reader.count_frames() == ep["frames"] and reader.get_meta_data()["size"] == (96, 64)
        assert (run_dir / "videos" / f"episode_{ep['episode']}.gif").stat().st_size > 0
    # deterministic playback of a deterministic policy: the returns the final evaluation saw
    assert all(ep["return"] in summary["eval_returns"] for ep in listing["episodes"])
    assert "episode 1: return" in capsys.readouterr().out


def test_video_of_a_text_run_says_there_is_nothing_to_render(tmp_path, capsys):
    overrides = ["algo=ppo", "env=text/arithmetic", "env.sft_checkpoint=untrained", "env.max_new_tokens=6"]
    overrides += ["algo.num_steps=6", "algo.num_envs=4", "algo.num_minibatches=2", "total_steps=24"]
    overrides += ["eval.episodes=4", "eval.every_steps=0", "progress=false", "tensorboard=false"]
    run_training(load_config(overrides), tmp_path / "run", explicit_keys={o.split("=")[0] for o in overrides})
    assert rlarena(["video", str(tmp_path / "run")]) == 2
    assert "has nothing to render" in capsys.readouterr().err


def test_clips_at_each_evaluation_go_to_the_run_and_tensorboard(tmp_path):
    overrides = [o for o in OVERRIDES if not o.startswith(("eval.every_steps", "tensorboard"))]
    overrides += ["eval.every_steps=512", "video.at_eval=true", "video.width=64", "video.height=48"]
    run_training(load_config(overrides), tmp_path / "run", explicit_keys=set())
    videos = sorted(p.name for p in (tmp_path / "run" / "videos").iterdir())
    assert videos == ["step_1024.gif", "step_1024.mp4", "step_512.gif", "step_512.mp4"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("eval/video")
    assert [i.step for i in images] == [512, 1024] and images[0].width == 64 and images[0].height == 48


def test_video_settings_are_watch_only():
    from rlarena.bench.train import config_hash

    plain = load_config(OVERRIDES)
    clips = load_config([*OVERRIDES, "video.at_eval=true"])
    assert config_hash(plain) == config_hash(clips)  # a clip does not make another experiment


def test_the_html_report_embeds_the_best_runs_clip(finished_run, tmp_path):
    run_dir, _ = finished_run
    assert rlarena(["video", str(run_dir), "--width", "64", "--height", "48"]) == 0
    assert rlarena(["leaderboard", str(run_dir), "--out", str(tmp_path / "lb")]) == 0
    report = (tmp_path / "lb" / "report.html").read_text()
    assert 'src="data:image/gif;base64,' in report and "ppo: best run" in report
