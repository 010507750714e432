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

from rlarena.errors import ConfigError, UserError, report
from rlarena.io import atomic_write_json, exclusive_directory

from .clips import VIDEOS, write_episode
from .evaluate import load_saved_run, saved_run_parser
from .results import require_saved_run


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
