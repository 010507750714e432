"""PPO's compiled epoch (``ops.ppo_gaussian_mlp_epoch_``, csrc/cpu/ppo_epoch.cpp) against its definition,
algorithms/ppo.py's minibatch loop on the shared path (``compiled_update=false``): whole updates from the same
policy, optimizer state and shuffles agree within float32 rounding; the same bits on every ISA variant; the
first minibatch reproduces the collector's log-probs exactly; non-finite gradients stop before a step;
the op's registration (opcheck) and its input checks."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from op_inputs import on_every_isa, policy_batch

from rlarena import ops
from rlarena.algorithms.base import PolicyConfig, adam_state, compute_advantages
from rlarena.algorithms.policies import make_mlp_policy
from rlarena.algorithms.ppo import PPO, PPOConfig
from rlarena.optim import Adam
from rlarena.rollout import RolloutBatch

pytestmark = pytest.mark.skipif(ops.backend() != "compiled", reason="rlarena._C is not built")


def _policy(obs_dim=17, act_dim=6, hidden=(64, 64), activation="tanh", seed=0):
    torch.manual_seed(seed)
    space = gym.spaces.Box(-1, 1, (obs_dim,), dtype=np.float32)
    actions = gym.spaces.Box(-1, 1, (act_dim,), dtype=np.float32)
    policy = make_mlp_policy(space, actions, PolicyConfig(hidden_sizes=list(hidden), activation=activation))
    with torch.no_grad():
        policy.log_std.uniform_(-1.0, 0.3)
    return policy


def _batch(policy, T=64, N=4, seed=0) -> RolloutBatch:
    obs_dim = policy.gaussian_mlp().actor[0].shape[1]
    return policy_batch(policy, obs_dim, T, N, seed, obs_scale=2.0)


def _update_both(cfg: dict, policy_kwargs: dict | None = None, updates: int = 2, batch_kwargs=None):
    """``updates`` PPO updates from identical copies, compiled and autograd; returns both algorithms and
    their metrics."""
    policy = _policy(**(policy_kwargs or {}))
    out = []
    for compiled in (True, False):
        p = copy.deepcopy(policy)
        algo = PPO(PPOConfig(**cfg, compiled_update=compiled), p, seed=3)
        metrics = []
        for u in range(updates):
            algo.set_progress(u / 10)
            metrics.append(algo.learn(_batch(p, seed=u, **(batch_kwargs or {}))))
        out.append((algo, metrics))
    return out


CASES = {
    "defaults": {},
    "relu, no value clip, entropy bonus": ({"clip_vloss": False, "ent_coef": 0.01}, {"activation": "relu"}),
    "elu, raw advantages, no grad clip": (
        {"normalize_advantages": False, "max_grad_norm": -1},
        {"activation": "elu", "hidden": (32,)},
    ),
    "uneven minibatches": ({"num_minibatches": 7, "update_epochs": 3}, {"obs_dim": 3, "act_dim": 1}),
    "early stop on KL": ({"target_kl": 1e-4, "learning_rate": 3e-3}, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_epochs_match_the_autograd_loop(case):
    cfg, policy_kwargs = CASES[case] if isinstance(CASES[case], tuple) else (CASES[case], {})
    cfg = {"num_minibatches": 8, "update_epochs": 4, **cfg}
    (fast, fast_metrics), (slow, slow_metrics) = _update_both(cfg, policy_kwargs)
    for (name, a), b in zip(fast.policy.named_parameters(), slow.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5, msg=name)
    for m_fast, m_slow in zip(fast_metrics, slow_metrics):
        assert m_fast.keys() == m_slow.keys()
        for key in m_fast:
            assert m_fast[key] == pytest.approx(m_slow[key], rel=1e-3, abs=1e-5), key
    # torch.optim.Adam's state was advanced as its own step would: the next update may take either path.
    steps = {float(s["step"]) for s in fast.optimizer.state.values()}
    assert steps == {float(s["step"]) for s in slow.optimizer.state.values()}
    for p_fast, p_slow in zip(fast.params, slow.params):
        state_fast, state_slow = fast.optimizer.state[p_fast], slow.optimizer.state[p_slow]
        torch.testing.assert_close(state_fast["exp_avg_sq"], state_slow["exp_avg_sq"], rtol=1e-3, atol=1e-9)
    if case == "early stop on KL":  # stopped after the first epoch, on both paths
        assert steps == {2 * cfg["num_minibatches"]}


def test_the_first_minibatch_reproduces_the_collectors_log_probs_exactly():
    """The epoch's forward pass sums in the collector kernel's order: before any step, the ratio is exactly
    1 (approx KL 0, nothing clipped), where MKL's products would differ in the last bits."""
    policy = _policy()
    algo = PPO(PPOConfig(num_minibatches=4), policy, seed=0)
    batch = compute_advantages(_batch(policy), 0.99, 0.95)
    epoch = algo.compiled_epoch(batch, 3e-4)
    rows = epoch(torch.randperm(batch.minibatch_units))
    assert rows[0][4] == 0.0 and rows[0][3] == 0.0
    assert rows[1][4] != 0.0  # after one Adam step the policy has moved


def test_compiled_epochs_give_the_same_bits_on_every_isa():
    def update():
        policy = _policy()
        algo = PPO(PPOConfig(num_minibatches=8, update_epochs=2, ent_coef=0.01), policy, seed=1)
        metrics = algo.learn(_batch(policy))
        return [p.detach().clone() for p in policy.parameters()], metrics

    results = on_every_isa(update)
    for params, metrics in results[1:]:
        assert metrics == results[0][1]
        assert all(torch.equal(a, b) for a, b in zip(params, results[0][0]))


def test_a_non_finite_gradient_stops_before_the_step():
    policy = _policy()
    algo = PPO(PPOConfig(num_minibatches=1, update_epochs=1), policy, seed=0)
    batch = _batch(policy)
    batch.actions[3, 1, 0] = math.inf  # a log-prob of -inf: a NaN ratio and gradient
    before = [p.detach().clone() for p in policy.parameters()]
    with pytest.raises(FloatingPointError, match="non-finite gradient norm"):
        algo.learn(batch)
    assert all(torch.equal(a, b) for a, b in zip(policy.parameters(), before))


def test_policies_that_are_not_gaussian_mlps_take_the_autograd_loop():
    space = gym.spaces.Box(-1, 1, (3,), dtype=np.float32)
    shared = make_mlp_policy(space, gym.spaces.Box(-1, 1, (2,)), PolicyConfig(hidden_sizes=[8], shared=True))
    categorical = make_mlp_policy(space, gym.spaces.Discrete(3), PolicyConfig(hidden_sizes=[8]))
    for policy in (shared, categorical):
        assert policy.gaussian_mlp() is None
        batch = compute_advantages(_batch(_policy(obs_dim=3, act_dim=2)), 0.99, 0.95)
        assert PPO(PPOConfig(), policy).compiled_epoch(batch, 1e-3) is None


def _op_args(rows=24, minibatches=5):
    policy = _policy(obs_dim=5, act_dim=2, hidden=(8,))
    net = policy.gaussian_mlp()
    optimizer = Adam(net.parameters(), lr=1e-3)
    state = adam_state(optimizer, net.parameters())
    g = torch.Generator().manual_seed(0)
    flat = [torch.randn(rows, 5, generator=g), torch.randn(rows, 2, generator=g)]
    flat += [torch.randn(rows, generator=g) for _ in range(4)]
    tensors = (
        *flat,
        torch.randperm(rows, generator=g),
        minibatches,
        net.actor,
        net.critic,
        net.log_std,
        *state,
    )
    scalars = ("tanh", 0.2, 0.2, 0.0, 0.5, True, 0.5, 1e-3, 0.9, 0.999, 1e-5)
    return [t.detach() if isinstance(t, torch.Tensor) else t for t in tensors], scalars


def test_opcheck_ppo_gaussian_mlp_epoch():
    tensors, scalars = _op_args()
    tensors[8] = [t.detach() for t in tensors[8]]
    tensors[9] = [t.detach() for t in tensors[9]]
    torch.library.opcheck(torch.ops.rlarena.ppo_gaussian_mlp_epoch_.default, (*tensors, *scalars))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t, s: t.__setitem__(0, t[0].double()), "'obs' must be a contiguous float32 CPU tensor"),
        (lambda t, s: t.__setitem__(2, t[2][:-1]), "'old_logp' must be"),
        (lambda t, s: t.__setitem__(6, t[6].int()), "perm must be a contiguous int64"),
        (lambda t, s: t.__setitem__(7, 0), "num_minibatches must be in"),
        (lambda t, s: s.__setitem__(0, "gelu"), "activation must be tanh, relu or elu"),
        (lambda t, s: t.__setitem__(11, t[11][:-1]), "one tensor per parameter"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(change, message):
    tensors, scalars = _op_args()
    scalars = list(scalars)
    change(tensors, scalars)
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        torch.ops.rlarena.ppo_gaussian_mlp_epoch_.default(*tensors, *scalars)
