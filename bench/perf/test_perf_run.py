"""The one-command benchmark (`rlarena bench`) runs end to end and writes its JSON report."""

from __future__ import annotations

import json

from rlarena.bench.cli import bench_main
from rlarena.bench.perf import loop, run


def test_bench_command_quick(tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert run.main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {c["shape"] for c in report["gae"]} == {"2048x1", "2048x16", "128x2048", "64x8192"}
    assert [c["n"] for c in report["loss"]] == [64, 4096, 65536, 1048576]
    for c in report["gae"]:
        assert {"rlarena", "floor", "torch_loop", "numpy_loop"} <= set(c["times_s"])
        assert c["ratios"]["vs_numpy_loop"] > 0 and c["ratios"]["of_floor"] > 0
    for c in report["loss"]:
        assert c["ratios"]["vs_composed"] > 0 and c["ratios"]["fused_vs_composed"] > 0
        assert {"rlarena", "rlarena_fused", "composed", "autograd_floor"} <= set(c["times_s"])
    assert [c["n"] for c in report["value_loss"]] == [64, 4096, 65536, 1048576]
    assert all(c["ratios"]["vs_composed"] > 0 for c in report["value_loss"])
    assert report["machine"]["logical_cores"] >= 1 and report["targets"]
    printed = capsys.readouterr().out
    assert "| T x N |" in printed and "| n |" in printed and "Targets:" in printed


def test_bench_loop_command_quick(tmp_path, capsys):
    out = tmp_path / "loop.json"
    assert bench_main(["--loop", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [c["shape"] for c in report["collector"]] == ["hopper-1x2048", "halfcheetah-8x256"]
    assert all(c["ratio"] > 0 for c in report["collector"])
    assert [c["algo"] for c in report["algorithms"]] == loop.mujoco_algorithms()
    assert {"reinforce", "a2c", "trpo", "ppo"} <= {c["algo"] for c in report["fast_path"]}
    assert all(c["ratio"] > 0 for c in report["fast_path"])
    assert all(c["steps_per_s"] > 0 for c in report["algorithms"])
    assert "Collector vs bare env stepping" in capsys.readouterr().out
