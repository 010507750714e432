#!/usr/bin/env python
"""Run every learning case of the test suite over seeds and CPU instruction-set settings; print the table.

    .venv/bin/python scripts/learning_matrix.py --out docs/results/learning-matrix.json
    .venv/bin/python scripts/learning_matrix.py --cases ppo,preference --seeds 0-4 --isa native,avx2

Each (setting, case, seed) runs in its own process (the ISA variables must be set before torch loads), one
job per core. The text cases share one SFT model per setting (and one reward model on it, when a case
warm-starts from one), trained first. The thresholds of the learning
tests (``tests/learning_cases.py``) are chosen from this table: they must hold for the median over seeds
under every setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

# What each setting pins. The MKL/oneDNN pins bring the BLAS too onto its AVX2 code path, closer to what an
# AVX2-only CPU runs (they still do not make another vendor's MKL kernel choices).
ISA_SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"RLARENA_CPU_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2"},
    "avx2-blas": {
        "RLARENA_CPU_ISA": "avx2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "default": {"RLARENA_CPU_ISA": "base", "ATEN_CPU_CAPABILITY": "default"},
}


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def run_one(args: argparse.Namespace) -> None:
    """Child process: one case and seed (or the SFT model, case ``sft``); figures as JSON on stdout."""
    import torch

    torch.set_num_threads(1)
    from learning_cases import CASES, run_reward_model, train_text_sft

    workdir = Path(args.workdir)
    if args.one == "sft":  # the setting's pipeline: the SFT model, then the reward model when asked for
        figures = train_text_sft(args.sft, seed=args.seed)
        if args.rm:
            rm = run_reward_model(args.seed, Path(args.rm).parent, sft=args.sft)
            figures.update({f"rm_{k}": v for k, v in rm.items()})
    else:
        case = CASES[args.one]
        context = {"sft": args.sft} if case.needs_sft else {}
        if case.needs_reward_model:
            context["rm"] = args.rm
        figures = case.run(args.seed, workdir, **context)
        figures["passed"] = bool(case.passes(figures))
    print("FIGURES " + json.dumps(figures))


def spawn(setting: str, case: str, seed: int, workdir: Path, sft: str, rm: str = "") -> dict:
    env = {**os.environ, **ISA_SETTINGS[setting], "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    cmd = [
        sys.executable,
        __file__,
        "--one",
        case,
        "--seed",
        str(seed),
        "--workdir",
        str(workdir),
        "--sft",
        sft,
        "--rm",
        rm,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FIGURES ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail), "seconds": seconds}
    return {**json.loads(lines[-1][len("FIGURES ") :]), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    from learning_cases import CASES, SEEDS, describe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    p.add_argument("--seeds", default=f"{SEEDS[0]}-{SEEDS[-1]}", help="e.g. 0-4 or 0,2")
    p.add_argument("--text-seeds", default=None, help="seeds of the text cases (default: --seeds)")
    p.add_argument("--isa", default=",".join(ISA_SETTINGS), help="settings: " + ", ".join(ISA_SETTINGS))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--sft", default="", help=argparse.SUPPRESS)
    p.add_argument("--rm", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        run_one(args)
        return 0

    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES] + [s for s in args.isa.split(",") if s not in ISA_SETTINGS]
    if unknown:
        p.error(f"unknown case or setting: {', '.join(unknown)}")
    seeds = parse_seeds(args.seeds)
    text_seeds = parse_seeds(args.text_seeds) if args.text_seeds else seeds
    settings = args.isa.split(",")
    root = Path(tempfile.mkdtemp(prefix="rlarena-learning-"))
    results: dict[str, dict[str, dict[str, dict]]] = {s: {c: {} for c in cases} for s in settings}
    sft_figures: dict[str, dict] = {}

    def sft_path(setting: str) -> str:
        return str(root / setting / "sft.pt")

    needs_rm = any(CASES[c].needs_reward_model for c in cases)

    def rm_path(setting: str) -> str:
        return str(root / setting / "rm" / "rm.pt") if needs_rm else ""

    lock = threading.Lock()

    def save() -> None:  # after every job: an interrupted matrix keeps what it measured
        if args.out:
            text = json.dumps({"settings": ISA_SETTINGS, "sft": sft_figures, "results": results}, indent=1)
            Path(args.out).write_text(text + "\n")

    def job(setting: str, case: str, seed: int) -> None:
        workdir = root / setting / case / f"s{seed}"
        figures = spawn(setting, case, seed, workdir, sft_path(setting), rm_path(setting))
        with lock:
            results[setting][case][str(seed)] = figures
            save()
        print(f"[{setting}] {case} seed {seed}: {describe(figures)}", flush=True)

    needs_sft = any(CASES[c].needs_sft for c in cases)
    with ThreadPoolExecutor(args.jobs) as pool:
        if needs_sft:  # first, so the text cases find their SFT model

            def sft_job(setting: str) -> None:
                (root / setting).mkdir(parents=True, exist_ok=True)
                paths = sft_path(setting), rm_path(setting)
                sft_figures[setting] = spawn(setting, "sft", 0, root / setting, *paths)
                print(f"[{setting}] sft: {describe(sft_figures[setting])}", flush=True)

            list(pool.map(sft_job, settings))
        jobs = [
            (s, c, seed)
            for c in sorted(cases, key=lambda c: not CASES[c].needs_sft)  # the long text jobs first
            for s in settings
            for seed in (text_seeds if CASES[c].needs_sft else seeds)
        ]
        list(pool.map(lambda j: job(*j), jobs))

    print()
    print(markdown(results, cases, settings))
    if args.out:
        save()
        print(f"\nwrote {args.out}")
    return 0


def markdown(results: dict, cases: list[str], settings: list[str]) -> str:
    """One row per case and setting: each seed's figures, and whether the median verdict passes."""
    from learning_cases import CASES, describe

    lines = []
    for case in cases:
        lines += [
            f"**{case}**: {CASES[case].claim}",
            "",
            "| setting | seed | figures | passes |",
            "|---|---|---|---|",
        ]
        for setting in settings:
            runs = results[setting][case]
            for seed, figures in sorted(runs.items(), key=lambda kv: int(kv[0])):
                shown = {k: v for k, v in figures.items() if k not in ("passed", "seconds")}
                lines.append(f"| {setting} | {seed} | {describe(shown)} | {figures.get('passed', 'error')} |")
            verdicts = [bool(f.get("passed")) for f in runs.values()]
            if verdicts:
                majority = sum(verdicts) * 2 > len(verdicts)
                lines.append(f"| {setting} | all | {sum(verdicts)}/{len(verdicts)} seeds pass | {majority} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
