"""rlarena.ops: the compiled GAE and clipped-loss ops against the pure-torch references, their autograd,
torch.library registration (opcheck), input errors, the CPU SIMD variants and the reference fallback."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from op_inputs import make_gae, make_loss, make_value_loss

from rlarena import ops

compiled = pytest.mark.skipif(ops.backend() != "compiled", reason="rlarena._C is not built")

GAMMA, LAM, CLIP = 0.99, 0.95, 0.2


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}


def check_gae(r, v, d, lv, gamma=GAMMA, lam=LAM, fn=None):
    fn = fn or ops.gae
    adv, ret = fn(r, v, d, lv, gamma, lam)
    ref_adv, ref_ret = ops.gae_reference(r, v, d, lv, gamma, lam)
    assert adv.shape == r.shape and ret.shape == r.shape
    assert adv.dtype == r.dtype and ret.dtype == r.dtype
    torch.testing.assert_close(adv, ref_adv, **tol(r.dtype))
    torch.testing.assert_close(ret, ref_ret, **tol(r.dtype))


def check_loss(lp, olp, adv, clip=CLIP, fn=None):
    fn = fn or ops.clipped_surrogate_loss
    lp1 = lp.detach().clone().requires_grad_()
    lp2 = lp.detach().clone().requires_grad_()
    out = fn(lp1, olp, adv, clip)
    ref = ops.clipped_surrogate_loss_reference(lp2, olp, adv, clip)
    for a, b in zip(out, ref):
        assert a.shape == () and a.dtype == lp.dtype
        torch.testing.assert_close(a.detach(), b.detach(), **tol(lp.dtype))
    assert out[0].requires_grad and not out[1].requires_grad and not out[2].requires_grad
    out[0].backward()
    ref[0].backward()
    torch.testing.assert_close(lp1.grad, lp2.grad, **tol(lp.dtype))


def check_value_loss(v, old, ret, clip=CLIP, fn=None):
    fn = fn or ops.clipped_value_loss
    v1 = v.detach().clone().requires_grad_()
    v2 = v.detach().clone().requires_grad_()
    loss = fn(v1, old, ret, clip)
    ref = ops.clipped_value_loss_reference(v2, old, ret, clip)
    assert loss.shape == () and loss.dtype == v.dtype and loss.requires_grad
    torch.testing.assert_close(loss.detach(), ref.detach(), **tol(v.dtype))
    loss.backward()
    ref.backward()
    torch.testing.assert_close(v1.grad, v2.grad, **tol(v.dtype))


# ------------------------------------------------------------------------------------------------ GAE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "T,N", [(1, 1), (1, 7), (5, 1), (2, 3), (64, 4), (300, 16), (33, 130), (2048, 1), (17, 1000)]
)
@pytest.mark.parametrize("dones", ["random", "all", "none"])
def test_gae_matches_reference(T, N, dtype, dones):
    check_gae(*make_gae(T, N, dtype, dones))


@pytest.mark.parametrize("gamma,lam", [(0.0, 0.95), (1.0, 1.0), (0.99, 0.0), (0.5, 0.5)])
def test_gae_gamma_lambda_edges(gamma, lam):
    check_gae(*make_gae(50, 5, torch.float64), gamma=gamma, lam=lam)


def test_gae_known_values():
    # Two steps, one env, episode ends at t = 0: no bootstrap across it.
    r = torch.tensor([[1.0], [2.0]])
    v = torch.tensor([[0.5], [1.0]])
    d = torch.tensor([[1.0], [0.0]])
    lv = torch.tensor([3.0])
    adv, ret = ops.gae(r, v, d, lv, 0.9, 0.8)
    a1 = 2.0 + 0.9 * 3.0 - 1.0
    a0 = 1.0 - 0.5
    torch.testing.assert_close(adv, torch.tensor([[a0], [a1]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5], [a1 + 1.0]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gae_non_contiguous(dtype):
    r, v, d, lv = make_gae(40, 24, dtype)
    # transposed storage, strided rows and a strided last_value
    r_nc = r.T.contiguous().T
    v_nc = torch.cat([v, v], 1)[:, ::2]
    d_nc = d.T.contiguous().T
    lv_nc = torch.stack([lv, lv], 1)[:, 0]
    assert not (r_nc.is_contiguous() or v_nc.is_contiguous() or d_nc.is_contiguous() or lv_nc.is_contiguous())
    check_gae(r_nc, v_nc, d_nc, lv_nc)


def test_gae_outputs_carry_no_gradient():
    r, v, d, lv = make_gae(10, 3)
    v = v.requires_grad_()
    adv, ret = ops.gae(r, v, d, lv, GAMMA, LAM)
    assert not adv.requires_grad and not ret.requires_grad


def test_gae_empty():
    adv, ret = ops.gae(*make_gae(0, 4), GAMMA, LAM)
    assert adv.shape == (0, 4) and ret.shape == (0, 4)
    adv, ret = ops.gae(*make_gae(5, 0), GAMMA, LAM)
    assert adv.shape == (5, 0)


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T,N", [(3000, 1), (1500, 2), (700, 3), (600, 16), (257, 5)])
def test_gae_blocked_scan_over_time(T, N, dtype):
    """The parallel scan over time (long T, narrow N), forced on at small sizes."""
    cfg = torch.ops.rlarena._config
    old_scan, old_threads = cfg("gae_scan_min"), torch.get_num_threads()
    try:
        cfg("gae_scan_min", 1)
        for threads in (2, 3, 4):
            torch.set_num_threads(threads)
            check_gae(*make_gae(T, N, dtype))
    finally:
        cfg("gae_scan_min", old_scan)
        torch.set_num_threads(old_threads)


@compiled
def test_gae_column_blocks_in_parallel():
    cfg = torch.ops.rlarena._config
    old = cfg("parallel_min")
    try:
        cfg("parallel_min", 1)  # split even tiny inputs over the threads
        check_gae(*make_gae(9, 100))
        check_gae(*make_gae(3, 1000, torch.float64))
    finally:
        cfg("parallel_min", old)


# ------------------------------------------------------------------------------------------------ loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (2,), (64,), (1000,), (8195,), (70001,), (16, 7), (3, 4, 5)])
def test_loss_matches_reference(shape, dtype):
    check_loss(*make_loss(shape, dtype))


@pytest.mark.parametrize("spread", [0.0, 0.05, 3.0])
@pytest.mark.parametrize("clip", [0.1, 0.2, 10.0])
def test_loss_clipping_regimes(spread, clip):
    # spread 0: ratio 1 everywhere; 3.0: most ratios far outside the clip range
    check_loss(*make_loss((500,), torch.float64, spread=spread), clip=clip)


def test_loss_zero_advantages_and_ties():
    lp, olp, adv = make_loss((100,), torch.float64)
    check_loss(lp, olp, torch.zeros_like(adv))
    # Ratio exactly on the clip boundaries: the values match the reference; the gradient there is a choice
    # of subgradient (torch's composed version gives the full or the half unclipped gradient, depending on
    # its version): the fused op takes the unclipped one, -A r / n, inside [1 - c, 1 + c] bounds included.
    ratio = torch.tensor([0.8, 1.2, 1.0, 0.5], dtype=torch.float64)
    olp = torch.zeros(4, dtype=torch.float64)
    lp = torch.log(ratio).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 2.0, -3.0], dtype=torch.float64)
    out = ops.clipped_surrogate_loss(lp, olp, adv, CLIP)
    ref = ops.clipped_surrogate_loss_reference(lp.detach(), olp, adv, CLIP)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.detach(), b)
    out[0].backward()
    r = lp.detach().exp()
    expected = torch.where((r >= 1 - CLIP) & (r <= 1 + CLIP), -adv * r / 4, torch.zeros_like(r))
    torch.testing.assert_close(lp.grad, expected)


def test_loss_extreme_log_ratios():
    lp = torch.tensor([-200.0, -50.0, 0.0, 30.0, 80.0], dtype=torch.float32)
    olp = torch.zeros_like(lp)
    adv = torch.tensor([1.0, -1.0, 0.5, 1.0, -1.0])
    check_loss(lp, olp, adv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_non_contiguous(dtype):
    lp, olp, adv = make_loss((32, 8), dtype)
    check_loss(lp.T.contiguous().T, olp[:, :].T.contiguous().T, torch.cat([adv, adv], 1)[:, ::2])


def test_loss_gradcheck():
    lp, olp, adv = make_loss((40,), torch.float64, spread=0.3)
    lp = lp.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.clipped_surrogate_loss(x, olp, adv, CLIP)[0], (lp,))


def test_loss_backward_scales_with_upstream_gradient():
    lp, olp, adv = make_loss((300,), torch.float64)
    lp1 = lp.clone().requires_grad_()
    lp2 = lp.clone().requires_grad_()
    (3.5 * ops.clipped_surrogate_loss(lp1, olp, adv, CLIP)[0]).backward()
    (3.5 * ops.clipped_surrogate_loss_reference(lp2, olp, adv, CLIP)[0]).backward()
    torch.testing.assert_close(lp1.grad, lp2.grad)
    # accumulation into an existing .grad, and a loss that is part of a bigger graph
    loss = ops.clipped_surrogate_loss(lp1, olp, adv, CLIP)[0] + lp1.square().sum()
    loss.backward()
    ref = ops.clipped_surrogate_loss_reference(lp2, olp, adv, CLIP)[0] + lp2.square().sum()
    ref.backward()
    torch.testing.assert_close(lp1.grad, lp2.grad)


def test_loss_no_grad_and_detached_inputs():
    lp, olp, adv = make_loss((50,))
    with torch.no_grad():
        loss, _, _ = ops.clipped_surrogate_loss(lp.requires_grad_(), olp, adv, CLIP)
    assert not loss.requires_grad
    loss, _, _ = ops.clipped_surrogate_loss(lp.detach(), olp, adv, CLIP)
    assert not loss.requires_grad


def test_loss_retain_graph_twice():
    lp, olp, adv = make_loss((64,), torch.float64)
    lp = lp.requires_grad_()
    loss = ops.clipped_surrogate_loss(lp, olp, adv, CLIP)[0]
    loss.backward(retain_graph=True)
    first = lp.grad.clone()
    loss.backward()
    torch.testing.assert_close(lp.grad, 2 * first)


@pytest.mark.parametrize("fn", ["current", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (64,), (8195,), (16, 7)])
def test_loss_and_grad_matches_autograd(shape, dtype, fn):
    loss_and_grad = ops.clipped_surrogate_loss_and_grad if fn == "current" else ops._loss_and_grad_fallback
    lp, olp, adv = make_loss(shape, dtype)
    lp = lp.requires_grad_()  # a logp that requires grad is fine: the call never touches autograd
    out = loss_and_grad(lp, olp, adv, CLIP)
    assert len(out) == 4 and not any(t.requires_grad for t in out) and lp.grad is None
    assert out[3].shape == lp.shape and out[3].dtype == dtype
    ref_lp = lp.detach().clone().requires_grad_()
    ref = ops.clipped_surrogate_loss_reference(ref_lp, olp, adv, CLIP)
    ref[0].backward()
    for a, b in zip(out, (*ref, ref_lp.grad)):
        torch.testing.assert_close(a, b.detach(), **tol(dtype))


def test_loss_and_grad_drives_a_policy_update_like_backward():
    # The returned gradient, pushed through the policy with autograd, gives the parameters the same gradient
    # as loss.backward() on the autograd version (here with an extra loss term sharing the backward pass).
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 1).double()
    x = torch.randn(32, 5, dtype=torch.float64)
    _, olp, adv = make_loss((32,), torch.float64)

    def grads(use_and_grad: bool):
        net.zero_grad(set_to_none=True)
        logp = net(x).squeeze(-1)
        extra = 0.1 * logp.square().mean()
        if use_and_grad:
            g = ops.clipped_surrogate_loss_and_grad(logp, olp, adv, CLIP)[3]
            torch.autograd.backward((logp, extra), (g, None))
        else:
            (ops.clipped_surrogate_loss(logp, olp, adv, CLIP)[0] + extra).backward()
        return [p.grad.clone() for p in net.parameters()]

    for a, b in zip(grads(True), grads(False)):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------ value loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (64,), (8195,), (70001,), (16, 7)])
@pytest.mark.parametrize("clip", [0.2, math.inf])
def test_value_loss_matches_reference(shape, dtype, clip):
    check_value_loss(*make_value_loss(shape, dtype), clip=clip)


@pytest.mark.parametrize("spread", [0.0, 0.05, 3.0])
@pytest.mark.parametrize("clip", [0.1, 10.0])
def test_value_loss_clipping_regimes(spread, clip):
    # spread 0: the new value is the old one; 3.0: most steps far outside the clip range
    check_value_loss(*make_value_loss((500,), torch.float64, spread=spread), clip=clip)


def test_value_loss_unclipped_default_and_fallback():
    v, old, ret = make_value_loss((300,), torch.float64)
    torch.testing.assert_close(ops.clipped_value_loss(v, old, ret), 0.5 * ((v - ret) ** 2).mean())
    check_value_loss(v, old, ret, fn=ops._value_loss_fallback)


def test_value_loss_gradcheck_and_upstream_scaling():
    v, old, ret = make_value_loss((40,), torch.float64, spread=0.3)
    v = v.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.clipped_value_loss(x, old, ret, CLIP), (v,))
    (2.5 * ops.clipped_value_loss(v, old, ret, CLIP)).backward()
    leaf = v.detach().clone().requires_grad_()
    (2.5 * ops.clipped_value_loss_reference(leaf, old, ret, CLIP)).backward()
    torch.testing.assert_close(v.grad, leaf.grad)


@compiled
@pytest.mark.parametrize("loss", ["clipped_surrogate_loss", "clipped_value_loss"])
def test_loss_result_does_not_depend_on_threads(loss):
    op = getattr(torch.ops.rlarena, loss)
    inputs = make_loss((300_000,)) if loss == "clipped_surrogate_loss" else make_value_loss((300_000,))
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(op(*inputs, CLIP))
    finally:
        torch.set_num_threads(before)
    for o in outs[1:]:
        for a, b in zip(o, outs[0]):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------- SIMD variants (CPU)


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_cpu_isa_variant(dtype):
    cfg = torch.ops.rlarena._config
    best = cfg("isa")
    try:
        for isa in range(best + 1):
            assert cfg("isa", isa) >= 0 and cfg("isa") == isa
            check_gae(*make_gae(70, 37, dtype))
            check_gae(*make_gae(500, 1, dtype))
            check_loss(*make_loss((5003,), dtype, spread=1.0))
            check_loss(*make_loss((7,), dtype))
            check_value_loss(*make_value_loss((5003,), dtype, spread=1.0))
            check_value_loss(*make_value_loss((9,), dtype), clip=math.inf)
    finally:
        cfg("isa", best)


@compiled
def test_config_rejects_unknown_key():
    with pytest.raises(RuntimeError, match="unknown key"):
        torch.ops.rlarena._config("nope")


# ----------------------------------------------------------------------- torch.library registration


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_gae(dtype):
    r, v, d, lv = make_gae(12, 5, dtype)
    torch.library.opcheck(torch.ops.rlarena.gae.default, (r, v, d, lv, GAMMA, LAM))
    torch.library.opcheck(torch.ops.rlarena.gae.default, (r, v.requires_grad_(), d, lv, GAMMA, LAM))


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_clipped_surrogate_loss(dtype):
    lp, olp, adv = make_loss((33,), dtype)
    op = torch.ops.rlarena.clipped_surrogate_loss.default
    torch.library.opcheck(op, (lp, olp, adv, CLIP))
    torch.library.opcheck(op, (lp.clone().requires_grad_(), olp, adv, CLIP))


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_clipped_value_loss(dtype):
    v, old, ret = make_value_loss((33,), dtype)
    op = torch.ops.rlarena.clipped_value_loss.default
    torch.library.opcheck(op, (v, old, ret, CLIP))
    torch.library.opcheck(op, (v.clone().requires_grad_(), old, ret, CLIP))


@compiled
def test_torch_compile_traces_both_ops():
    def step(r, v, d, lv, lp, olp):
        adv, ret = ops.gae(r, v, d, lv, GAMMA, LAM)
        flat = adv.reshape(-1)
        loss, cf, kl = ops.clipped_surrogate_loss(lp, olp, flat, CLIP)
        return loss + ops.clipped_value_loss(lp, olp, ret.reshape(-1), CLIP), cf, kl

    r, v, d, lv = make_gae(6, 4)
    lp, olp, _ = make_loss((24,))
    lp1 = lp.clone().requires_grad_()
    lp2 = lp.clone().requires_grad_()
    compiled_step = torch.compile(step, backend="aot_eager", fullgraph=True)
    out = compiled_step(r, v, d, lv, lp1, olp)
    ref = step(r, v, d, lv, lp2, olp)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b)
    out[0].backward()
    ref[0].backward()
    torch.testing.assert_close(lp1.grad, lp2.grad)


# --------------------------------------------------------------------------------------- bad inputs


def _paths():
    paths = [("current", ops.gae, ops.clipped_surrogate_loss)]
    paths.append(("reference", ops._gae_fallback, lambda *a: ops._loss_fallback(*a)))
    paths.append(("current_and_grad", ops.gae, ops.clipped_surrogate_loss_and_grad))
    paths.append(("reference_and_grad", ops._gae_fallback, lambda *a: ops._loss_and_grad_fallback(*a)))
    return paths


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p[0])
def test_gae_bad_inputs(path):
    _, gae, _ = path
    r, v, d, lv = make_gae(8, 3)
    with pytest.raises(ValueError, match="values has shape"):
        gae(r, v[:, :2], d, lv, GAMMA, LAM)
    with pytest.raises(ValueError, match="dones has shape"):
        gae(r, v, d[:7], lv, GAMMA, LAM)
    with pytest.raises(ValueError, match=r"last_value must be \[N\]"):
        gae(r, v, d, lv[:2], GAMMA, LAM)
    with pytest.raises(ValueError, match="time-major"):
        gae(r[0], v[0], d[0], lv, GAMMA, LAM)
    with pytest.raises(TypeError, match="float32 or float64"):
        gae(r.long(), v.long(), d.long(), lv.long(), GAMMA, LAM)
    with pytest.raises(TypeError, match="same dtype"):
        gae(r, v.double(), d, lv, GAMMA, LAM)
    with pytest.raises(TypeError, match="same dtype"):
        gae(r, v, d.bool(), lv, GAMMA, LAM)
    with pytest.raises(ValueError, match="gamma must be in"):
        gae(r, v, d, lv, 1.5, LAM)
    with pytest.raises(ValueError, match="lam must be in"):
        gae(r, v, d, lv, GAMMA, -0.1)


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p[0])
def test_loss_bad_inputs(path):
    _, _, loss = path
    lp, olp, adv = make_loss((10,))
    with pytest.raises(ValueError, match="old_logp has shape"):
        loss(lp, olp[:9], adv, CLIP)
    with pytest.raises(ValueError, match="advantages has shape"):
        loss(lp, olp, adv.reshape(2, 5), CLIP)
    with pytest.raises(TypeError, match="float32 or float64"):
        loss(lp.int(), olp.int(), adv.int(), CLIP)
    with pytest.raises(TypeError, match="same dtype"):
        loss(lp, olp.double(), adv, CLIP)
    with pytest.raises(TypeError, match="same dtype"):
        loss(lp.double(), olp.double(), adv.half(), CLIP)
    with pytest.raises(ValueError, match="clip_coef must be > 0"):
        loss(lp, olp, adv, 0.0)
    # the compiled op's dispatcher and the reference word it differently; both name the argument
    named = r"'logp' must be a tensor|type 'Tensor' for argument 'logp'"
    with pytest.raises((TypeError, RuntimeError), match=named):
        loss(lp.tolist(), olp, adv, CLIP)


@pytest.mark.parametrize(
    "value_loss", [ops.clipped_value_loss, ops._value_loss_fallback], ids=["current", "reference"]
)
def test_value_loss_bad_inputs(value_loss):
    v, old, ret = make_value_loss((10,))
    with pytest.raises(ValueError, match="old_value has shape"):
        value_loss(v, old[:9], ret, CLIP)
    with pytest.raises(ValueError, match="returns has shape"):
        value_loss(v, old, ret.reshape(2, 5), CLIP)
    with pytest.raises(TypeError, match="float32 or float64"):
        value_loss(v.int(), old.int(), ret.int(), CLIP)
    with pytest.raises(TypeError, match="same dtype"):
        value_loss(v, old.double(), ret, CLIP)
    with pytest.raises(ValueError, match="clip_coef must be > 0"):
        value_loss(v, old, ret, -1.0)


# ---------------------------------------------------------------------------------- fallback path


def test_reference_fallback_functions_match():
    check_gae(*make_gae(30, 4), fn=ops._gae_fallback)
    check_loss(*make_loss((40,)), fn=ops._loss_fallback)


def _run_python(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


_FALLBACK_CHECK = """
    import sys, warnings
    {prelude}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from rlarena import ops
    import torch
    assert ops.backend() == "reference", ops.backend()
    r = torch.randn(20, 3); v = torch.randn(20, 3); d = (torch.rand(20, 3) < 0.2).float(); lv = torch.randn(3)
    a, ret = ops.gae(r, v, d, lv, 0.99, 0.95)
    ra, rr = ops.gae_reference(r, v, d, lv, 0.99, 0.95)
    assert torch.allclose(a, ra) and torch.allclose(ret, rr)
    lp = torch.randn(16, requires_grad=True); olp = torch.randn(16); adv = torch.randn(16)
    loss, cf, kl = ops.clipped_surrogate_loss(lp, olp, adv, 0.2)
    loss.backward()
    assert lp.grad is not None and not cf.requires_grad
    *_, g = ops.clipped_surrogate_loss_and_grad(lp, olp, adv, 0.2)
    assert torch.allclose(g, lp.grad) and not g.requires_grad
    val = torch.randn(16, requires_grad=True); old = torch.randn(16); ret = torch.randn(16)
    vl = ops.clipped_value_loss(val, old, ret, 0.2)
    assert torch.allclose(vl, ops.clipped_value_loss_reference(val, old, ret, 0.2)) and vl.requires_grad
    try:
        ops.gae(r, v[:, :2], d, lv, 0.99, 0.95)
    except ValueError:
        pass
    else:
        raise AssertionError("no error for mismatched shapes")
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    print("WARNINGS", len([m for m in msgs if "reference" in m]))
"""


def test_forced_reference_backend():
    out = _run_python(_FALLBACK_CHECK.format(prelude=""), {"RLARENA_FORCE_REFERENCE": "1"})
    assert out.returncode == 0, out.stderr
    assert "WARNINGS 0" in out.stdout  # asked for: no warning


def test_reference_backend_when_extension_is_missing():
    prelude = "sys.modules['rlarena._C'] = None  # makes `from rlarena import _C` fail"
    out = _run_python(_FALLBACK_CHECK.format(prelude=prelude), {"RLARENA_FORCE_REFERENCE": "0"})
    assert out.returncode == 0, out.stderr
    assert "WARNINGS 1" in out.stdout  # warned, once
