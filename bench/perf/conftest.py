"""Shared by the benchmarks: one torch thread, as a training job runs (two threads on a busy 2-core machine
make small ops 10-20x slower)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
