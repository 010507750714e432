"""``rlarena reward-from-labels labels=<file>``: train the preference plugin's reward model (the MLP
ensemble of ``algo=preference``) from a labels file alone (no environment).

The file is a label store (``.sqlite``/``.db``: what ``algo.labeler.store`` and ``rlarena label`` write) or
JSON lines, one labeled pair per line::

    {"a": {"obs": [[...], ...], "actions": [[...], ...], "ended": false, "absorbing": 0,
           "true_rewards": [...]},            # optional: only to report how well the model ranks segments
     "b": {...},
     "choice": "left" | "right" | "equal" | "skip"}     # or "target": 1.0 | 0.0 | 0.5

It writes ``reward_model.pt`` (load with ``rlarena.reward_ensemble.load_reward_ensemble``) and
``metrics.json`` into ``out`` (default: ``<labels file>.reward_model/``). Any ``RewardModelConfig`` field
can be set as ``key=value`` (``epochs=100 ensemble_size=5 label_noise=0 hidden_sizes=64,64``); the fields
``OFFLINE_DEFAULTS`` names default to longer training than one online round.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import typing
from pathlib import Path
from typing import Any

import numpy as np

from rlarena.algorithms.base import ConfigError
from rlarena.io import atomic_write_json
from rlarena.preferences import LabeledPair, Segment, choice_to_target
from rlarena.reward_ensemble import (
    RewardModelConfig,
    RewardModelTrainer,
    padded_features,
    save_reward_ensemble,
)

from .keyvalue import defaults, parse_keys, usage

log = logging.getLogger("rlarena")

# Offline, the labels are all there is: train longer than one online round.
OFFLINE_DEFAULTS = {"epochs": 100, "max_steps_per_round": 20000, "adaptive_l2": False}


def load_labeled_pairs(path: str | Path, undecodable: list[int] | None = None) -> list[LabeledPair]:
    """Labeled pairs (skips dropped) from a label store or a JSON-lines file. A store's labeled queries that
    cannot be decoded are left out (one bad row must not cost every label) and their ids put in
    ``undecodable`` (a warning is logged); without the list they raise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no labels file {path}")
    if path.suffix in (".sqlite", ".sqlite3", ".db"):
        from rlarena.label_store import LabelStore

        with LabelStore(path) as store:
            pairs = store.labeled_pairs(undecodable=undecodable)
        if undecodable:
            shown = ", ".join(str(i) for i in undecodable[:10]) + (", ..." if len(undecodable) > 10 else "")
            n = len(undecodable)
            log.warning("%s: skipped %d labeled query(ies) that cannot be decoded (query %s)", path, n, shown)
        return pairs
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                target = rec["target"] if "target" in rec else choice_to_target(rec["choice"])
                if target is None:  # skipped
                    continue
                if float(target) not in (0.0, 0.5, 1.0):
                    raise ValueError(f"target must be 0, 0.5 or 1, got {target}")
                pairs.append(
                    LabeledPair(Segment.from_json(rec["a"]), Segment.from_json(rec["b"]), float(target))
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: bad labeled pair ({type(exc).__name__}: {exc})") from None
    return pairs


def _spearman_true_returns(trainer: RewardModelTrainer, pairs: list[LabeledPair]) -> float | None:
    """Rank agreement of predicted and true segment returns, when the segments carry true rewards."""
    from scipy.stats import spearmanr

    segments = [s for p in pairs for s in (p.a, p.b) if s.true_rewards is not None]
    if len(segments) < 3:
        return None
    x, m, k = padded_features(segments)
    model = trainer.model
    model.eval()
    import torch

    with torch.no_grad():
        scores = ((model.predict(x) * m).sum(1) + k * model.absorbing_reward()).numpy()
    true = np.array([s.true_return for s in segments])
    if np.ptp(true) == 0:
        return None
    return float(spearmanr(scores, true).statistic)


def train_from_labels_file(
    path: str | Path,
    cfg: RewardModelConfig | dict[str, Any] | None = None,
    *,
    seed: int = 0,
    out: str | Path | None = None,
) -> tuple[RewardModelTrainer, dict[str, Any]]:
    """Train a reward model on every labeled pair of ``path``; save it and its metrics to ``out`` if given."""
    if cfg is None or isinstance(cfg, dict):
        try:
            cfg = RewardModelConfig(**{**OFFLINE_DEFAULTS, **(cfg or {})})
        except TypeError as exc:
            raise ConfigError(f"invalid reward-model option: {exc}") from None
    undecodable: list[int] = []
    pairs = load_labeled_pairs(path, undecodable)
    if not pairs:
        raise ValueError(f"{path} holds no labeled pair")
    dims = {p.a.features().shape[1] for p in pairs} | {p.b.features().shape[1] for p in pairs}
    if len(dims) != 1:
        raise ValueError(f"segments of {path} have different observation+action sizes: {sorted(dims)}")
    trainer = RewardModelTrainer(dims.pop(), cfg, seed=seed)
    trainer.add(pairs)
    metrics: dict[str, Any] = dict(trainer.fit())
    metrics["true_return_spearman"] = _spearman_true_returns(trainer, pairs)
    metrics.update(labels_file=str(path), pairs=len(pairs), seed=seed, config=dataclasses.asdict(cfg))
    metrics["undecodable_labels"] = len(undecodable)  # labeled queries left out: their rows do not decode
    if out is not None:
        out = Path(out)
        save_reward_ensemble(str(out / "reward_model.pt"), trainer)
        atomic_write_json(
            out / "metrics.json",
            {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()},
        )
    return trainer, metrics


COMMAND = "reward-from-labels"
DOC = """Train the preference plugin's reward model (algo=preference: an MLP ensemble over observation and
action) from a label store (.sqlite/.db) or a JSON-lines labels file (docs/preferences.md). It writes
reward_model.pt and metrics.json into out (null: <labels file>.reward_model/). The other keys are
RewardModelConfig's fields, shown with their offline defaults."""
# What the command prints of the metrics (all of them go to metrics.json).
SHOWN = ("pairs", "undecodable_labels", "train_accuracy", "val_accuracy", "val_pairs", "true_return_spearman")
# This command's own keys, besides RewardModelConfig's fields (labels is required).
KEYS: dict[str, Any] = {"labels": str, "out": str | None, "seed": int}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        shown = {"out": None, "seed": 0, **defaults(RewardModelConfig), **OFFLINE_DEFAULTS}
        print(usage(COMMAND, DOC, shown, synopsis="labels=<file> [key=value ...]"))
        return 0
    try:
        options = parse_keys({**KEYS, **typing.get_type_hints(RewardModelConfig)}, argv)
        labels, out, seed = options.pop("labels", None), options.pop("out", None), options.pop("seed", 0)
        if labels is None:
            raise ValueError("labels=<file> is required")
        out = out or f"{labels}.reward_model"
        _, metrics = train_from_labels_file(labels, options, seed=seed, out=out)
    except (ValueError, ConfigError, FileNotFoundError) as exc:
        print(f"rlarena {COMMAND}: {exc}", file=sys.stderr)
        return 2
    shown = {k: metrics[k] for k in SHOWN}
    print(json.dumps(shown, indent=2))
    print(f"saved {out}/reward_model.pt and {out}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
