"""The lean collector and progress output: same numbers as the straightforward path, less overhead."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlarena import ops
from rlarena.algorithms.policies import MLPActorCritic
from rlarena.bench.progress import Progress
from rlarena.bench.train import build, load_config
from rlarena.normalize import RunningMeanStd
from rlarena.rollout import ActOutput


def _built(algo: str = "ppo", env: str = "hopper", n: int = 2):
    cfg = load_config([f"algo={algo}", f"env={env}", f"algo.num_envs={n}", "algo.num_steps=64"])
    return build(cfg, explicit_keys=set())


def _distribution_act(policy):
    """``act`` through torch.distributions: what ``ops.mlp_gaussian_act_reference`` must match bit for bit."""

    def act(obs, deterministic=False):
        head, value = policy._features(obs)
        dist = policy._dist(head)
        action = dist.sample()
        return ActOutput(action, dist.log_prob(action), value)

    return act


def _policy_args(obs_dim=11, act_dim=3, hidden=(64, 64), activation="tanh", seed=0):
    torch.manual_seed(seed)
    policy = MLPActorCritic(
        gym.spaces.Box(-1, 1, (obs_dim,)), gym.spaces.Box(-1, 1, (act_dim,)), list(hidden), activation
    )
    with torch.no_grad():
        policy.log_std.uniform_(-1.5, 0.5)
        for p in policy.parameters():  # trained-looking weights, not the tiny policy-head init
            p.add_(0.1 * torch.randn_like(p))
    return policy, (policy._actor_params, policy._critic_params, policy.log_std.detach(), activation)


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
@pytest.mark.parametrize(
    "rows,obs_dim,act_dim,hidden", [(1, 11, 3, (64, 64)), (8, 17, 6, (64, 64)), (5, 3, 1, (7,))]
)
def test_compiled_policy_step_matches_the_reference_within_float32_rounding(
    rows, obs_dim, act_dim, hidden, activation
):
    """The CPU kernel (plain loops) against the distribution path's ops: the same random draws (the
    generator ends in the same state), outputs within float32 rounding of the reference."""
    _, args = _policy_args(obs_dim, act_dim, hidden, activation)
    obs = 3 * torch.randn(rows, obs_dim)
    with torch.no_grad():
        torch.manual_seed(1)
        action, logp, value = torch.ops.rlarena.mlp_gaussian_act.default(obs, *args)
        state = torch.get_rng_state()
        torch.manual_seed(1)
        ref_action, ref_logp, ref_value = ops.mlp_gaussian_act_reference(obs, *args)
    assert torch.equal(state, torch.get_rng_state())
    torch.testing.assert_close(action, ref_action, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logp, ref_logp, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(value, ref_value, rtol=1e-5, atol=1e-5)


def test_compiled_policy_step_gives_the_same_bits_on_every_isa():
    """Sums in one fixed order and no FMA contraction: the baseline, AVX2 and AVX-512 variants agree to the
    bit (what makes the collector's arithmetic the same on every x86-64 CPU)."""
    _, args = _policy_args(17, 6)
    obs = 3 * torch.randn(8, 17)
    previous = torch.ops.rlarena._config("isa", -1)
    results = []
    try:
        for isa in (0, 1, 2):  # clamped to what this CPU has
            torch.ops.rlarena._config("isa", isa)
            torch.manual_seed(3)
            with torch.no_grad():
                results.append(torch.ops.rlarena.mlp_gaussian_act.default(obs, *args))
    finally:
        torch.ops.rlarena._config("isa", previous)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("activation", ["tanh", "elu"])
def test_the_deterministic_step_is_the_mean_and_draws_nothing(activation):
    """Evaluation's step: the action is the actor's mean (within float32 rounding of nn.Linear's), its
    log-prob that of the mode, the generator untouched; the same bits on every ISA variant."""
    policy, args = _policy_args(17, 6, activation=activation)
    obs = 3 * torch.randn(8, 17)
    state = torch.get_rng_state()
    previous = torch.ops.rlarena._config("isa", -1)
    results = []
    try:
        for isa in (0, 1, 2):
            torch.ops.rlarena._config("isa", isa)
            with torch.no_grad():
                results.append(policy.act(obs, deterministic=True))
    finally:
        torch.ops.rlarena._config("isa", previous)
    assert torch.equal(state, torch.get_rng_state())
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(vars(results[0]).values(), vars(other).values()))
    with torch.no_grad():
        head, value = policy._features(obs)
        mode_logp = policy._dist(head).log_prob(head)
    torch.testing.assert_close(results[0].action, head, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0].logp, mode_logp, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(results[0].value, value, rtol=1e-5, atol=1e-5)
    ref = ops.mlp_gaussian_act_reference(obs, *args, deterministic=True)
    assert torch.equal(ref[0], head) and torch.equal(state, torch.get_rng_state())


def test_the_reference_policy_step_is_the_distribution_path():
    policy, args = _policy_args()
    obs = torch.randn(4, 11)
    with torch.no_grad():
        torch.manual_seed(2)
        ref = ops.mlp_gaussian_act_reference(obs, *args)
        torch.manual_seed(2)
        out = _distribution_act(policy)(obs)
    assert all(torch.equal(a, b) for a, b in zip(ref, (out.action, out.logp, out.value)))


def _bind_record_reward_reference(*bound):
    def record(next_obs, reward, terminated, truncated, t):
        arrays = (torch.from_numpy(a) for a in (next_obs, reward, terminated, truncated))
        return ops.record_reward_reference(*arrays, t, *bound)

    return record


def _step_buffers(T: int, n: int, obs_dim: int, act_dim: int, normalize: bool):
    """Fresh collector buffers and statistics for ``gaussian_policy_step_`` (in its argument order)."""
    stats = (torch.zeros(obs_dim, dtype=torch.float64), torch.ones(obs_dim, dtype=torch.float64))
    head = (
        torch.zeros(T, n, obs_dim),
        torch.zeros(T, n, obs_dim),
        *stats,
        torch.tensor(1e-4, dtype=torch.float64),
    )
    tail = (torch.zeros(T, n, act_dim), torch.zeros(T, n), torch.zeros(T, n), torch.zeros(T, n, act_dim))
    bounds = (torch.full((act_dim,), -0.5), torch.full((act_dim,), 0.5), True)
    return (*head, normalize, 5.0), (*tail, *bounds)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("n,obs_dim,act_dim", [(1, 11, 3), (3, 17, 6)])
def test_fused_policy_step_and_its_bound_form_give_the_three_calls_bits(n, obs_dim, act_dim, normalize):
    """gaussian_policy_step_ (the op) and bind_gaussian_rollout's act (the rollout-bound class the collector
    calls; its values filled by finish after the rows) against observe_, mlp_gaussian_act and record_action_
    called one after another: the same random draws and the same bits in every buffer, the statistics
    included, over several rows."""
    policy, _ = _policy_args(obs_dim, act_dim)
    net = policy.gaussian_mlp()
    T = 6
    obs = torch.randn(T, n, obs_dim, dtype=torch.float64) * 3
    three = _step_buffers(T, n, obs_dim, act_dim, normalize)
    fused = _step_buffers(T, n, obs_dim, act_dim, normalize)
    bound = _step_buffers(T, n, obs_dim, act_dim, normalize)
    unused = torch.zeros(T, n), torch.zeros(T, n), torch.zeros(T, n), torch.zeros(T, n, dtype=torch.bool)
    none = torch.zeros(())
    record_args = (*unused, torch.zeros(n, dtype=torch.float64), none, none, none, False, 0.99, 10.0)
    record_args += (torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.int64))
    step, _, finish = ops.bind_gaussian_rollout((*bound[0], net, *bound[1]), record_args, T)
    for t in range(T):
        torch.manual_seed(t)
        ops.observe_(obs[t], t, *three[0])
        out = ops.mlp_gaussian_act(three[0][1][t], net.actor, net.critic, net.log_std, net.activation)
        ops.record_action_(*out, t, *three[1])
        torch.manual_seed(t)
        ops.gaussian_policy_step_(obs[t], t, *fused[0], net, *fused[1])
        torch.manual_seed(t)
        step(obs[t].numpy(), t)
    finish(T)
    for got in (fused, bound):
        for want_part, got_part in zip(three, got):
            for want, have in zip(want_part, got_part):
                if isinstance(want, torch.Tensor):
                    assert torch.equal(want, have)
    assert not torch.equal(three[1][0][0], three[1][0][1])  # the draws differ from row to row


def _rollout_case(T: int, n: int, obs_dim: int, act_dim: int, net):
    """Buffers for one bound rollout: ``(step_args, record_args)`` as bind_gaussian_rollout takes them."""
    head, tail = _step_buffers(T, n, obs_dim, act_dim, normalize=True)
    records = (torch.zeros(T, n), torch.zeros(T, n), torch.zeros(T, n), torch.zeros(T, n, dtype=torch.bool))
    stats = (torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
    record_args = (
        *records,
        torch.zeros(n, dtype=torch.float64),
        *stats,
        torch.tensor(1e-4, dtype=torch.float64),
    )
    record_args += (True, 0.99, 10.0, torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.int64))
    return (*head, net, *tail), record_args


@pytest.mark.skipif(ops.backend() != "compiled", reason="the entry points are the compiled extension's")
def test_rollout_entry_points_read_the_env_arrays_as_the_class_methods_read_tensors():
    """rlarena._C.rollout_act / rollout_record (what bind_gaussian_rollout returns: the vector env's numpy
    arrays read in place) against torch.classes.rlarena.GaussianRollout's act / record on the same values as
    tensors: the same flags and the same bits in every buffer; a wrong array is named in one clear error."""
    T, n, obs_dim, act_dim = 12, 2, 11, 3
    policy, _ = _policy_args(obs_dim, act_dim)
    net = policy.gaussian_mlp()
    (fast_step, fast_record), (slow_step, slow_record) = (
        _rollout_case(T, n, obs_dim, act_dim, net) for _ in "ab"
    )
    act, record, finish = ops.bind_gaussian_rollout(fast_step, fast_record, T)
    mlp = (list(net.actor), list(net.critic), net.log_std, net.activation)
    reference = torch.classes.rlarena.GaussianRollout(
        torch.classes.rlarena.GaussianPolicyStep(*slow_step[:7], *mlp, *slow_step[8:], True),
        torch.classes.rlarena.RewardRecorder(*slow_record),
    )
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(T + 1, n, obs_dim)) * 3
    reward = rng.normal(size=(T, n))
    terminated, truncated = rng.random((T, n)) < 0.15, rng.random((T, n)) < 0.1
    flags_seen, torch_arrays = set(), lambda *a: [torch.from_numpy(np.ascontiguousarray(x)) for x in a]
    last = 0
    for t in range(T):
        if not last & ops.RECORD_ACTED:  # else the previous record acted on this row
            torch.manual_seed(t)
            act(np.ascontiguousarray(obs[t]), t)
            torch.manual_seed(t)
            reference.act(*torch_arrays(obs[t]), t)
        torch.manual_seed(100 + t)
        last = record(np.ascontiguousarray(obs[t + 1]), reward[t], terminated[t], truncated[t], t)
        torch.manual_seed(100 + t)
        want = reference.record(*torch_arrays(obs[t + 1], reward[t], terminated[t], truncated[t]), t)
        assert last == want
        flags_seen.add(last)
    finish(T)
    reference.finish(T)
    assert ops.RECORD_ACTED in flags_seen and any(f & ops.RECORD_ENDED for f in flags_seen)
    for fast, slow in zip((*fast_step, *fast_record), (*slow_step, *slow_record)):
        if isinstance(fast, torch.Tensor):
            assert torch.equal(fast, slow)
    with pytest.raises(TypeError, match="'next_obs' must be a C-contiguous 2D array of float64"):
        record(obs[1].astype(np.float32), reward[0], terminated[0], truncated[0], 0)
    with pytest.raises(TypeError, match="'terminated' must be a C-contiguous 1D array of bool"):
        record(obs[1], reward[0], terminated[0].astype(np.int8), truncated[0], 0)
    with pytest.raises(ValueError, match="2 observations but 3 rewards"):
        record(obs[1], np.zeros(3), terminated[0], truncated[0], 0)
    with pytest.raises(ValueError, match="do not fit row 99"):
        act(obs[1], 99)


@pytest.mark.parametrize("n", [1, 3])
def test_compiled_bookkeeping_matches_the_reference_bookkeeping(n, monkeypatch):
    """The collector's per-step ops (observe_, record_action_, record_reward_) against their torch
    references, over two rollouts (the running normalizers carry over) with one policy: bit-identical. The
    fast side takes the default policy's fused step (gaussian_policy_step_: observe_, the policy's step and
    record_action_ in one call); the slow side makes the three calls, with the references."""
    fast, slow = _built(n=n), _built(n=n)
    slow.policy.load_state_dict(fast.policy.state_dict())
    assert fast.policy.gaussian_mlp() is not None
    monkeypatch.setattr(slow.policy, "gaussian_mlp", lambda: None)
    for _ in range(2):
        torch.manual_seed(7)
        a = fast.env.collect(fast.policy, 300)  # Hopper's 1000-step limit is not reached: see bootstrap below
        torch.manual_seed(7)
        with monkeypatch.context() as patch:
            for op in ("observe_", "record_action_"):
                patch.setattr(ops, op, getattr(ops, op.rstrip("_") + "_reference"))
            patch.setattr(ops, "bind_record_reward", _bind_record_reward_reference)
            b = slow.env.collect(slow.policy, 300)
        for name in (
            "obs",
            "actions",
            "logp",
            "values",
            "rewards",
            "dones",
            "last_value",
            "bootstrap_values",
        ):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        for name in ("raw_rewards", "raw_obs", "terminated", "env_actions"):
            assert torch.equal(a.info[name], b.info[name]), name
        assert a.info["episode_returns"] == b.info["episode_returns"]
        assert a.info["episode_lengths"] == b.info["episode_lengths"]
    # The float64 statistics: the same bits with one sub-environment; with several, torch's mean and var
    # (the reference) may add the rows in another order than the kernel's index order.
    for key in ("obs_rms", "return_rms"):
        for part in ("mean", "var", "count"):
            got, want = fast.env.state_dict()[key][part], slow.env.state_dict()[key][part]
            if n == 1:
                assert got == want, (key, part)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    fast.env.close()
    slow.env.close()


def test_compiled_normalizer_is_runningmeanstd_to_the_bit():
    """observe_'s running update is rlarena/normalize.py's numpy arithmetic (one sub-environment)."""
    rng = np.random.default_rng(0)
    reference, compiled = RunningMeanStd((5,)), RunningMeanStd((5,))
    raw, out = torch.zeros(50, 1, 5), torch.zeros(50, 1, 5)
    for t in range(50):
        obs = rng.normal(3.0, 2.0, (1, 5))
        reference.update(obs)
        torch.ops.rlarena.observe_.default(
            torch.from_numpy(obs), t, raw, out, *compiled.tensors(), True, 10.0
        )
        expected = np.minimum(np.maximum((obs - reference.mean) / reference.std, -10.0), 10.0).astype(
            np.float32
        )
        assert np.array_equal(out[t].numpy(), expected)
    assert reference.state_dict() == compiled.state_dict()


def test_simulator_states_are_recorded_only_for_algorithms_that_need_them():
    plain = _built("ppo", "invertedpendulum")
    assert "states" not in plain.env.collect(plain.policy, 8).info
    pref = _built("preference", "invertedpendulum")
    states = pref.env.collect(pref.policy, 8).info["states"]
    assert states.shape == (8, 2, 4)  # InvertedPendulum: nq + nv = 2 + 2
    plain.env.close()
    pref.env.close()


def test_progress_writes_plain_lines_to_a_log():
    out = io.StringIO()  # not a terminal: no carriage-return redraws
    bar = Progress(1000, 0, "ppo hopper s0", stream=out, interval_s=0.0)
    for _ in range(4):
        bar.update(250, 12.5, 900.0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in out.getvalue()
    assert lines[-1].startswith("[ppo hopper s0] 1000/1000 steps (100%), return 12.5, 900 steps/s")


def test_progress_is_quiet_between_intervals_and_when_disabled():
    out = io.StringIO()
    bar = Progress(1000, 0, "x", stream=out, interval_s=3600.0)
    bar.update(10, 1.0, 1.0)
    assert out.getvalue() == ""
    off = io.StringIO()
    quiet = Progress(1000, 0, "x", enabled=False, stream=off, interval_s=0.0)
    quiet.update(10, 1.0, 1.0)
    quiet.close()
    assert off.getvalue() == ""


def test_a_mujoco_compiler_warning_is_shown_once_per_process(monkeypatch, capfd):
    """MuJoCo 4 warns about HalfCheetah's deprecated ``settotalmass`` at every model compilation: once per
    sub-environment without the handler. With it, two environments of four sub-environments print it once."""
    from rlarena.envs import gym_env

    monkeypatch.setattr(gym_env, "_MUJOCO_WARNINGS_SEEN", None)  # as in a fresh process
    for _ in range(2):
        _built(env="halfcheetah", n=4).env.close()
    err = capfd.readouterr().err
    assert err.count("settotalmass") == 1 and "MuJoCo warning (shown once)" in err
