"""rlarena's fused ops against the code users would otherwise run, on one device (a GPU by default).

    python scripts/gpu_bench.py [--device cuda] [--out FILE] [--quick]

GAE against the CleanRL-style torch loop and the memory floor; the clipped surrogate loss and the clipped
value loss against the same math composed of torch ops with autograd: the peers of `rlarena bench`
(bench/perf/peers.py), at its four sizes each, inputs moved to the device. Each implementation is checked
against the pure-torch reference on the same device before it is timed. On a GPU the time of k calls is
read off CUDA events recorded around them (the launches queue without waiting; the end event waits for the
last kernel), in interleaved rounds; the report is the median per call. `--device cpu --quick` runs the
same code on tiny sizes: scripts/gpu-check.sh's dry run uses it to check this script where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from rlarena import ops
from rlarena.bench.perf import peers

QUICK_GAE = ((64, 4), (16, 256))
QUICK_LOSS = (64, 4096)
OPS = ("gae", "clipped_surrogate_loss", "clipped_value_loss")


def _timer(device: torch.device) -> Callable[[Callable[[], object], int], float]:
    """Seconds per call of ``fn`` over ``k`` calls in a row."""
    if device.type == "cuda":

        def run(fn: Callable[[], object], k: int) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(k):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / k

        return run

    def run_cpu(fn: Callable[[], object], k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        return (time.perf_counter() - t0) / k

    return run_cpu


def measure(
    fns: dict[str, Callable[[], object]], device: torch.device, rounds: int, target_s: float
) -> dict[str, dict[str, float]]:
    """Median and quartiles of seconds per call, each implementation once a round in a rotating order."""
    run = _timer(device)
    calls = {}
    for name, fn in fns.items():
        for _ in range(3):  # warm-up: the first calls pay for allocation and kernel loading
            fn()
        dt = max(run(fn, 1), 1e-7)
        calls[name] = max(1, min(10000, int(target_s / dt)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(run(fns[name], calls[name]))
    out = {}
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
        out[name] = {"median": statistics.median(xs), "q1": q[0], "q3": q[2], "calls": calls[name] * len(xs)}
    return out


def _on(device: torch.device, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """The CPU inputs on ``device``, a leaf that required grad still a leaf that requires grad."""
    return [t.detach().to(device).requires_grad_(t.requires_grad) for t in tensors]


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-4, atol=1e-6, msg=lambda m: f"{what}: {m}")


def gae_case(T: int, N: int, device: torch.device, rounds: int, target_s: float) -> dict[str, Any]:
    r, v, d, lv = _on(device, *peers.gae_inputs(T, N))
    x = torch.randn(T, N, device=device)
    ref_adv, ref_ret = ops.gae_reference(r, v, d, lv, peers.GAMMA, peers.LAM)
    for name, fn in (("rlarena", peers.gae_rlarena), ("torch_loop", peers.gae_torch_loop)):
        adv, ret = fn(r, v, d, lv)
        torch.testing.assert_close(adv, ref_adv, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
        torch.testing.assert_close(ret, ref_ret, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    fns = {
        "rlarena": lambda: peers.gae_rlarena(r, v, d, lv),
        "torch_loop": lambda: peers.gae_torch_loop(r, v, d, lv),
        "memory_floor": lambda: peers.memory_floor(r, v, d, x),
    }
    t = measure(fns, device, rounds, target_s)
    med = {k: val["median"] for k, val in t.items()}
    ratios = {
        "vs_torch_loop": med["torch_loop"] / med["rlarena"],
        "of_floor": med["rlarena"] / med["memory_floor"],
    }
    return {"shape": f"{T}x{N}", "T": T, "N": N, "times_s": t, "ratios": ratios}


def loss_case(n: int, device: torch.device, rounds: int, target_s: float) -> dict[str, Any]:
    lp, olp, adv = _on(device, *peers.loss_inputs(n))
    out_c = peers.loss_composed(lp, olp, adv)
    grad_c = lp.grad.clone()
    out_f = peers.loss_rlarena(lp, olp, adv)
    for a, b, what in zip(out_f, out_c, ("loss", "clip_fraction", "approx_kl")):
        _close(a, b, f"rlarena {what}")
    _close(lp.grad, grad_c, "rlarena grad")
    *out_g, grad_g = peers.loss_rlarena_fused(lp, olp, adv)
    for a, b, what in zip(out_g, out_c, ("loss", "clip_fraction", "approx_kl")):
        _close(a, b, f"rlarena_fused {what}")
    _close(grad_g, grad_c, "rlarena_fused grad")
    fns = {
        "rlarena": lambda: peers.loss_rlarena(lp, olp, adv),
        "rlarena_fused": lambda: peers.loss_rlarena_fused(lp, olp, adv),
        "composed": lambda: peers.loss_composed(lp, olp, adv),
        "autograd_floor": lambda: peers.autograd_floor(lp),
    }
    t = measure(fns, device, rounds, target_s)
    med = {k: val["median"] for k, val in t.items()}
    ratios = {
        "vs_composed": med["composed"] / med["rlarena"],
        "fused_vs_composed": med["composed"] / med["rlarena_fused"],
        "of_autograd_floor": med["rlarena"] / med["autograd_floor"],
    }
    return {"n": n, "times_s": t, "ratios": ratios}


def value_loss_case(n: int, device: torch.device, rounds: int, target_s: float) -> dict[str, Any]:
    v, old, ret = _on(device, *peers.value_loss_inputs(n))
    loss_c = peers.value_loss_composed(v, old, ret)
    grad_c = v.grad.clone()
    _close(peers.value_loss_rlarena(v, old, ret), loss_c, "rlarena loss")
    _close(v.grad, grad_c, "rlarena grad")
    fns = {
        "rlarena": lambda: peers.value_loss_rlarena(v, old, ret),
        "composed": lambda: peers.value_loss_composed(v, old, ret),
        "autograd_floor": lambda: peers.autograd_floor(v),
    }
    t = measure(fns, device, rounds, target_s)
    return {"n": n, "times_s": t, "ratios": {"vs_composed": t["composed"]["median"] / t["rlarena"]["median"]}}


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    info["backend"] = ops.backend()
    # Which ops run a kernel registered for this device (rather than a fallback through other ops).
    key = "CUDA" if device.type == "cuda" else "CPU"
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    info["kernels"] = {op: ops.backend() == "compiled" and has(f"rlarena::{op}", key) for op in OPS}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, multiprocessors=props.multi_processor_count)
        info["memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


def run(device: torch.device, quick: bool) -> dict[str, Any]:
    rounds, target_s = (2, 1e-4) if quick else (9, 0.02)
    gae_shapes = QUICK_GAE if quick else peers.GAE_SHAPES
    loss_sizes = QUICK_LOSS if quick else peers.LOSS_SIZES
    t0 = time.perf_counter()
    report: dict[str, Any] = {"info": device_info(device), "rounds": rounds, "target_s": target_s}
    report["gae"] = [gae_case(T, N, device, rounds, target_s) for T, N in gae_shapes]
    report["clipped_surrogate_loss"] = [loss_case(n, device, rounds, target_s) for n in loss_sizes]
    report["clipped_value_loss"] = [value_loss_case(n, device, rounds, target_s) for n in loss_sizes]
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return report


def summary(report: dict[str, Any]) -> list[str]:
    info = report["info"]
    lines = [f"{info['device']} ({info.get('name', '')}), torch {info['torch']}"]
    for case in report["gae"]:
        med = case["times_s"]["rlarena"]["median"]
        ratio = case["ratios"]["vs_torch_loop"]
        lines.append(f"gae {case['shape']:>10}: {med * 1e6:9.1f} us, {ratio:7.1f}x the torch loop")
    for op in ("clipped_surrogate_loss", "clipped_value_loss"):
        for case in report[op]:
            med = case["times_s"]["rlarena"]["median"]
            ratio = case["ratios"]["vs_composed"]
            lines.append(f"{op} {case['n']:>8}: {med * 1e6:9.1f} us, {ratio:6.2f}x composed")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", help="write the report here as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds: a check that it runs")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device", file=sys.stderr)
        return 2
    # One thread, the project's default (conf/config.yaml torch_threads): the CPU side of a launch-bound
    # loop and `rlarena bench --threads 1` stay comparable.
    torch.set_num_threads(1)
    report = run(device, args.quick)
    print("\n".join(summary(report)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
