"""Helpers of scripts/gpu-check.sh that are easier in Python (standard library; `wheels` also uses packaging).

    python scripts/gpu_check.py report WORK JSON      # steps.tsv and WORK/<step>.json -> the results JSON
    python scripts/gpu_check.py wheels DIR REQS IMAGE  # the carried wheel set is complete for the GPU image
    python scripts/gpu_check.py tree [CARRY...]        # MiB of what the device tool would send from here
    python scripts/gpu_check.py kernels                # torch.ops.rlarena has the CUDA kernels (needs torch)
    python scripts/gpu_check.py junit XML              # pytest's counts; fails on a failure or a skip
    python scripts/gpu_check.py bench JSON             # one line of scripts/gpu_bench.py's report
    python scripts/gpu_check.py train RUNS             # steps/s of the runs under RUNS (their summary.json)

Each command prints one line a finding and writes its figures as JSON to the file named by --figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STATUSES = ("ok", "failed", "skipped")
LIMIT_MIB = 64.0  # the device tool's limit on what travels: the working tree plus the carried paths
# Tracked data no GPU step reads; leaving it out of the working tree (docs/performance.md: the sparse
# checkout) is what brings the tree under the limit.
NOT_NEEDED = ("docs/results/",)
# Requirements of the carried wheels left out on purpose: none is imported by a step of the check.
LEFT_OUT = {
    "mujoco-studio": "mujoco's viewer; training imports only mujoco-core",
    "pyopengl": "mujoco's rendering; the check renders nothing",
}
# Where the GPU machine runs: its python3 is CPython 3.12.3 on x86-64 Linux (the device tool's KINDS.md).
TARGET_ENV = {
    "implementation_name": "cpython",
    "implementation_version": "3.12.3",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.12.3",
    "python_version": "3.12",
    "sys_platform": "linux",
    "extra": "",
}


def _write(path: str | None, figures: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------------- report


def report(work: Path, out: Path, mode: str, started: float) -> dict[str, Any]:
    """The results JSON from WORK/steps.tsv (name, status, seconds, message a line) and each step's figures
    (WORK/<name>.json); rewritten after every step, so a run that is killed still leaves what it did."""
    steps = []
    tsv = work / "steps.tsv"
    for line in tsv.read_text().splitlines() if tsv.exists() else []:
        name, status, seconds, message = (line.split("\t") + ["", "", ""])[:4]
        if status not in STATUSES:
            raise ValueError(f"step {name}: status {status!r} is not one of {STATUSES}")
        step: dict[str, Any] = {"name": name, "status": status, "seconds": float(seconds or 0)}
        step["message"] = message
        fig = work / f"{name}.json"
        if fig.exists():
            try:
                step["figures"] = json.loads(fig.read_text())
            except json.JSONDecodeError as exc:  # a half-written file from a step that was killed
                step["figures"] = {"unreadable": str(exc)}
        steps.append(step)
    failed = [s["name"] for s in steps if s["status"] == "failed"]
    doc = {
        "schema": 1,
        "mode": mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "ok": not failed,
        "failed_step": failed[0] if failed else None,
        "steps": steps,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


# ------------------------------------------------------------------------------------------------- wheels


def _canon(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _read_pins(path: Path) -> dict[str, str | None]:
    """NAME or NAME==VERSION lines (comments and blank lines skipped) -> {canonical name: version or None}."""
    pins: dict[str, str | None] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_canon(name)] = version.strip() or None
    return pins


def _wheel_requirements(wheel: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8", "replace")
    head = text.split("\n\n", 1)[0]  # the headers; the long description follows the first blank line
    return [line.split(":", 1)[1].strip() for line in head.splitlines() if line.startswith("Requires-Dist:")]


def check_wheels(folder: Path, reqs: Path, image: Path) -> tuple[dict[str, Any], list[str]]:
    """Each pin of REQS has one wheel in FOLDER, and every requirement of those wheels that applies to the
    GPU machine's Python (TARGET_ENV, no extras) is met by a carried wheel, by the image (IMAGE; checked
    against its version where the list gives one) or is LEFT_OUT. Returns the figures and the problems."""
    from packaging.requirements import Requirement
    from packaging.utils import parse_wheel_filename

    pins, on_image = _read_pins(reqs), _read_pins(image)
    carried: dict[str, tuple[str, Path]] = {}
    problems = []
    for whl in sorted(folder.glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(whl.name)
        if name in carried:  # pip refuses an install that offers two versions of one package
            problems.append(f"two wheels of {name}: {carried[name][1].name}, {whl.name}")
        carried[str(name)] = (str(version), whl)
    for name, version in pins.items():
        if name not in carried:
            problems.append(f"{name}=={version}: no wheel in {folder}")
        elif version is not None and carried[name][0] != version:
            problems.append(f"{name}: wanted {version}, the folder has {carried[name][0]}")
    extra = sorted(set(carried) - set(pins))
    problems += [f"{name}: a wheel in {folder} that {reqs} does not name" for name in extra]
    from_image, unchecked = set(), set()
    for name, (_, whl) in carried.items():
        for line in _wheel_requirements(whl):
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(TARGET_ENV):
                continue
            dep = _canon(req.name)
            if dep in carried:
                if not req.specifier.contains(carried[dep][0], prereleases=True):
                    problems.append(f"{name} needs {req}, the carried wheel is {carried[dep][0]}")
            elif dep in on_image:
                have = on_image[dep]
                if have is None:
                    unchecked.add(dep)
                elif not req.specifier.contains(have, prereleases=True):
                    problems.append(f"{name} needs {req}, the image has {have}")
                from_image.add(dep)
            elif dep not in LEFT_OUT:
                problems.append(f"{name} needs {req}: neither carried nor on the image")
    size = sum(whl.stat().st_size for _, whl in carried.values())
    figures = {
        "wheels": len(carried),
        "wheels_mib": round(size / 2**20, 2),
        "carried": {name: version for name, (version, _) in sorted(carried.items())},
        "from_image": sorted(from_image),
        "from_image_version_unknown": sorted(unchecked),  # the image's list names them without a version
        "left_out": LEFT_OUT,
        "problems": problems,
    }
    return figures, problems


# --------------------------------------------------------------------------------------------------- tree


def _size(path: Path) -> int:
    try:
        st = path.lstat()
    except FileNotFoundError:  # tracked, but not in the working tree (a sparse checkout): it does not travel
        return 0
    return st.st_size


def _walk_size(path: Path) -> int:
    if not path.is_dir():
        return _size(path)
    return sum(_size(Path(d, f)) for d, _, files in os.walk(path) for f in files)


def tree_size(root: Path, carry: list[str]) -> dict[str, Any]:
    """What the device tool sends: the tracked files and the untracked ones git does not ignore, as they are
    on disk, plus the carried paths; and the same without NOT_NEEDED."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = [f for f in out.split("\0") if f]
    total = needed = 0
    for f in files:
        size = _size(root / f)
        total += size
        if not f.startswith(NOT_NEEDED):
            needed += size
    carried = {c: round(_walk_size(root / c) / 2**20, 2) for c in carry}
    carry_mib = sum(carried.values())
    tree_mib, needed_mib = total / 2**20, needed / 2**20
    return {
        "limit_mib": LIMIT_MIB,
        "tree_mib": round(tree_mib, 2),
        "carry_mib": carried,
        "travels_now_mib": round(tree_mib + carry_mib, 2),
        "fits_now": tree_mib + carry_mib <= LIMIT_MIB,
        "left_out_by_sparse_checkout": list(NOT_NEEDED),
        "needed_mib": round(needed_mib + carry_mib, 2),
        "fits_needed": needed_mib + carry_mib <= LIMIT_MIB,
    }


# ------------------------------------------------------------------------------ the GPU steps' read-outs

CUDA_OPS = ("gae", "clipped_surrogate_loss", "clipped_value_loss")


def kernels() -> tuple[dict[str, Any], list[str]]:
    """Which ops the built extension registers a CUDA kernel for."""
    import importlib

    import torch

    from rlarena import ops

    has = torch._C._dispatch_has_kernel_for_dispatch_key
    found = {op: ops.backend() == "compiled" and has(f"rlarena::{op}", "CUDA") for op in CUDA_OPS}
    ext = importlib.import_module("rlarena._C").__file__ if ops.backend() == "compiled" else None
    figures = {"backend": ops.backend(), "cuda_kernels": found, "extension": ext}
    return figures, [f"no CUDA kernel for rlarena::{op}" for op, ok in found.items() if not ok]


def junit(path: Path) -> tuple[dict[str, Any], list[str]]:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root[0]
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    n["passed"] = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    # On the GPU machine nothing may skip: a skip there means the CUDA kernels were not found.
    problems = [f"{n[k]} {k}" for k in ("failures", "errors", "skipped") if n[k]]
    return n, problems


def bench_line(report: dict[str, Any]) -> str:
    gae = max(c["ratios"]["vs_torch_loop"] for c in report["gae"])
    loss = max(c["ratios"]["vs_composed"] for c in report["clipped_surrogate_loss"])
    value = max(c["ratios"]["vs_composed"] for c in report["clipped_value_loss"])
    return (
        f"GAE up to {gae:.0f}x the torch loop; clipped surrogate loss up to {loss:.1f}x and clipped value"
        f" loss up to {value:.1f}x composed autograd"
    )


def train(runs: Path) -> dict[str, Any]:
    """Each run's throughput and result, and the GPU's steps/s over the CPU's for each task."""
    keys = ("steps_done", "steps_per_sec", "wall_time_s", "eval_return_mean", "code_path")
    summaries = {p.name: json.loads((p / "summary.json").read_text()) for p in sorted(runs.iterdir())}
    out: dict[str, Any] = {name: {k: s.get(k) for k in keys} for name, s in summaries.items()}
    for task in sorted({name.rsplit("_", 1)[0] for name in summaries}):
        cuda, cpu = summaries.get(f"{task}_cuda"), summaries.get(f"{task}_cpu")
        if cuda and cpu:
            out[f"{task}_cuda_over_cpu"] = round(cuda["steps_per_sec"] / cpu["steps_per_sec"], 3)
    return out


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("report")
    p.add_argument("work", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--mode", default="gpu")
    p.add_argument("--started", type=float, default=time.time())
    p = sub.add_parser("wheels")
    p.add_argument("folder", type=Path)
    p.add_argument("reqs", type=Path)
    p.add_argument("image", type=Path)
    p.add_argument("--figures")
    p = sub.add_parser("tree")
    p.add_argument("carry", nargs="*")
    p.add_argument("--figures")
    for cmd, arg in (("kernels", None), ("junit", "xml"), ("bench", "json"), ("train", "runs")):
        p = sub.add_parser(cmd)
        if arg:
            p.add_argument(arg, type=Path)
        p.add_argument("--figures")
    args = parser.parse_args(argv)
    if args.cmd in ("kernels", "junit"):
        figures, problems = kernels() if args.cmd == "kernels" else junit(args.xml)
        _write(args.figures, figures)
        print(f"{args.cmd}: {'; '.join(problems) if problems else json.dumps(figures)}")
        return 1 if problems else 0
    if args.cmd == "bench":
        print(bench_line(json.loads(args.json.read_text())))
        return 0
    if args.cmd == "train":
        figures = train(args.runs)
        _write(args.figures, figures)
        rates = [f"{k} {v['steps_per_sec']:.0f}" for k, v in figures.items() if isinstance(v, dict)]
        print("steps/s: " + ", ".join(rates))
        return 0
    if args.cmd == "report":
        report(args.work, args.out, args.mode, args.started)
        return 0
    if args.cmd == "wheels":
        figures, problems = check_wheels(args.folder, args.reqs, args.image)
        _write(args.figures, figures)
        for problem in problems:
            print(f"wheels: {problem}")
        print(
            f"wheels: {figures['wheels']} wheels, {figures['wheels_mib']} MiB; their needs met by the carried"
            f" set, the image ({len(figures['from_image'])} packages) or left out ({', '.join(LEFT_OUT)})"
            if not problems
            else f"wheels: {len(problems)} problem(s)"
        )
        return 1 if problems else 0
    figures = tree_size(Path.cwd(), args.carry)
    _write(args.figures, figures)
    print(
        f"tree: {figures['travels_now_mib']} MiB would travel now, carried paths included"
        f" (limit {LIMIT_MIB:g}); "
        f"{figures['needed_mib']} MiB without {', '.join(NOT_NEEDED)}"
    )
    return 0 if figures["fits_needed"] else 1


if __name__ == "__main__":
    sys.exit(main())
