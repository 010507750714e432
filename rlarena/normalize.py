"""Running mean and variance (Chan et al. parallel update), shared by env wrappers and reward models.

The statistics live in float64 arrays updated in place (``mean``, ``var`` and a 0-d ``count_array``), so
the collector's compiled bookkeeping (``rlarena.ops.observe_``, ``record_reward_``) can update them through
tensor views of the same memory (``tensors``) with the same arithmetic.
"""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count_array = np.full((), float(epsilon), dtype=np.float64)

    @property
    def count(self) -> float:
        return float(self.count_array)

    @count.setter
    def count(self, value: float) -> None:
        self.count_array[...] = float(value)

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        if batch.shape[0] == 0:
            return
        if batch.shape[0] == 1:  # one row (a collector with one env, every step): its moments, without the
            # reductions' overhead; mean and var of one row are exactly the row and 0
            self.update_from_moments(batch[0], np.zeros_like(batch[0]), 1)
            return
        self.update_from_moments(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])

    def update_from_moments(self, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: int) -> None:
        count = self.count
        delta = batch_mean - self.mean
        total = count + batch_count
        self.mean[...] = self.mean + delta * batch_count / total
        m2 = self.var * count + batch_var * batch_count + np.square(delta) * count * batch_count / total
        self.var[...] = m2 / total
        self.count_array[...] = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)

    def tensors(self):
        """``(mean, var, count)`` as torch tensors sharing this object's memory (in-place updates)."""
        import torch

        return torch.from_numpy(self.mean), torch.from_numpy(self.var), torch.from_numpy(self.count_array)

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        mean = np.asarray(state["mean"], dtype=np.float64)
        var = np.asarray(state["var"], dtype=np.float64)
        if mean.shape != self.mean.shape or var.shape != self.var.shape:
            shape = self.mean.shape
            raise ValueError(f"running statistics of shape {mean.shape} do not fit ones of shape {shape}")
        self.mean[...] = mean
        self.var[...] = var
        self.count_array[...] = float(state["count"])
