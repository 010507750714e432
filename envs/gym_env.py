"""Gymnasium vector environments with the shared rollout collector.

This is the one rollout loop every algorithm uses on gymnasium tasks: it steps ``N`` environments with a
policy, normalizes observations and rewards (running statistics, as SB3's VecNormalize and CleanRL's
wrappers), records time-limit truncations for bootstrapping, and returns a :class:`RolloutBatch`.

Two collection modes:

* **Flat** (the default): the ``N`` sub-environments run on across rollouts with automatic resets; every step
  is a sample (``layout="flat"``); an episode may span two rollouts.
* **Grouped episodes** (``EnvSettings.grouped_episodes``, asked for by RLOO and GRPO, which compare the
  returns of several episodes from one start state): with ``k = EnvSettings.responses_per_prompt`` the ``N``
  sub-environments form ``N / k`` groups of ``k`` consecutive columns. At the start of every ``collect`` the
  ``k`` sub-environments of a group are reset with one seed (drawn from ``(settings.seed, collect index)``;
  a new one per group and per collect), so they start from the same state and differ only by the actions
  sampled. Each column then runs exactly one episode, up to ``num_steps`` steps: an episode still running
  at the last step is cut there and counts as truncated (``dones = 1``, bootstrap value stored, not reported
  as an episode). The batch has ``layout="sequence"``, like the text environment's: ``[T, N]`` with
  ``T = num_steps``, ``mask`` True on real steps, ``dones = 1`` from each column's last real step on,
  ``last_value = 0``. Observations are normalized as in the flat mode (the running statistics are updated
  with real steps only); with ``normalize_rewards`` each reward is divided by the running std of the
  discounted return (each column's discounted return starts at 0 at its reset; updated with real steps
  only) and clipped, as in the flat mode. ``info["episode_returns"]`` lists the raw (unnormalized) returns of
  the episodes that ended by themselves (termination or the task's time limit), in column order;
  ``info["raw_rewards"]`` are zero on padding.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlarena import ops
from rlarena.errors import ConfigError
from rlarena.normalize import RunningMeanStd
from rlarena.preferences import PreferenceSettings
from rlarena.rollout import Environment, EnvSettings, Policy, RolloutBatch

from .gym_preferences import StepSegments

OBS_CLIP = 10.0
REWARD_CLIP = 10.0


_MUJOCO_WARNINGS_SEEN: set[str] | None = None


def _show_each_mujoco_warning_once() -> None:
    """Route MuJoCo's compiler warnings through a handler that prints each distinct one once per process.

    MuJoCo 4 warns that gymnasium's HalfCheetah model uses the deprecated ``settotalmass`` attribute every
    time the model is compiled: once per sub-environment, evaluation env and bench case, dozens of identical
    lines around the progress output. Installed when the first gymnasium environment is made."""
    global _MUJOCO_WARNINGS_SEEN
    if _MUJOCO_WARNINGS_SEEN is not None:
        return
    try:
        import mujoco
    except ImportError:  # classic-control tasks only
        return
    _MUJOCO_WARNINGS_SEEN = set()

    def show_once(message: str) -> None:
        if message not in _MUJOCO_WARNINGS_SEEN:
            _MUJOCO_WARNINGS_SEEN.add(message)
            print(f"MuJoCo warning (shown once): {message}", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(show_once)


def _clip(x: np.ndarray, bound: float) -> np.ndarray:
    """``np.clip(x, -bound, bound)`` (same values, NaN included) without np.clip's Python wrapper, which
    costs more than the clipping itself on the collector's small arrays."""
    return np.minimum(np.maximum(x, -bound), bound)


class GymEnvironment(Environment):
    def __init__(
        self,
        env_id: str,
        settings: EnvSettings,
        *,
        name: str | None = None,
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.env_id = env_id
        self.name = name or env_id
        self.settings = settings
        self.num_envs = settings.num_envs
        self.device = torch.device(settings.device)
        self._env_kwargs = dict(env_kwargs or {})
        self._max_episode_steps = max_episode_steps
        self.envs = self._make_vector(self.num_envs)
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        obs_shape = self.observation_space.shape
        self.obs_rms = RunningMeanStd(obs_shape) if settings.normalize_observations else None
        self.return_rms = RunningMeanStd(()) if settings.normalize_rewards else None
        self._discounted_return = np.zeros(self.num_envs)
        self._episode_return = np.zeros(self.num_envs)
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self._steps_done = 0  # transitions collected (all sub-environments): fault messages name the step
        # Grouped episodes (RLOO, GRPO): k sub-environments per start state, one whole episode per column.
        self.grouped = settings.grouped_episodes
        self.group_size = settings.responses_per_prompt
        if self.grouped and (self.group_size < 1 or self.num_envs % self.group_size):
            raise ConfigError(
                f"{self.group_size} episodes per group do not divide {self.num_envs} environments "
                "(algo.num_envs); choose a multiple"
            )
        self._group_collects = 0  # grouped collects so far: the reset seeds are drawn from it
        self._obs, _ = self.envs.reset(seed=settings.seed)
        # MuJoCo tasks expose their simulator data; recording it lets clips of segments be rendered later.
        self._sim_data = [getattr(e.unwrapped, "data", None) for e in self.envs.envs]
        has_state = all(d is not None and hasattr(d, "qpos") for d in self._sim_data)
        self._state_size = int(self._sim_data[0].qpos.size + self._sim_data[0].qvel.size) if has_state else 0
        self.action_space.seed(settings.seed)

    def _make_vector(self, n: int) -> gym.vector.SyncVectorEnv:
        _show_each_mujoco_warning_once()

        def make() -> gym.Env:
            kwargs = dict(self._env_kwargs)
            if self._max_episode_steps is not None:
                kwargs["max_episode_steps"] = self._max_episode_steps
            return gym.make(self.env_id, **kwargs)

        # SAME_STEP: the step that ends an episode returns the reset observation and keeps the final one in
        # info, so no step of the rollout is wasted on a dummy transition.
        return gym.vector.SyncVectorEnv([make] * n, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

    # ---- normalization --------------------------------------------------------------------------------

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_rms is None:
            return obs.astype(np.float32)
        return _clip((obs - self.obs_rms.mean) / self.obs_rms.std, OBS_CLIP).astype(np.float32)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    def _env_action(self, action: torch.Tensor) -> np.ndarray:
        a = action.cpu().numpy()
        if self.continuous:  # the policy's Gaussian is unbounded; the simulator gets the clipped action
            a = np.clip(a, self.action_space.low, self.action_space.high)
        return a

    # ---- the collector --------------------------------------------------------------------------------

    def _raise_non_finite(
        self, obs: np.ndarray, reward: np.ndarray, t: int, what: str = "observation"
    ) -> None:
        """Name the first non-finite value where the simulator produced it: field, sub-environment and the
        global step (transitions since the start of training), before normalization can spread it."""
        for i in range(self.num_envs):
            step = self._steps_done + t * self.num_envs + i + 1
            bad = np.flatnonzero(~np.isfinite(np.asarray(obs[i], dtype=np.float64)))
            if bad.size:
                raise FloatingPointError(
                    f"{self.env_id}: non-finite {what} from sub-environment {i} at global step {step}: "
                    f"element {int(bad[0])} is {obs[i][bad[0]]}"
                )
            if not np.isfinite(reward[i]):
                raise FloatingPointError(
                    f"{self.env_id}: non-finite reward {reward[i]} from sub-environment {i} "
                    f"at global step {step}"
                )

    def _raise_non_finite_in_evaluation(
        self, obs: np.ndarray, reward: np.ndarray, ep_len: np.ndarray
    ) -> None:
        """As ``_raise_non_finite``, for the evaluation environments: a NaN there fails the run as one in
        training does, instead of a finished run with a null score."""
        for i in range(len(obs)):
            where = f"during evaluation, in evaluation environment {i} at its episode's step {ep_len[i] + 1}"
            bad = np.flatnonzero(~np.isfinite(np.asarray(obs[i], dtype=np.float64)))
            if bad.size:
                value = obs[i][bad[0]]
                raise FloatingPointError(
                    f"{self.env_id}: non-finite observation {where}: element {int(bad[0])} is {value}"
                )
            if not np.isfinite(reward[i]):
                raise FloatingPointError(f"{self.env_id}: non-finite reward {reward[i]} {where}")

    @torch.no_grad()
    def collect(self, policy: Policy, num_steps: int) -> RolloutBatch:
        """Step the ``N`` environments ``num_steps`` times with ``policy``.

        The per-step loop is kept lean (the simulator step is ~20-150 us, so Python and torch overhead
        around it decides the speed): every record goes into a buffer allocated once per rollout, the policy
        reads its observation as a zero-copy view of the observation buffer, its outputs are copied into
        numpy buffers, and simulator states are recorded only when ``settings.record_states`` asks for
        them. The arithmetic is exactly that of the straightforward loop (the determinism tests pin it).
        With ``settings.grouped_episodes`` it collects grouped whole episodes instead (module docstring).
        """
        if self.grouped:
            return self._collect_groups(policy, num_steps)
        T, N = num_steps, self.num_envs
        obs_shape = self.observation_space.shape
        obs_buf = torch.zeros((T, N, *obs_shape), dtype=torch.float32)
        raw_obs_buf = torch.zeros((T, N, *obs_shape), dtype=torch.float32)
        logp_buf = torch.zeros((T, N), dtype=torch.float32)
        value_buf = torch.zeros((T, N), dtype=torch.float32)
        rewards = torch.zeros((T, N), dtype=torch.float32)
        raw_rewards = torch.zeros((T, N), dtype=torch.float32)
        dones = torch.zeros((T, N), dtype=torch.float32)
        terminated_buf = torch.zeros((T, N), dtype=torch.bool)
        # The policy's (unclipped) actions and the clipped ones the simulator gets (a numpy view per row).
        action_dtype = torch.from_numpy(np.zeros(0, dtype=self.action_space.dtype)).dtype
        actions = torch.zeros((T, N, *self.action_space.shape), dtype=action_dtype)
        env_actions = torch.zeros((T, N, *self.action_space.shape), dtype=action_dtype)
        env_action_rows = env_actions.numpy()
        low, high = (
            (torch.from_numpy(self.action_space.low), torch.from_numpy(self.action_space.high))
            if self.continuous
            else (torch.zeros(()), torch.zeros(()))
        )
        # Simulator states (MuJoCo qpos, qvel) before each step: what the labeling page renders clips from.
        record = self.settings.record_states and self._state_size > 0
        states = np.zeros((T, N, self._state_size), dtype=np.float64) if record else None
        nq = self._sim_data[0].qpos.size if record else 0
        bootstrap = np.zeros((T, N), dtype=np.float32)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        step_envs, act = self.envs.step, policy.act
        # The per-step bookkeeping runs as compiled calls (rlarena.ops.observe_, record_action_,
        # record_reward_) in place on these: buffers, running statistics (views of the normalizers' arrays)
        # and episode counters, bound once per rollout (re-packing them every step costs more than the work).
        none = torch.zeros(())
        obs_stats = self.obs_rms.tensors() if self.obs_rms is not None else (none, none, none)
        ret_stats = self.return_rms.tensors() if self.return_rms is not None else (none, none, none)
        normalize_obs = self.obs_rms is not None
        clip_actions, cpu = self.continuous, self.device.type == "cpu"
        discounted = torch.from_numpy(self._discounted_return)
        record_args = (
            raw_rewards, rewards, dones, terminated_buf, discounted, *ret_stats,
            self.return_rms is not None, self.settings.gamma, REWARD_CLIP,
            torch.from_numpy(self._episode_return), torch.from_numpy(self._episode_length),
        )  # fmt: skip
        # The default policy: its step and all the bookkeeping in one compiled call per simulator step.
        net = policy.gaussian_mlp() if cpu and self.continuous else None
        if net is not None:
            step_args = (
                raw_obs_buf, obs_buf, *obs_stats, normalize_obs, OBS_CLIP, net,
                actions, logp_buf, value_buf, env_actions, low, high, clip_actions,
            )  # fmt: skip
            policy_step, record_reward, finish = ops.bind_gaussian_rollout(step_args, record_args, T)
        else:  # any other policy: its own step (three calls), the reward bookkeeping bound the same way
            policy_step, record_reward, finish = None, ops.bind_record_reward(*record_args), None
            obs_rows = obs_buf.unbind(0)  # the policy's input at step t: a view, made once per rollout
        attention, acted = ops.RECORD_NON_FINITE | ops.RECORD_ENDED | ops.RECORD_CUT, ops.RECORD_ACTED
        # The bound calls read the vector env's arrays in place (float64 observations and rewards).
        observed = np.ascontiguousarray(self._obs, dtype=np.float64)
        flags = 0

        for t in range(T):
            if states is not None:
                for i, data in enumerate(self._sim_data):  # copies into the buffer: no allocation per step
                    states[t, i, :nq] = data.qpos
                    states[t, i, nq:] = data.qvel
            if flags & acted:
                pass  # the previous call already observed this row and acted on it
            elif policy_step is not None:
                policy_step(observed, t)
            else:
                ops.observe_(
                    torch.from_numpy(observed), t, raw_obs_buf, obs_buf, *obs_stats, normalize_obs, OBS_CLIP
                )
                out = act(obs_rows[t] if cpu else obs_rows[t].to(self.device))
                ops.record_action_(
                    out.action.cpu(), out.logp.cpu(), out.value.cpu(), t,
                    actions, logp_buf, value_buf, env_actions, low, high, clip_actions,
                )  # fmt: skip
            next_obs, reward, terminated, truncated, info = step_envs(env_action_rows[t])
            # the next step's observation (SAME_STEP autoreset: a reset one where an episode ended)
            observed = np.ascontiguousarray(next_obs, dtype=np.float64)
            flags = record_reward(
                observed, np.ascontiguousarray(reward, dtype=np.float64), terminated, truncated, t
            )
            if flags & attention:  # rare: an episode ended, a time limit cut one, or a value is not finite
                if flags & ops.RECORD_NON_FINITE:
                    self._raise_non_finite(next_obs, reward, t)
                # A truncated episode did not end: bootstrap from the value of its final observation.
                # Rare (a time limit): evaluated at once, with the normalizer of this step.
                if flags & ops.RECORD_CUT:
                    cut = truncated & ~terminated
                    final_obs = np.stack([info["final_obs"][i] for i in np.flatnonzero(cut)])
                    if not np.isfinite(final_obs).all():
                        finals = np.zeros_like(next_obs)
                        finals[cut] = final_obs
                        self._raise_non_finite(finals, reward, t, "final observation")
                    bootstrap[t, cut] = (
                        policy.value(self._tensor(self.normalize_obs(final_obs))).cpu().numpy()
                    )
                if flags & ops.RECORD_ENDED:
                    done = terminated | truncated
                    for i in np.flatnonzero(done):
                        episode_returns.append(float(self._episode_return[i]))
                        episode_lengths.append(int(self._episode_length[i]))
                    self._episode_return[done] = 0.0
                    self._episode_length[done] = 0
            self._obs = next_obs
        if finish is not None:
            finish(T)
        self._steps_done += T * N

        last_value = policy.value(self._tensor(self.normalize_obs(self._obs)))
        return RolloutBatch(
            obs=self._tensor(obs_buf),
            actions=self._tensor(actions),
            logp=self._tensor(logp_buf),
            values=self._tensor(value_buf),
            rewards=self._tensor(rewards),
            dones=self._tensor(dones),
            last_value=last_value,
            bootstrap_values=self._tensor(bootstrap),
            info={
                "raw_rewards": self._tensor(raw_rewards),
                "raw_obs": self._tensor(raw_obs_buf),
                "episode_returns": episode_returns,
                "episode_lengths": episode_lengths,
                "terminated": self._tensor(terminated_buf),
                "env_actions": self._tensor(env_actions),
                "env_id": self.env_id,
                **({"states": states} if states is not None else {}),
            },
        )

    @torch.no_grad()
    def _collect_groups(self, policy: Policy, num_steps: int) -> RolloutBatch:
        """One whole episode per column, ``k`` columns per start state (the module docstring defines it).

        The sub-environments are stepped one by one, not through the vector env: its automatic reset would
        start a second episode in a column whose episode has ended.
        """
        T, N, k = num_steps, self.num_envs, self.group_size
        envs = self.envs.envs
        seeds = np.random.SeedSequence([self.settings.seed, self._group_collects]).generate_state(N // k)
        self._group_collects += 1
        obs = np.stack([np.asarray(env.reset(seed=int(seeds[i // k]))[0]) for i, env in enumerate(envs)])
        if not np.isfinite(obs).all():
            self._raise_non_finite(obs, np.zeros(N), 0, "reset observation")

        obs_shape = self.observation_space.shape
        obs_buf = np.zeros((T, N, *obs_shape), dtype=np.float32)
        raw_obs_buf = np.zeros((T, N, *obs_shape), dtype=np.float32)
        actions: np.ndarray | None = None
        logp_buf = np.zeros((T, N), dtype=np.float32)
        value_buf = np.zeros((T, N), dtype=np.float32)
        rewards = np.zeros((T, N), dtype=np.float32)
        raw_rewards = np.zeros((T, N), dtype=np.float32)
        mask = np.zeros((T, N), dtype=bool)
        terminated_buf = np.zeros((T, N), dtype=bool)
        env_actions = np.zeros((T, N, *self.action_space.shape), dtype=self.action_space.dtype)
        record = self.settings.record_states and self._state_size > 0
        states = np.zeros((T, N, self._state_size), dtype=np.float64) if record else None
        nq = self._sim_data[0].qpos.size if record else 0
        bootstrap = np.zeros((T, N), dtype=np.float32)
        active = np.ones(N, dtype=bool)  # columns whose episode is still running
        ended = np.zeros(N, dtype=bool)  # columns whose episode ended by itself (not cut at num_steps)
        episode_return = np.zeros(N)
        episode_length = np.zeros(N, dtype=np.int64)
        discounted = np.zeros(N)  # reward normalization: each episode's discounted return starts at 0
        low, high = (self.action_space.low, self.action_space.high) if self.continuous else (None, None)

        for t in range(T):
            live = np.flatnonzero(active)
            if live.size == 0:
                break
            mask[t, live] = True
            raw_obs_buf[t, live] = obs[live]
            if states is not None:
                for i in live:
                    states[t, i, :nq] = self._sim_data[i].qpos
                    states[t, i, nq:] = self._sim_data[i].qvel
            if self.obs_rms is not None:
                self.obs_rms.update(obs[live])  # real steps only: padding must not move the statistics
            obs_buf[t, live] = self.normalize_obs(obs[live])
            # Every column is evaluated (padding sees zeros); only the live columns' outputs are kept.
            out = policy.act(torch.from_numpy(obs_buf[t]).to(self.device))
            action = out.action.cpu().numpy()
            if actions is None:
                actions = np.zeros((T, *action.shape), dtype=action.dtype)
            actions[t, live] = action[live]
            logp_buf[t, live] = out.logp.cpu().numpy()[live]
            value_buf[t, live] = out.value.cpu().numpy()[live]
            env_actions[t, live] = (
                np.minimum(np.maximum(action[live], low), high) if self.continuous else action[live]
            )

            next_obs = obs.copy()
            reward = np.zeros(N)
            terminated = np.zeros(N, dtype=bool)
            truncated = np.zeros(N, dtype=bool)
            for i in live:
                o, r, term, trunc, _ = envs[i].step(env_actions[t, i])
                next_obs[i], reward[i], terminated[i], truncated[i] = o, r, term, trunc
            if not (np.isfinite(next_obs).all() and np.isfinite(reward).all()):
                self._raise_non_finite(next_obs, reward, t)
            finished = terminated | truncated
            ended |= finished
            if t == T - 1:  # cut at the rollout's end: truncated, but not an episode of the statistics
                truncated[live] |= ~terminated[live]
            done = terminated | truncated
            terminated_buf[t] = terminated
            raw_rewards[t, live] = reward[live]
            if self.return_rms is not None:
                discounted[live] = discounted[live] * self.settings.gamma + reward[live]
                self.return_rms.update(discounted[live])
                rewards[t, live] = _clip(reward[live] / self.return_rms.std, REWARD_CLIP)
            else:
                rewards[t, live] = reward[live]
            cut = np.flatnonzero(truncated & ~terminated)
            if cut.size:  # the episode did not really end: bootstrap from its final observation's value
                finals = self._tensor(self.normalize_obs(next_obs[cut]))
                bootstrap[t, cut] = policy.value(finals).cpu().numpy()
            episode_return[live] += reward[live]
            episode_length[live] += 1
            active &= ~done
            obs = next_obs

        lengths = mask.sum(0)
        self._steps_done += int(lengths.sum())
        steps = np.arange(T)[:, None]
        dones = (steps >= lengths[None, :] - 1).astype(np.float32)  # last real step and the padding after it
        return RolloutBatch(
            obs=self._tensor(obs_buf),
            actions=self._tensor(actions),
            logp=self._tensor(logp_buf),
            values=self._tensor(value_buf),
            rewards=self._tensor(rewards),
            dones=self._tensor(dones),
            last_value=torch.zeros(N, device=self.device),  # every column ends inside the batch
            bootstrap_values=self._tensor(bootstrap),
            mask=self._tensor(mask),
            layout="sequence",
            info={
                "raw_rewards": self._tensor(raw_rewards),
                "raw_obs": self._tensor(raw_obs_buf),
                "episode_returns": [float(episode_return[i]) for i in np.flatnonzero(ended)],
                "episode_lengths": [int(episode_length[i]) for i in np.flatnonzero(ended)],
                "terminated": self._tensor(terminated_buf),
                "env_actions": self._tensor(env_actions),
                "env_id": self.env_id,
                "responses_per_prompt": k,  # columns per group: algorithms check it against their own
                "stat/cut_fraction": float(1.0 - ended.mean()),  # episodes cut at num_steps
                **({"states": states} if states is not None else {}),
            },
        )

    def preference_support(self, settings: PreferenceSettings) -> StepSegments:
        """Segments of steps and an MLP ensemble on (raw observation, action): envs/gym_preferences.py."""
        obs_dim = int(np.prod(self.observation_space.shape or (1,)))
        act_dim = int(np.prod(self.action_space.shape or (1,)))
        if len(self.observation_space.shape or ()) != 1:
            raise ConfigError(f"algo=preference needs flat vector observations; {self.env_id} has others")
        return StepSegments(obs_dim, act_dim, settings)

    @torch.no_grad()
    def evaluate(self, policy: Policy, episodes: int, deterministic: bool = True) -> dict[str, Any]:
        """Whole episodes on fresh environments, with frozen normalization statistics and true rewards."""
        n = max(1, min(episodes, 10))
        quota = [episodes // n + (i < episodes % n) for i in range(n)]
        envs = self._make_vector(n)
        try:
            obs, _ = envs.reset(seed=self.settings.seed + 1_000_003)
            returns: list[float] = []
            lengths: list[int] = []
            ep_ret = np.zeros(n)
            ep_len = np.zeros(n, dtype=np.int64)
            done_count = np.zeros(n, dtype=np.int64)
            while (done_count < quota).any():
                out = policy.act(self._tensor(self.normalize_obs(obs)), deterministic=deterministic)
                obs, reward, terminated, truncated, _ = envs.step(self._env_action(out.action))
                if not (np.isfinite(obs).all() and np.isfinite(reward).all()):
                    self._raise_non_finite_in_evaluation(obs, reward, ep_len)
                ep_ret += reward
                ep_len += 1
                for i in np.flatnonzero(terminated | truncated):
                    if done_count[i] < quota[i]:
                        returns.append(float(ep_ret[i]))
                        lengths.append(int(ep_len[i]))
                        done_count[i] += 1
                    ep_ret[i] = 0.0
                    ep_len[i] = 0
        finally:
            envs.close()
        return {"returns": returns, "lengths": lengths}

    @torch.no_grad()
    def record_episodes(
        self, policy: Policy, episodes: int, width: int, height: int, deterministic: bool = True
    ) -> list[dict[str, Any]] | None:
        """Episodes on one rendering copy of the task, seeded as ``evaluate``'s first environment, with the
        frozen normalizer statistics; every frame at the task's own rate (``render_fps``)."""
        kwargs = dict(self._env_kwargs)
        if self._max_episode_steps is not None:
            kwargs["max_episode_steps"] = self._max_episode_steps
        try:
            env = gym.make(self.env_id, render_mode="rgb_array", width=width, height=height, **kwargs)
        except TypeError:  # a task whose renderer takes no size (not MuJoCo): nothing to record
            return None
        try:
            fps = float(env.metadata.get("render_fps") or 30)
            out = []
            obs, _ = env.reset(seed=self.settings.seed + 1_000_003)
            for _ in range(episodes):
                frames, total, length, done = [env.render()], 0.0, 0, False
                while not done:
                    batch = self.normalize_obs(np.asarray(obs)[None])
                    action = policy.act(self._tensor(batch), deterministic=deterministic).action
                    obs, reward, terminated, truncated, _ = env.step(self._env_action(action)[0])
                    frames.append(env.render())
                    total, length, done = total + float(reward), length + 1, terminated or truncated
                out.append({"frames": np.stack(frames), "fps": fps, "return": total, "length": length})
                obs, _ = env.reset()
            return out
        finally:
            env.close()

    # ---- checkpointing --------------------------------------------------------------------------------

    @property
    def resumes_exactly(self) -> bool:
        # Grouped episodes start afresh at every collect: the seed counter and the normalizers are the state.
        return self.grouped or all(_is_mujoco(e) for e in self.envs.envs)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "obs_rms": None if self.obs_rms is None else self.obs_rms.state_dict(),
            "return_rms": None if self.return_rms is None else self.return_rms.state_dict(),
            "discounted_return": self._discounted_return.tolist(),
            "steps_done": self._steps_done,
        }
        if self.grouped:
            state["group_collects"] = self._group_collects
        elif self.resumes_exactly:  # the running episodes too: a resumed run continues bit-identically
            state["episodes"] = {
                "obs": torch.from_numpy(np.array(self._obs)),
                "episode_return": self._episode_return.tolist(),
                "episode_length": self._episode_length.tolist(),
                "simulators": [_mujoco_state(e) for e in self.envs.envs],
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.obs_rms is not None and state.get("obs_rms") is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if self.return_rms is not None and state.get("return_rms") is not None:
            self.return_rms.load_state_dict(state["return_rms"])
        self._discounted_return = np.asarray(state.get("discounted_return", self._discounted_return))
        self._steps_done = int(state.get("steps_done", 0))
        self._group_collects = int(state.get("group_collects", 0))
        episodes = state.get("episodes")
        if episodes is not None and self.resumes_exactly and not self.grouped:
            if len(episodes["simulators"]) != self.num_envs:
                saved = len(episodes["simulators"])
                raise ValueError(f"the checkpoint has {saved} environments, not {self.num_envs}")
            for env, sim in zip(self.envs.envs, episodes["simulators"]):
                _set_mujoco_state(env, sim)
            self._obs = episodes["obs"].numpy().astype(self._obs.dtype)
            self._episode_return = np.asarray(episodes["episode_return"], dtype=np.float64)
            self._episode_length = np.asarray(episodes["episode_length"], dtype=np.int64)

    def close(self) -> None:
        self.envs.close()


# ---- simulator state (exact resume) ---------------------------------------------------------------------


def _is_mujoco(env: gym.Env) -> bool:
    return hasattr(env.unwrapped, "model") and hasattr(getattr(env.unwrapped, "data", None), "qacc_warmstart")


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _mujoco_state(env: gym.Env) -> dict[str, Any]:
    """A MuJoCo sub-environment mid-episode: every array of its ``MjData`` (the integration state, the
    solver's warm start, and the derived quantities some tasks read before stepping, such as body
    positions), its time, the TimeLimit's count and the env's RNG (which draws the next reset)."""
    data = env.unwrapped.data
    arrays = {}
    for name in dir(data):
        value = getattr(data, name, None) if not name.startswith("_") else None
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            arrays[name] = torch.from_numpy(value.copy())
    limit = _time_limit(env)
    return {
        "arrays": arrays,
        "time": float(data.time),
        "elapsed_steps": None if limit is None else int(limit._elapsed_steps),
        "np_random": env.unwrapped.np_random.bit_generator.state,
    }


def _set_mujoco_state(env: gym.Env, state: dict[str, Any]) -> None:
    data = env.unwrapped.data
    for name, value in state["arrays"].items():
        target = getattr(data, name, None)
        # Buffers sized by the contacts of the moment (efc_*, contact) are recomputed by the next step.
        if isinstance(target, np.ndarray) and target.shape == tuple(value.shape):
            target[...] = value.numpy()
    data.time = state["time"]
    limit = _time_limit(env)
    if limit is not None and state["elapsed_steps"] is not None:
        limit._elapsed_steps = state["elapsed_steps"]
    env.unwrapped.np_random.bit_generator.state = state["np_random"]


class GymTask:
    """The registered factory of one gymnasium task; ``env_cfg`` (``conf/env/<name>.yaml``) overrides.

    ``env_id=None``: the generic task ``env=gym``, any gymnasium id given as ``env.id`` (``module:Env-v0``
    imports the module first, as ``gym.make`` does). A named task runs its own id only: a run labelled
    ``invertedpendulum`` that simulates Hopper would be pooled with InvertedPendulum runs.
    """

    def __init__(self, name: str, env_id: str | None) -> None:
        self.name = name
        self.env_id = env_id
        self.__module__ = __name__

    def __call__(self, env_cfg: dict[str, Any], settings: EnvSettings) -> GymEnvironment:
        return make_gym_environment({"name": self.name, "id": self.env_id, **env_cfg}, settings)

    def validate(self, env_cfg: dict[str, Any]) -> None:
        """Refuse what would fail only once the simulator is built (before a run directory exists)."""
        env_id = env_cfg.get("id", self.env_id)
        if self.env_id is None and not (isinstance(env_id, str) and env_id):
            raise ConfigError(
                f"env={self.name} runs any gymnasium task: name it with env.id=<id>, e.g. "
                "env.id=Swimmer-v5 or env.id=my_package.envs:MyEnv-v0"
            )
        if self.env_id is not None and env_id != self.env_id:
            raise ConfigError(
                f"env.id={env_id!r} is not the task of env={self.name} ({self.env_id}); choose the env "
                f"config of that task, or env=gym env.id={env_id} for a task rlarena has no config for"
            )
        if not isinstance(env_id, str):
            raise ConfigError(f"env.id must be a gymnasium id, got {env_id!r}")
        spec_of(env_id)
        kwargs = env_cfg.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"env.kwargs must be a mapping, got {kwargs!r}")
        if kwargs:  # the constructor is the only complete list of what a task accepts: build it once
            try:
                gym.make(env_id, **kwargs).close()
            except TypeError as exc:
                raise ConfigError(f"env.kwargs are not accepted by {env_id}: {exc}") from None
            except (ValueError, AssertionError) as exc:
                raise ConfigError(f"env.kwargs={kwargs} do not make a valid {env_id}: {exc}") from None
        limit = env_cfg.get("max_episode_steps")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"env.max_episode_steps must be null or a positive integer, got {limit!r}")

    def validate_settings(self, settings: EnvSettings) -> None:
        """What the algorithm asks of the environment, checked before a run directory exists."""
        check_no_reference(settings)

    def __repr__(self) -> str:
        return f"GymTask({self.name!r}, {self.env_id!r})"


def spec_of(env_id: str) -> Any:
    """gymnasium's spec of ``env_id``; for ``module:Env-v0``, the module is imported first (it registers
    the env), as ``gym.make`` does. An unknown id or an unimportable module raises ConfigError."""
    module, _, _ = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except Exception as exc:  # whatever the user's module raises on import
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"env.id={env_id!r}: the module {module!r} that should register it cannot be imported "
                f"({type(exc).__name__}: {reason})"
            ) from None
        env_id = env_id.rpartition(":")[2]
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"env.id={env_id!r} is not a registered gymnasium environment ({exc})") from None


def check_no_reference(settings: EnvSettings) -> None:
    if not settings.kl_in_reward:
        raise ConfigError(
            "algo.kl_coef puts the KL to a reference policy in the loss, and gymnasium tasks have no "
            "reference policy (text/<task> has: the SFT model); leave algo.kl_coef null here"
        )


def make_gym_environment(env_cfg: dict[str, Any], settings: EnvSettings) -> GymEnvironment:
    """Build a gymnasium task from its config (``id``, ``max_episode_steps``, ``kwargs``)."""
    check_no_reference(settings)
    return GymEnvironment(
        env_cfg["id"],
        settings,
        name=env_cfg.get("name"),
        max_episode_steps=env_cfg.get("max_episode_steps"),
        env_kwargs=env_cfg.get("kwargs") or {},
    )
