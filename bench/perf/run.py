"""Time the fused ops against their peers side by side; print medians and ratios; write JSON.

    python -m rlarena.bench.perf.run --out perf.json      (also: rlarena bench --out perf.json)

Every case times all of its implementations in interleaved rounds (each round runs each implementation
for a few milliseconds, in a rotating order), so that load from other processes hits all of them alike:
on a shared machine the ratios are what to read, more than the absolute times. The median per call over
the rounds is reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from rlarena import ops
from rlarena.bench.perf import peers

GAE_PEERS = ("torch_loop", "numpy_loop", "torchrl")


def measure(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    target_s: float,
    warm_s: float = 0.02,
    warm_calls: int = 3,
) -> dict[str, dict[str, float]]:
    """Median (and quartiles) seconds per call of each function, timed in interleaved rounds."""
    inner = {}
    for name, fn in fns.items():
        # Warm-up (first-call costs, caches, the allocator's state) for >= warm_calls calls and >= warm_s
        # seconds; the median warm-up call sets how many calls make one sample.
        warm, start = [], time.perf_counter()
        while len(warm) < warm_calls or (time.perf_counter() - start < warm_s and len(warm) < 1000):
            t0 = time.perf_counter()
            fn()
            warm.append(time.perf_counter() - t0)
        dt = max(statistics.median(warm), 1e-7)
        inner[name] = max(1, min(10000, int(target_s / dt)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    gc.collect()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, k = fns[name], inner[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
    out = {}
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
        out[name] = {"median": statistics.median(xs), "q1": q[0], "q3": q[2], "calls": inner[name] * len(xs)}
    return out


def timed(fns: dict[str, Callable[[], object]], rounds: int, target_s: float, quick: bool):
    """``measure`` (a short warm-up when ``quick``); returns its report and the medians by name."""
    warm = {"warm_s": 0.0, "warm_calls": 1} if quick else {}
    t = measure(fns, rounds, target_s, **warm)
    return t, {k: val["median"] for k, val in t.items()}


def gae_cases(shapes, rounds: int, target_s: float, quick: bool = False) -> list[dict]:
    torchrl_fn = peers.torchrl_gae_fn()
    results = []
    for T, N in shapes:
        r, v, d, lv = peers.gae_inputs(T, N)
        x = torch.randn(T, N)
        rn, vn, dn, lvn = (t.numpy() for t in (r, v, d, lv))
        fns = {
            "rlarena": lambda r=r, v=v, d=d, lv=lv: peers.gae_rlarena(r, v, d, lv),
            "floor": lambda r=r, v=v, d=d, x=x: peers.memory_floor(r, v, d, x),
            "torch_loop": lambda r=r, v=v, d=d, lv=lv: peers.gae_torch_loop(r, v, d, lv),
            "numpy_loop": lambda rn=rn, vn=vn, dn=dn, lvn=lvn: peers.gae_numpy_loop(rn, vn, dn, lvn),
        }
        if torchrl_fn is not None:
            fns["torchrl"] = lambda r=r, v=v, d=d, lv=lv: peers.gae_torchrl(r, v, d, lv, _fn=torchrl_fn)
        # Every implementation must agree before it is timed.
        ref_adv, _ = ops.gae_reference(r, v, d, lv, peers.GAMMA, peers.LAM)
        for name in ("rlarena", "torch_loop", "numpy_loop", "torchrl"):
            if name in fns:
                adv = torch.as_tensor(fns[name]()[0])
                torch.testing.assert_close(adv, ref_adv, rtol=1e-4, atol=1e-4, msg=f"{name} disagrees")
        t, med = timed(fns, rounds, target_s, quick)
        ratios = {f"vs_{p}": med[p] / med["rlarena"] for p in GAE_PEERS if p in med}
        ratios["of_floor"] = med["rlarena"] / med["floor"]
        results.append({"shape": f"{T}x{N}", "T": T, "N": N, "times_s": t, "ratios": ratios})
    return results


def loss_cases(sizes, rounds: int, target_s: float, quick: bool = False) -> list[dict]:
    results = []
    for n in sizes:
        lp, olp, adv = peers.loss_inputs(n)
        fns = {
            "rlarena": lambda lp=lp, olp=olp, adv=adv: peers.loss_rlarena(lp, olp, adv),
            "rlarena_fused": lambda lp=lp, olp=olp, adv=adv: peers.loss_rlarena_fused(lp, olp, adv),
            "composed": lambda lp=lp, olp=olp, adv=adv: peers.loss_composed(lp, olp, adv),
            "autograd_floor": lambda lp=lp: peers.autograd_floor(lp),
        }
        out_f = peers.loss_rlarena(lp, olp, adv)
        g_f = lp.grad.clone()
        out_c = peers.loss_composed(lp, olp, adv)
        for a, b in zip(out_f, out_c):
            torch.testing.assert_close(a, b.detach(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(g_f, lp.grad, rtol=1e-4, atol=1e-9)
        *out_ag, g_ag = peers.loss_rlarena_fused(lp, olp, adv)
        for a, b in zip(out_ag, out_c):
            torch.testing.assert_close(a, b.detach(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(g_ag, g_f)
        t, med = timed(fns, rounds, target_s, quick)
        results.append(
            {
                "n": n,
                "times_s": t,
                "ratios": {
                    "fused_vs_composed": med["composed"] / med["rlarena_fused"],
                    "vs_composed": med["composed"] / med["rlarena"],
                    "of_autograd_floor": med["rlarena"] / med["autograd_floor"],
                    "max_attainable": med["composed"] / med["autograd_floor"],
                },
            }
        )
    return results


def value_loss_cases(sizes, rounds: int, target_s: float, quick: bool = False) -> list[dict]:
    results = []
    for n in sizes:
        v, old, ret = peers.value_loss_inputs(n)
        fns = {
            "rlarena": lambda v=v, old=old, ret=ret: peers.value_loss_rlarena(v, old, ret),
            "composed": lambda v=v, old=old, ret=ret: peers.value_loss_composed(v, old, ret),
            "autograd_floor": lambda v=v: peers.autograd_floor(v),
        }
        loss_f = peers.value_loss_rlarena(v, old, ret)
        g_f = v.grad.clone()
        loss_c = peers.value_loss_composed(v, old, ret)
        torch.testing.assert_close(loss_f, loss_c, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(g_f, v.grad, rtol=1e-4, atol=1e-9)
        t, med = timed(fns, rounds, target_s, quick)
        ratios = {"vs_composed": med["composed"] / med["rlarena"]}
        results.append({"n": n, "times_s": t, "ratios": ratios})
    return results


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "rlarena_backend": ops.backend(),
    }
    if ops.backend() == "compiled":
        info["rlarena_cpu_isa"] = ops.cpu_isa()
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def _fmt_t(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    return f"{s * 1e3:.2f} ms"


def _fmt_r(x: float | None) -> str:
    return "-" if x is None else (f"{x:.0f}x" if x >= 100 else f"{x:.1f}x")


def _md_table(title: list[str], header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        *title,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _medians(case: dict) -> dict[str, float]:
    return {k: v["median"] for k, v in case["times_s"].items()}


def format_tables(report: dict) -> str:
    lines = []
    if report.get("gae"):
        rows = []
        for c in report["gae"]:
            t, r = _medians(c), c["ratios"]
            rows.append(
                [
                    c["shape"],
                    *(_fmt_t(t[k]) for k in ("rlarena", "floor", "torch_loop", "numpy_loop")),
                    _fmt_t(t["torchrl"]) if "torchrl" in t else "not installed",
                    *(_fmt_r(r.get(k)) for k in ("vs_torch_loop", "vs_numpy_loop", "vs_torchrl")),
                    f"{r['of_floor']:.2f}",
                ]
            )
        lines += _md_table(
            [
                "GAE, float32, median per call (speed-up = peer time / rlarena time;"
                " floor ratio = rlarena / floor)"
            ],
            ["T x N", "rlarena", "memory floor", "torch loop (CleanRL)", "numpy loop (SB3)", "TorchRL vec"]
            + ["vs torch loop", "vs numpy loop", "vs TorchRL", "rlarena / floor"],
            rows,
        )
    if report.get("loss"):
        rows = []
        for c in report["loss"]:
            t, r = _medians(c), c["ratios"]
            rows.append(
                [
                    str(c["n"]),
                    *(_fmt_t(t[k]) for k in ("rlarena_fused", "rlarena", "composed")),
                    _fmt_r(r["fused_vs_composed"]),
                    _fmt_r(r["vs_composed"]),
                    _fmt_t(t["autograd_floor"]),
                    _fmt_r(r["max_attainable"]),
                ]
            )
        lines += _md_table(
            [
                "PPO clipped loss, float32, forward + backward, median per call",
                "  rlarena fused call: clipped_surrogate_loss_and_grad (loss, statistics, d loss / d logp)",
                "  rlarena + backward: clipped_surrogate_loss, then loss.backward()",
                "  composed autograd: the loss written with torch ops, then loss.backward()",
                "  autograd floor: logp.sum().backward(), the engine's cost that any loss.backward() pays",
                "  best via backward: composed / floor, the most any op can gain through loss.backward()",
            ],
            ["n", "rlarena fused call", "rlarena + backward", "composed autograd", "speed-up (fused call)"]
            + ["speed-up (+ backward)", "autograd floor", "best via backward"],
            rows,
        )
    if report.get("value_loss"):
        rows = []
        for c in report["value_loss"]:
            t = _medians(c)
            rows.append(
                [
                    str(c["n"]),
                    _fmt_t(t["rlarena"]),
                    _fmt_t(t["composed"]),
                    _fmt_r(c["ratios"]["vs_composed"]),
                    _fmt_t(t["autograd_floor"]),
                ]
            )
        lines += _md_table(
            ["PPO clipped value loss, float32, forward + loss.backward(), median per call"],
            ["n", "rlarena + backward", "composed autograd", "speed-up", "autograd floor"],
            rows,
        )
    checks = report.get("targets", [])
    if checks:
        lines.append("Targets:")
        for chk in checks:
            lines.append(f"  [{'ok' if chk['met'] else 'MISSED'}] {chk['what']}: {chk['value']}")
    return "\n".join(lines)


def evaluate_targets(report: dict) -> list[dict]:
    checks = []
    for c in report.get("gae", []):
        r = c["ratios"]
        if c["shape"] in ("2048x1", "2048x16"):
            checks.append(
                {
                    "what": f"GAE {c['shape']} >= 100x the numpy loop",
                    "value": _fmt_r(r["vs_numpy_loop"]),
                    "met": r["vs_numpy_loop"] >= 100,
                }
            )
        checks.append(
            {
                "what": f"GAE {c['shape']} within 3x of the memory floor",
                "value": f"{r['of_floor']:.2f}x the floor",
                "met": r["of_floor"] <= 3,
            }
        )
    for c in report.get("loss", []):
        r = c["ratios"]
        checks.append(
            {
                "what": f"clipped loss n={c['n']} fused forward + backward >= 10x composed autograd",
                "value": (
                    f"{_fmt_r(r['fused_vs_composed'])} (through loss.backward(): {_fmt_r(r['vs_composed'])},"
                    f" where the autograd floor allows {_fmt_r(r['max_attainable'])})"
                ),
                "met": r["fused_vs_composed"] >= 10,
            }
        )
    return checks


def run(only: str | None, rounds: int, target_s: float, threads: int | None, quick: bool = False) -> dict:
    if threads:
        torch.set_num_threads(threads)
    report: dict = {"machine": machine_info(), "rounds": rounds}
    t0 = time.perf_counter()
    if only in (None, "gae"):
        report["gae"] = gae_cases(peers.GAE_SHAPES, rounds, target_s, quick)
    if only in (None, "loss"):
        report["loss"] = loss_cases(peers.LOSS_SIZES, rounds, target_s, quick)
        report["value_loss"] = value_loss_cases(peers.LOSS_SIZES, rounds, target_s, quick)
    report["wall_time_s"] = round(time.perf_counter() - t0, 1)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    report["targets"] = evaluate_targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rlarena bench",
        description="Time rlarena's fused ops against their peers; print and save a table.",
    )
    parser.add_argument(
        "--out", default="perf.json", help="where to write the JSON report (default perf.json)"
    )
    parser.add_argument("--only", choices=("gae", "loss"), help="run one suite only (loss: both PPO losses)")
    parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved timing rounds per case (default 15)"
    )
    parser.add_argument(
        "--target-ms", type=float, default=5.0, help="approximate time per sample, in ms (default 5)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="2 short rounds: a smoke run, not a measurement")
    args = parser.parse_args(argv)
    rounds, target_s = (2, 0.2e-3) if args.quick else (max(args.rounds, 1), args.target_ms * 1e-3)
    report = run(args.only, rounds, target_s, args.threads, args.quick)
    m = report["machine"]
    print(
        f"machine: {m['cpu']}, {m['logical_cores']} logical cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), rlarena {m['rlarena_backend']}"
        + (f" ({m['rlarena_cpu_isa']})" if "rlarena_cpu_isa" in m else "")
        + (
            f", load average {m['load_average_1min']} -> {m['load_average_1min_end']}"
            if "load_average_1min" in m
            else ""
        )
    )
    write_report(report, format_tables(report), rounds, args.out)
    return 0


def write_report(report: dict, tables: str, rounds: int, out: str | None) -> None:
    """Print the tables under the rounds and wall-time line; write the JSON report to ``out`` if given."""
    print(f"{rounds} interleaved rounds per case; wall time {report['wall_time_s']} s\n")
    print(tables)
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.exit(main())
