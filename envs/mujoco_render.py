"""Render recorded MuJoCo states to frames and looping clips (offscreen, ``MUJOCO_GL=egl`` by default).

A segment records ``qpos ++ qvel`` per step (``info["states"]`` of the gymnasium collector); this module puts
each state back into a fresh copy of the task (``env.unwrapped.set_state``) and renders it with the task's own
camera. Clips are animated GIFs (Pillow, through imageio): every browser plays them, with no codec to install.
A segment that ended early (the episode terminated) is padded with its darkened last frame for its absorbing
steps, so the two clips a person compares last equally long.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

MAX_FPS = 30.0  # browsers slow down GIF frames shorter than 20 ms; 30 fps is smooth enough to judge motion


class SegmentRenderer:
    """One rendering environment per task id; use it from one thread (an OpenGL context belongs to one)."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        self.width = width
        self.height = height
        self._envs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _env(self, env_id: str) -> Any:
        if env_id not in self._envs:
            os.environ.setdefault("MUJOCO_GL", "egl")  # headless; must be set before MuJoCo makes a context
            import gymnasium as gym

            env = gym.make(env_id, render_mode="rgb_array", width=self.width, height=self.height)
            env.reset(seed=0)
            self._envs[env_id] = env
        return self._envs[env_id]

    def fps(self, env_id: str) -> float:
        env = self._env(env_id)
        fps = env.metadata.get("render_fps") or 1.0 / env.unwrapped.dt
        return float(fps)

    def frames(self, env_id: str, states: np.ndarray) -> np.ndarray:
        """``[L, H, W, 3]`` uint8 frames for ``states [L, nq + nv]``."""
        with self._lock:
            env = self._env(env_id)
            model = env.unwrapped.model
            nq, nv = model.nq, model.nv
            states = np.asarray(states, dtype=np.float64)
            if states.ndim != 2 or states.shape[1] != nq + nv:
                raise ValueError(f"{env_id} needs states of width nq + nv = {nq + nv}, got {states.shape}")
            out = []
            for s in states:
                env.unwrapped.set_state(s[:nq], s[nq:])
                out.append(env.render())
            return np.stack(out)

    def close(self) -> None:
        with self._lock:
            for env in self._envs.values():
                env.close()
            self._envs.clear()


def clip_stride(fps: float) -> int:
    """Keep every ``stride``-th step so a clip plays at real-time speed and at most ``MAX_FPS``."""
    return max(1, math.ceil(fps / MAX_FPS))


def write_gif(frames: np.ndarray, path: str | Path, frame_s: float, absorbing_frames: int = 0) -> Path:
    """A looping GIF showing each frame ``frame_s`` seconds, plus darkened copies of the last frame."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if absorbing_frames > 0:
        tail = (frames[-1:].astype(np.float32) * 0.35).astype(np.uint8)
        frames = np.concatenate([frames, np.repeat(tail, absorbing_frames, axis=0)])
    duration_ms = 10 * max(2, round(100 * frame_s))  # GIF delays are in hundredths of a second
    tmp = path.with_suffix(".tmp.gif")
    iio.imwrite(tmp, frames, extension=".gif", duration=duration_ms, loop=0)
    os.replace(tmp, path)  # a reader never sees half a clip
    return path


def render_segment_clip(
    renderer: SegmentRenderer, env_id: str, states: np.ndarray, path: str | Path, absorbing: int = 0
) -> Path:
    """Render a segment's states (only the frames the clip shows: software GL is slow) to a GIF."""
    fps = renderer.fps(env_id)
    stride = clip_stride(fps)
    frames = renderer.frames(env_id, np.asarray(states)[::stride])
    return write_gif(frames, path, stride / fps, math.ceil(absorbing / stride))
