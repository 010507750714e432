"""Build rlarena: the Python packages (mapped from the top-level folders) and the `rlarena._C` extension.

The top-level folders `algorithms/ envs/ bench/ conf/` are installed as `rlarena.algorithms`, ... so that
nothing is ever installed under the generic top-level names PyPI already uses.

The CPU extension is always built. CUDA kernels (`csrc/cuda/*.cu`) are added only when the installed torch
was built with CUDA and a CUDA toolkit is found; otherwise a message says why they are skipped.
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
SUBPACKAGES = {"algorithms": "algorithms", "envs": "envs", "bench": "bench", "conf": "conf"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = ["rlarena"]
    package_dir = {"rlarena": "rlarena"}
    for name, folder in SUBPACKAGES.items():
        package_dir[f"rlarena.{name}"] = folder
        packages.append(f"rlarena.{name}")
        for sub in find_packages(where=folder):
            packages.append(f"rlarena.{name}.{sub}")
            package_dir[f"rlarena.{name}.{sub}"] = os.path.join(folder, *sub.split("."))
    return packages, package_dir


def _rel(paths: list[str]) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _cuda_home() -> str | None:
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    return None


def _extensions():
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    openmp = ["-fopenmp"] if sys.platform != "darwin" else []
    # C++20: what torch >= 2.10 headers are written for (with C++17 they warn on every file).
    # -fno-trapping-math changes no result; it lets GCC if-convert the selects in the SIMD loops (with FP
    # traps assumed possible it refuses to, and leaves the AVX2 and SSE2 variants of the kernels scalar).
    # -fno-math-errno likewise: sqrt stays an instruction (exact on every ISA) in vector loops instead of a
    # libm call kept for errno's sake, which holds the whole loop scalar (Adam's in csrc/cpu/ppo_epoch.cpp).
    # -ffp-contract=off: no a * b + c fused into an FMA where the AVX2 and AVX-512 variants could use one and
    # the baseline cannot; with every sum in a fixed order, a kernel gives the same bits on every x86-64 CPU.
    cxx_flags = ["-O3", "-std=c++20", "-DNDEBUG", "-fno-trapping-math", "-fno-math-errno"]
    cxx_flags += ["-ffp-contract=off", *openmp]
    # No -march=native: wheels and editable installs must run on any x86-64; the kernels vectorize with
    # the compiler's portable SIMD (omp simd) instead.
    if not os.path.exists(os.path.join(ROOT, "csrc", "ops.cpp")):
        print("rlarena: csrc/ops.cpp not found; building without the compiled ops (pure-torch fallback).")
        return [], {}
    sources = _rel(
        [
            os.path.join(ROOT, "csrc", "ops.cpp"),
            *glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")),
            *glob.glob(os.path.join(ROOT, "csrc", "composite", "*.cpp")),  # ATen compositions, any device
        ]
    )
    cuda_sources = _rel(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    bind = os.path.join("csrc", "cuda", "bind.cpp")

    want_cuda = os.environ.get("RLARENA_NO_CUDA", "0") != "1"
    cuda_home = _cuda_home()
    if want_cuda and torch.version.cuda is not None and cuda_home is not None and cuda_sources:
        os.environ.setdefault("CUDA_HOME", cuda_home)
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
        print(f"rlarena: building CUDA kernels with {cuda_home} for {os.environ['TORCH_CUDA_ARCH_LIST']}")
        include_dirs = []
        # pip's CUDA 13 wheels keep headers here rather than in CUDA_HOME.
        import site

        for sp in site.getsitepackages():
            nv = os.path.join(sp, "nvidia", "cu13", "include")
            if os.path.isdir(nv):
                include_dirs.append(nv)
        ext = CUDAExtension(
            "rlarena._C",
            sources + cuda_sources + ([bind] if os.path.exists(os.path.join(ROOT, bind)) else []),
            include_dirs=include_dirs,
            extra_compile_args={"cxx": [*cxx_flags, "-DRLARENA_WITH_CUDA"], "nvcc": ["-O3", "-std=c++17"]},
            extra_link_args=openmp,
        )
    else:
        why = (
            "RLARENA_NO_CUDA=1"
            if not want_cuda
            else "torch has no CUDA"
            if torch.version.cuda is None
            else "no CUDA toolkit (set CUDA_HOME)"
            if cuda_home is None
            else "no .cu sources"
        )
        print(f"rlarena: building the CPU extension only ({why}).")
        ext = CppExtension(
            "rlarena._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=openmp
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


packages, package_dir = _packages()
ext_modules, cmdclass = _extensions()

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"rlarena.conf": ["*.yaml", "**/*.yaml"], "rlarena.envs.text.data": ["*.jsonl"]},
    include_package_data=True,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
