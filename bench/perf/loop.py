"""Whole-loop speed, side by side with the peers: the collector against bare env stepping, the PPO update
against stable-baselines3's ``train()``, a PPO iteration against SB3's, every algorithm's update on the shared
fast path against plain autograd, and every algorithm's training steps/s on Hopper-v5 (both paths).

    rlarena bench --loop --out loop.json      (or: python -m rlarena.bench.perf.loop)

The cases are built here once and timed both by this command (interleaved rounds, ``run.measure``: read
the ratios) and by ``bench/perf/test_perf_loop.py`` (pytest-benchmark). One torch thread throughout, as a
training job runs. SB3 is an optional peer (``pip install 'rlarena[peers]'``); without it its cases are
left out and said so.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

BATCH, EPOCHS = 64, 10  # SB3's PPO defaults (minibatches of 64, 10 epochs), used on both sides


@dataclass(frozen=True)
class Shape:
    env: str  # rlarena's env option
    env_id: str  # gymnasium id (SB3 side)
    num_envs: int
    num_steps: int

    @property
    def steps(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def label(self) -> str:
        return f"{self.env_id} {self.num_envs}x{self.num_steps}"


# The main job's shape (SB3's PPO defaults: n_steps 2048, one env) and the multi-env one.
SHAPES = {
    "hopper-1x2048": Shape("hopper", "Hopper-v5", 1, 2048),
    "halfcheetah-8x256": Shape("halfcheetah", "HalfCheetah-v5", 8, 256),
}


def build_rlarena(shape: Shape, algo: str = "ppo", seed: int = 0):
    """rlarena's env, policy and algorithm for ``shape`` (PPO: SB3's minibatch size and epochs)."""
    from rlarena.bench.train import build, load_config

    overrides = [f"algo={algo}", f"env={shape.env}", f"seed={seed}"]
    overrides += [f"algo.num_envs={shape.num_envs}", f"algo.num_steps={shape.num_steps}"]
    if algo == "ppo":
        overrides += [f"algo.num_minibatches={shape.steps // BATCH}", f"algo.update_epochs={EPOCHS}"]
    return build(load_config(overrides), explicit_keys=set())


def bare_stepper(built, shape: Shape, actions: np.ndarray, seed: int = 0) -> Callable[[], None]:
    """Step a vector env like the collector's (same class, env count and autoreset mode) ``num_steps`` times
    with precomputed ``actions`` ``[num_steps, num_envs, ...]``: the speed the simulator and gymnasium allow.
    Pass the actions the collector's policy took (``batch.info["env_actions"]``): the simulator's cost
    depends on them (on Hopper-v5, uniform random actions cost it 3-11% more per 2048 steps than the initial
    policy's clipped Gaussian ones in two measurements, and ended 95 episodes where those ended 115), so only
    the same actions time the same simulator work."""
    envs = built.env._make_vector(shape.num_envs)
    envs.reset(seed=seed)
    actions = np.ascontiguousarray(actions, dtype=envs.single_action_space.dtype)

    def run() -> None:
        for t in range(shape.num_steps):
            envs.step(actions[t])

    return run


class ConstantPolicy:
    """Zero actions, log-probs and values at no cost: the collector with it times the loop's own work."""

    def __init__(self, num_envs: int, action_shape: tuple[int, ...]) -> None:
        self.action = torch.zeros(num_envs, *action_shape)
        self.zeros = torch.zeros(num_envs)

    def act(self, obs: torch.Tensor, deterministic: bool = False):
        from rlarena.rollout import ActOutput

        return ActOutput(self.action, self.zeros, self.zeros)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0])

    def gaussian_mlp(self) -> None:
        return None


def sb3_ppo(shape: Shape, seed: int = 0):
    """SB3's PPO with the same work per iteration, its rollout buffer filled once; None without SB3."""
    try:
        import stable_baselines3 as sb3
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize
    except ImportError:
        return None
    env = VecNormalize(make_vec_env(shape.env_id, n_envs=shape.num_envs, seed=seed), gamma=0.99)
    model = sb3.PPO(
        "MlpPolicy", env, n_steps=shape.num_steps, batch_size=BATCH, n_epochs=EPOCHS, device="cpu", seed=seed
    )
    model.learn(shape.steps)  # set-up, and a full rollout buffer for train()
    return model


def machine() -> dict[str, Any]:
    from rlarena.bench.perf.run import machine_info

    return machine_info()


def shape_cases(shape: Shape, rounds: int, quick: bool) -> dict[str, dict[str, Any]]:
    """Collector vs bare stepping, update vs SB3's train(), iteration vs SB3's, for one rollout shape."""
    from rlarena.bench.perf.run import timed

    built = build_rlarena(shape)
    policy, env, algo = built.policy, built.env, built.algo
    batch = env.collect(policy, shape.num_steps)
    out: dict[str, dict[str, Any]] = {}

    # The parts: the loop with a free policy, and the policy's step alone, as many times as the rollout.
    constant = ConstantPolicy(shape.num_envs, env.action_space.shape)
    obs = torch.zeros(shape.num_envs, *env.observation_space.shape)

    def policy_alone() -> None:
        with torch.no_grad():
            for _ in range(shape.num_steps):
                policy.act(obs)

    fns = {
        "rlarena_collect": lambda: env.collect(policy, shape.num_steps),
        "bare_env": bare_stepper(built, shape, batch.info["env_actions"].numpy()),
        "collect_constant_policy": lambda: env.collect(constant, shape.num_steps),
        "policy_alone": policy_alone,
    }
    _, med = timed(fns, rounds, 0.0, quick)
    out["collector"] = {"label": shape.label, "s": med, "ratio": med["bare_env"] / med["rlarena_collect"]}

    model = sb3_ppo(shape)
    peer = {} if model is None else {"sb3_train": model.train}
    _, med = timed({"rlarena_update": lambda: algo.update(batch), **peer}, rounds, 0.0, quick)
    out["update"] = {"label": shape.label, "s": med}
    if model is not None:
        out["update"]["ratio"] = med["sb3_train"] / med["rlarena_update"]

    peer = {} if model is None else {"sb3": lambda: model.learn(shape.steps, reset_num_timesteps=False)}
    _, med = timed(
        {"rlarena": lambda: algo.update(env.collect(policy, shape.num_steps)), **peer}, rounds, 0.0, quick
    )
    out["iteration"] = {"label": shape.label, "s": med}
    if model is not None:
        out["iteration"]["ratio"] = med["sb3"] / med["rlarena"]
        model.get_env().close()
    env.close()
    return out


def algorithm_case(algo_name: str, rounds: int, quick: bool) -> dict[str, Any]:
    """Training steps/s of ``algo_name`` with its shipped defaults on Hopper-v5 (collect + learn), on the
    shared fast path and on plain autograd (``ops.fast_path(False)``), interleaved."""
    from rlarena import ops
    from rlarena.bench.perf.run import timed
    from rlarena.bench.train import build, load_config

    overrides = [f"algo={algo_name}", "env=hopper"]
    overrides += ["algo.num_steps=64"] if quick else []  # the algorithm's own num_envs (group sizes)
    built = build(load_config(overrides), explicit_keys=set())
    length = built.algo.rollout_length
    steps = length * built.env.num_envs
    iters = max(1, (64 if quick else 8192) // steps)

    def train(fast: bool) -> Callable[[], None]:
        def run() -> None:
            with ops.fast_path(fast):
                for _ in range(iters):
                    built.algo.learn(built.env.collect(built.policy, length))

        return run

    _, med = timed({"fast": train(True), "autograd": train(False)}, rounds, 0.0, quick)
    built.env.close()
    return {
        "algo": algo_name,
        "steps": iters * steps,
        "s": med["fast"],
        "steps_per_s": iters * steps / med["fast"],
        "steps_per_s_autograd": iters * steps / med["autograd"],
    }


def mujoco_algorithms() -> list[str]:
    """Every registered algorithm of rlarena's own that trains on the MuJoCo tasks with the default policy
    (from the registry: bench/ names no plugin)."""
    from rlarena.bench.train import load_config
    from rlarena.errors import ConfigError
    from rlarena.registry import get_algorithm, list_algorithms

    names = []
    for name in list_algorithms():
        cls = get_algorithm(name)
        if cls.implementation()["implementation"] != "rlarena" or cls.counterpart is not None:
            continue
        try:
            load_config([f"algo={name}", "env=hopper"])
        except (ConfigError, ValueError):  # a text-only plugin, or one that needs other settings
            continue
        names.append(name)
    return names


def fast_path_case(algo_name: str, rounds: int, quick: bool) -> dict[str, Any]:
    """One update of ``algo_name`` on the same Hopper-v5 batch with the shared fast path (the policy op, the
    fixed-order blocks, rlarena's Adam) and with plain autograd (``ops.fast_path(False)``)."""
    from rlarena import ops
    from rlarena.bench.perf.run import timed
    from rlarena.bench.train import build, load_config

    overrides = [f"algo={algo_name}", "env=hopper"]
    overrides += ["algo.num_steps=64"] if quick else []  # the algorithm's own num_envs (group sizes)
    built = build(load_config(overrides), explicit_keys=set())
    batch = built.env.collect(built.policy, built.algo.rollout_length)

    def update(fast: bool) -> Callable[[], None]:
        def run() -> None:
            with ops.fast_path(fast):
                built.algo.update(batch.replace())

        return run

    _, med = timed({"fast": update(True), "autograd": update(False)}, rounds, 0.0, quick)
    built.env.close()
    return {
        "algo": algo_name,
        "samples": batch.rewards.numel(),
        "s": med,
        "ratio": med["autograd"] / med["fast"],
    }


def loop_cases(rounds: int, quick: bool = False) -> dict[str, Any]:
    """Every case, timed in interleaved rounds; medians (s per call) and ratios."""
    report: dict[str, Any] = {"collector": [], "update": [], "iteration": []}
    for name, shape in SHAPES.items():
        if quick:
            shape = Shape(shape.env, shape.env_id, shape.num_envs, 64 // shape.num_envs)
        for kind, entry in shape_cases(shape, rounds, quick).items():
            report[kind].append({"shape": name, **entry})
    names = mujoco_algorithms()
    report["fast_path"] = [fast_path_case(a, rounds, quick) for a in names]
    report["algorithms"] = [algorithm_case(a, rounds, quick) for a in names]
    return report


def _peer_table(title: str, rows: list[dict[str, Any]], ours: str, peer: str) -> list[str]:
    lines = ["", title, "", "| shape | rlarena (s) | SB3 (s) | SB3 / rlarena |", "|---|---|---|---|"]
    for c in rows:
        s = c["s"]
        sb3 = f"{s[peer]:.3f}" if peer in s else "n/a"
        ratio = f"{c['ratio']:.2f}x" if "ratio" in c else "n/a"
        lines.append(f"| {c['label']} | {s[ours]:.3f} | {sb3} | {ratio} |")
    return lines


def format_tables(report: dict[str, Any]) -> str:
    lines = ["Collector vs bare env stepping (same vector env, precomputed actions; target >= 0.8x)", ""]
    lines += [
        "| shape | rlarena collect (s) | bare env (s) | bare / collect | free-policy loop (s) | policy (s) |",
        "|---|---|---|---|---|---|",
    ]
    for c in report["collector"]:
        s = c["s"]
        lines.append(
            f"| {c['label']} | {s['rlarena_collect']:.3f} | {s['bare_env']:.3f} | {c['ratio']:.2f}x "
            f"| {s['collect_constant_policy']:.3f} | {s['policy_alone']:.3f} |"
        )
    lines += _peer_table("PPO update on one rollout vs SB3's train() (same batch, 10 epochs of 64)",
                         report["update"], "rlarena_update", "sb3_train")  # fmt: skip
    lines += _peer_table("PPO iteration (collect + update) vs SB3 (target >= 3x)",
                         report["iteration"], "rlarena", "sb3")  # fmt: skip
    lines += [
        "",
        "One update on the same Hopper-v5 batch: shared fast path vs plain autograd (target >= 3x)",
        "",
    ]
    lines += ["| algorithm | samples | fast (s) | autograd (s) | autograd / fast |", "|---|---|---|---|---|"]
    for c in report["fast_path"]:
        s = c["s"]
        lines.append(
            f"| {c['algo']} | {c['samples']} | {s['fast']:.4f} | {s['autograd']:.4f} | {c['ratio']:.2f}x |"
        )
    lines += ["", "Training steps/s on Hopper-v5, shipped defaults (collect + update, no evaluation)", ""]
    lines += ["| algorithm | steps timed | steps/s, fast path | steps/s, autograd |", "|---|---|---|---|"]
    for c in report["algorithms"]:
        lines.append(
            f"| {c['algo']} | {c['steps']} | {c['steps_per_s']:.0f} | {c['steps_per_s_autograd']:.0f} |"
        )
    return "\n".join(lines)


def run(rounds: int, quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = {"machine": machine(), "rounds": rounds, **loop_cases(rounds, quick)}
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    report["python"] = platform.python_version()
    report["gymnasium"] = gym.__version__
    return report


def main(argv: list[str] | None = None) -> int:
    from rlarena.bench.perf.run import write_report

    parser = argparse.ArgumentParser(prog="rlarena bench --loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="loop.json", help="where to write the JSON report")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (default 5)")
    parser.add_argument("--quick", action="store_true", help="tiny rollouts, one round: a smoke run")
    args = parser.parse_args(argv)
    report = run(1 if args.quick else max(args.rounds, 1), args.quick)
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['logical_cores']} logical cores, torch {m['torch']} (1 thread)")
    write_report(report, format_tables(report), report["rounds"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
