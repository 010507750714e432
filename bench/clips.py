"""Clips of a policy: recorded episodes written as MP4 (H.264, through the ffmpeg binary of the
``imageio-ffmpeg`` wheel) and short looping GIFs, and the clip training takes at each evaluation
(``video.at_eval``). Used by ``rlarena video`` (bench/video.py) and the training loop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

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
