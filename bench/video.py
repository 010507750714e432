"""``rlarena video RUN_DIR``: watch what a saved policy does (MuJoCo tasks, rendered headless).

The run's config and checkpoint rebuild the policy and the normalizer statistics (as ``rlarena eval``);
episodes are rendered offscreen (``MUJOCO_GL=egl`` unless set) and written as MP4 (H.264, through the ffmpeg
binary of the ``imageio-ffmpeg`` wheel) and as a looping GIF, into ``RUN_DIR/videos/``, with
``videos/video.json`` listing each episode's return, length and files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rlarena.errors import ConfigError, UserError, report
from rlarena.io import atomic_write_json, exclusive_directory

from .evaluate import load_saved_run, saved_run_parser
from .results import require_saved_run

VIDEOS = "videos"
GIF_FRAMES = 150  # a GIF is a short clip (every other frame, at most this many): the MP4 has the episode


def write_mp4(frames: np.ndarray, path: Path, fps: float) -> Path:
    import imageio.v2 as imageio

    tmp = path.with_name(f".{path.name}.tmp.mp4")
    imageio.mimwrite(tmp, list(frames), fps=fps, format="FFMPEG", macro_block_size=1)
    os.replace(tmp, path)  # a reader never sees half a video
    return path


def write_episode(episode: dict[str, Any], folder: Path, name: str, gif: bool = True) -> dict[str, Any]:
    """One recorded episode as ``<name>.mp4`` and a short ``<name>.gif`` (GIF_FRAMES) in ``folder``; its
    return, length, frame count, fps and file names."""
    from rlarena.envs.mujoco_render import write_gif

    folder.mkdir(parents=True, exist_ok=True)
    files = [write_mp4(episode["frames"], folder / f"{name}.mp4", episode["fps"]).name]
    if gif:
        clip = episode["frames"][::2][:GIF_FRAMES]
        files.append(write_gif(clip, folder / f"{name}.gif", 2 / episode["fps"]).name)
    return {"return": episode["return"], "length": episode["length"], "frames": len(episode["frames"]),
            "fps": episode["fps"], "files": files}  # fmt: skip


def clip_at_eval(env: Any, policy: Any, video_cfg: Any, run: Any, step: int) -> None:
    """``video.at_eval``: one deterministic episode, to ``videos/step_<step>.mp4`` and ``.gif`` and, as a
    GIF, to TensorBoard (``eval/video``). Environments with nothing to render are skipped quietly."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    width, height = int(video_cfg.width), int(video_cfg.height)
    recorded = env.record_episodes(policy, 1, width, height, deterministic=True)
    if not recorded:
        return
    info = write_episode(recorded[0], run.path / VIDEOS, f"step_{step}")
    run.log_gif("eval/video", step, (run.path / VIDEOS / info["files"][1]).read_bytes(), width, height)


def record_run(
    run_dir: str | os.PathLike,
    episodes: int = 1,
    width: int = 480,
    height: int = 360,
    deterministic: bool = True,
    gif: bool = True,
) -> dict[str, Any]:
    """Render ``episodes`` episodes of the saved policy; returns what ``videos/video.json`` holds."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless; must be set before MuJoCo makes a context
    run_dir = require_saved_run(run_dir, "rlarena video", "nothing to render")
    for name, value in (("--episodes", episodes), ("--width", width), ("--height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    with exclusive_directory(run_dir):
        cfg, state, built = load_saved_run(run_dir)
        try:
            recorded = built.env.record_episodes(built.policy, episodes, width, height, deterministic)
        finally:
            built.env.close()
        if recorded is None:
            raise ConfigError(
                f"rlarena video: env {cfg.env.name!r} has nothing to render (MuJoCo tasks do); "
                "`rlarena eval` shows a text run's sample responses"
            )
        folder = run_dir / VIDEOS
        for old in folder.glob("episode_*.*"):  # an earlier call's episodes: video.json lists these only
            old.unlink()
        listing = [
            {"episode": i, **write_episode(ep, folder, f"episode_{i}", gif)} for i, ep in enumerate(recorded)
        ]
        out = {"run_dir": str(run_dir), "step": int(state["step"]), "width": width, "height": height,
               "deterministic": deterministic, "episodes": listing}  # fmt: skip
        atomic_write_json(folder / "video.json", out)
    return out


def main(argv: list[str]) -> int:
    parser = saved_run_parser(
        "rlarena video", "Render episodes of a saved run's policy (MuJoCo tasks, headless) to MP4 and GIF."
    )
    parser.add_argument("--episodes", type=int, default=1, help="episodes to render (default 1)")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--stochastic", action="store_true", help="sampled actions (default: the mean)")
    parser.add_argument("--no-gif", action="store_true", help="MP4 only")
    args = parser.parse_args(argv)
    try:
        out = record_run(
            args.run_dir, args.episodes, args.width, args.height, not args.stochastic, not args.no_gif
        )
    except UserError as exc:
        return report("rlarena video", exc)
    for ep in out["episodes"]:
        files = ", ".join(ep["files"])
        print(f"episode {ep['episode']}: return {ep['return']:.1f}, {ep['length']} steps -> {files}")
    print(f"wrote {Path(args.run_dir) / VIDEOS}")
    return 0
