"""Ground-floor pieces: atomic writes, running statistics, rollout minibatching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlarena.io import atomic_torch_save, atomic_write_json, safe_torch_load
from rlarena.normalize import RunningMeanStd
from rlarena.rollout import RolloutBatch


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(ValueError):  # NaN is refused before anything replaces the file
        atomic_write_json(path, {"bad": float("nan")})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"], "temporary file left behind"


class _NotATensor:
    pass


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    state = {"w": torch.arange(3.0), "rng": torch.get_rng_state(), "nested": {"count": 3, "xs": [1.0, 2.0]}}
    atomic_torch_save(tmp_path / "c.pt", state)
    loaded = safe_torch_load(tmp_path / "c.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["nested"] == state["nested"]

    torch.save({"x": _NotATensor()}, tmp_path / "evil.pt")  # pickled code must not be loaded
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        safe_torch_load(tmp_path / "evil.pt")


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4))
    rms = RunningMeanStd((4,), epsilon=0.0)
    rms.count = 0.0
    for chunk in np.array_split(data, 7):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-10)


def _batch(layout: str, T: int = 4, N: int = 3) -> RolloutBatch:
    ids = torch.arange(T * N, dtype=torch.float32).reshape(T, N)
    return RolloutBatch(
        obs={"x": ids.unsqueeze(-1)},
        actions=ids,
        logp=ids,
        values=ids,
        rewards=ids,
        dones=torch.zeros(T, N),
        last_value=torch.zeros(N),
        mask=torch.ones(T, N, dtype=torch.bool),
        layout=layout,
        advantages=ids,
        returns=ids,
    )


def test_flat_minibatches_partition_all_samples():
    batch = _batch("flat")
    seen = []
    for mb in batch.minibatches(5, torch.Generator().manual_seed(0)):
        assert mb.actions.dim() == 1 and torch.equal(mb.obs["x"].squeeze(-1), mb.actions)
        seen += mb.actions.tolist()
    assert sorted(seen) == list(range(12))


def test_sequence_minibatches_keep_whole_columns():
    batch = _batch("sequence")
    columns = []
    for mb in batch.minibatches(3, torch.Generator().manual_seed(0)):
        assert mb.actions.shape == (4, 1)
        columns.append(int(mb.actions[0, 0]))
        assert torch.equal(mb.actions[:, 0], torch.arange(4) * 3 + columns[-1])
    assert sorted(columns) == [0, 1, 2]
    with pytest.raises(ValueError, match="num_minibatches=4 must be in"):
        next(batch.minibatches(4))
