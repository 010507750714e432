"""Learning from preferences on gymnasium tasks: segments of steps, an MLP ensemble, per-step rewards.

The :class:`~rlarena.preferences.PreferenceSupport` of :class:`~rlarena.envs.gym_env.GymEnvironment`. It reads
the side data this family's collector puts in ``batch.info`` (written in gym_env.py, read only here):

* ``raw_obs`` ``[T, N, obs_dim]``: observations before normalization (what a reward model should read);
* ``env_actions`` ``[T, N, ...]``: the actions as the simulator got them (clipped to the action space);
* ``terminated`` ``[T, N]``: the task ended the episode at ``t`` (not a time limit);
* ``raw_rewards`` ``[T, N]``: the true rewards (the synthetic labeler and logging only);
* ``states`` ``[T, N, qpos + qvel]``: simulator states, when ``EnvSettings.record_states`` asked for them;
* ``env_id``: the gymnasium id (a clip is rendered by setting a fresh simulator to ``states``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlarena.preferences import PreferenceSettings, PreferenceSupport, Relabeled, Segment
from rlarena.reward_ensemble import RewardModelConfig, RewardModelTrainer
from rlarena.rollout import RolloutBatch


def cut_segments(
    obs: np.ndarray,
    actions: np.ndarray,
    dones: np.ndarray,
    terminated: np.ndarray,
    length: int,
    count: int,
    generator: torch.Generator,
    true_rewards: np.ndarray | None = None,
    states: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
    absorbing: bool = True,
) -> list[Segment]:
    """Up to ``count`` random segments of ``[T, N]`` rollout arrays, each inside one episode.

    A segment is ``length`` steps, or fewer when its episode terminated inside it (the fall is part of what a
    labeler judges; with ``absorbing`` the missing steps are recorded as spent in the terminal state).
    Windows cut short by a time limit or by the end of the rollout are rejected.
    """
    T, N = dones.shape
    out: list[Segment] = []
    for _ in range(20 * count):
        if len(out) >= count:
            break
        t0 = int(torch.randint(0, T, (), generator=generator))
        n = int(torch.randint(0, N, (), generator=generator))
        hits = np.flatnonzero(dones[t0 : t0 + length, n])
        if hits.size:
            end = t0 + int(hits[0]) + 1
            ended = bool(terminated[end - 1, n])
            if not ended and end - t0 < length:
                continue  # a time limit cut the episode: the segment would look worse than it is
        elif t0 + length > T:
            continue
        else:
            end, ended = t0 + length, False
        out.append(
            Segment(
                obs[t0:end, n],
                actions[t0:end, n],
                None if true_rewards is None else true_rewards[t0:end, n],
                None if states is None else states[t0:end, n],
                ended=ended,
                absorbing=length - (end - t0) if ended and absorbing else 0,
                meta={**(meta or {}), "t0": t0, "env_index": n},
            )
        )
    return out


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class StepSegments(PreferenceSupport):
    """Segments are windows of ``segment_length`` steps inside one episode; the reward model is an MLP
    ensemble on (raw observation, action) that predicts every step's reward (Christiano et al. 2017)."""

    unit = "steps"

    def __init__(self, obs_dim: int, act_dim: int, settings: PreferenceSettings) -> None:
        self.input_dim = obs_dim + act_dim
        self.settings = settings
        self.rm_config = settings.reward_model or RewardModelConfig()

    def arrays(self, batch: RolloutBatch) -> dict[str, Any]:
        """The batch's side data as ``[T, N, ...]`` numpy arrays (see the module docstring)."""
        info = batch.info
        T, N = batch.num_steps, batch.num_envs
        obs = _numpy(info.get("raw_obs", batch.obs)).astype(np.float32).reshape(T, N, -1)
        actions = _numpy(info.get("env_actions", batch.actions)).astype(np.float32).reshape(T, N, -1)
        dones = _numpy(batch.dones) > 0.5
        if "terminated" in info:
            terminated = _numpy(info["terminated"]).astype(bool)
        else:  # the collector stores a bootstrap value only where a time limit (not the task) ended it
            boot = _numpy(batch.bootstrap_values) if batch.bootstrap_values is not None else np.zeros((T, N))
            terminated = dones & (boot == 0)
        true, states = info.get("raw_rewards"), info.get("states")
        return {
            "obs": obs,
            "actions": actions,
            "dones": dones,
            "terminated": terminated,
            "true_rewards": None if true is None else _numpy(true).astype(np.float32),
            "states": None if states is None else _numpy(states),
            "env_id": info.get("env_id"),
        }

    def candidate_pairs(
        self, batch: RolloutBatch, count: int, generator: torch.Generator
    ) -> list[tuple[Segment, Segment]]:
        a = self.arrays(batch)
        segments = cut_segments(
            a["obs"],
            a["actions"],
            a["dones"],
            a["terminated"],
            self.settings.segment_length,
            2 * count,
            generator,
            a["true_rewards"],
            a["states"],
            meta={"env_id": a["env_id"]} if a["env_id"] else None,
            absorbing=self.settings.absorbing,
        )
        return [(segments[i], segments[i + 1]) for i in range(0, len(segments) - 1, 2)]

    def make_reward_model(self, seed: int) -> RewardModelTrainer:
        return RewardModelTrainer(self.input_dim, self.rm_config, seed=seed)

    def relabel(self, batch: RolloutBatch, model: Any) -> Relabeled:
        a = self.arrays(batch)
        features = torch.from_numpy(np.concatenate([a["obs"], a["actions"]], axis=-1))
        if features.shape[-1] != self.input_dim:
            raise ValueError(f"batch features have {features.shape[-1]} dims, expected {self.input_dim}")
        step_reward = model.predict(features) if model.trained else torch.zeros(features.shape[:2])
        rewards = step_reward.double()
        gamma = self.settings.gamma
        if self.settings.absorbing and model.trained and gamma < 1:  # the terminal state's reward, ever after
            terminated = torch.from_numpy(a["terminated"]).double()
            rewards = rewards + gamma / (1.0 - gamma) * model.model.absorbing_reward() * terminated
        true = a["true_rewards"]
        return Relabeled(
            rewards=rewards,
            predicted=step_reward.reshape(-1),
            true=None if true is None else torch.from_numpy(true).reshape(-1),
        )
