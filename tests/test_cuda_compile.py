"""Each CUDA kernel file compiles on its own with nvcc (no torch needed), when a CUDA toolkit is present.

The kernels in csrc/cuda/*.cu are plain CUDA C++ (raw pointers and a stream, no ATen), so this check runs
on machines whose torch has no CUDA, and without a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CUDA_DIR = Path(__file__).resolve().parents[1] / "csrc" / "cuda"
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))


def find_nvcc() -> str | None:
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and Path(root, "bin", "nvcc").is_file():
            return str(Path(root, "bin", "nvcc"))
    if Path("/usr/local/cuda/bin/nvcc").is_file():
        return "/usr/local/cuda/bin/nvcc"
    return shutil.which("nvcc")


NVCC = find_nvcc()


def test_there_are_cuda_kernels():
    assert {p.name for p in CU_FILES} >= {"gae.cu", "clipped_loss.cu", "value_loss.cu"}


@pytest.mark.skipif(NVCC is None, reason="no nvcc (set CUDA_HOME)")
@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: p.name)
def test_cu_file_compiles_alone(source, tmp_path):
    cmd = [NVCC, "-c", "-arch=sm_90", "-std=c++17", "-O3", str(source), "-o"]
    cmd.append(str(tmp_path / (source.stem + ".o")))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout}\n{out.stderr}"
    assert (tmp_path / (source.stem + ".o")).stat().st_size > 0


@pytest.mark.skipif(NVCC is None, reason="no CUDA toolkit (set CUDA_HOME)")
def test_cuda_binding_compiles_against_torch_headers(tmp_path):
    """csrc/cuda/bind.cpp is built only with a CUDA torch; check it against this torch's headers anyway (a
    CPU wheel ships the c10/cuda headers but not one generated config header, stubbed here)."""
    import sysconfig

    import torch.utils.cpp_extension as cpp

    stub = tmp_path / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    stub.parent.mkdir(parents=True)
    stub.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    cuda_include = Path(NVCC).resolve().parents[1] / "include"
    includes = [tmp_path, *cpp.include_paths(), cuda_include, sysconfig.get_paths()["include"]]
    cmd = ["g++", "-std=c++20", "-fsyntax-only", "-Wall", *[f"-I{p}" for p in includes]]
    cmd.append(str(CUDA_DIR / "bind.cpp"))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stderr[-4000:]}"
