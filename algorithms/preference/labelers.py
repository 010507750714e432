"""Who answers the preference queries: a synthetic oracle on the true reward, or a person through a web page.

Both speak the same small protocol: ``ask(pairs)`` hands over pairs of segments (``a`` shown on the left),
``poll(wait_for)`` returns the labeled pairs that arrived since the last poll, blocking until ``wait_for``
more answers came (the human labeler; the synthetic one answers at once). Skipped queries count as answered
but are never returned: they carry no preference.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlarena.label_store import LabelStore
from rlarena.preferences import LabeledPair, Segment, boltzmann_preference, target_to_choice

from ..base import check

log = logging.getLogger("rlarena.labelers")

WAIT_MODES = ("always", "initial", "never")


@dataclass
class LabelerConfig:
    kind: str = "synthetic"  # synthetic | human
    # Synthetic oracle (Christiano et al.'s synthetic experiments: prefer the larger true return).
    temperature: float = 0.0  # Boltzmann-rational noise: P(a) = sigmoid((R_a - R_b) / temperature); 0 = exact
    error_rate: float = 0.0  # probability of answering uniformly at random instead
    tie_margin: float = 0.0  # |R_a - R_b| <= tie_margin -> "equal"
    # Label store (SQLite): required for the human labeler; the synthetic one records its labels there if set.
    store: str | None = None
    # Human labeler.
    wait: str = "initial"  # always: block until every query is answered; initial: only for the up-front share
    timeout_s: float | None = None  # most seconds one update waits for labels; null = no limit
    poll_s: float = 1.0  # how often a waiting trainer looks at the store
    reuse_store: bool = True  # labels already in the store (an earlier or crashed run) count and are used

    def __post_init__(self) -> None:
        check(self.kind in ("synthetic", "human"), f"labeler.kind must be synthetic|human, got {self.kind!r}")
        check(
            self.temperature >= 0 and math.isfinite(self.temperature),
            f"labeler.temperature must be >= 0, got {self.temperature}",
        )
        check(0 <= self.error_rate <= 1, f"labeler.error_rate must be in [0, 1], got {self.error_rate}")
        check(self.tie_margin >= 0, f"labeler.tie_margin must be >= 0, got {self.tie_margin}")
        check(
            self.wait in WAIT_MODES, f"labeler.wait must be one of {'|'.join(WAIT_MODES)}, got {self.wait!r}"
        )
        check(
            self.timeout_s is None or self.timeout_s >= 0,
            f"labeler.timeout_s must be >= 0, got {self.timeout_s}",
        )
        check(self.poll_s > 0, f"labeler.poll_s must be > 0, got {self.poll_s}")
        check(
            self.kind != "human" or bool(self.store),
            "labeler.store (a SQLite file shared with `rlarena label`) is required for the human labeler",
        )


class Labeler(ABC):
    asked: int = 0  # queries handed over (including those found in a reused store)
    answered: int = 0  # queries answered, skips included

    @abstractmethod
    def ask(self, pairs: list[tuple[Segment, Segment]]) -> None: ...

    @abstractmethod
    def poll(self, wait_for: int = 0) -> list[LabeledPair]: ...

    @property
    def pending(self) -> int:
        return self.asked - self.answered

    def publish(self, **status: Any) -> None:  # noqa: B027 - only labelers with a store publish
        """Tell the labeling page how training goes (budget, reward-model accuracy)."""

    def state_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "answered": self.answered}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.answered = int(state["answered"])


class SyntheticLabeler(Labeler):
    """Prefers the segment with the larger true return; optional Boltzmann noise, random errors and ties."""

    def __init__(self, cfg: LabelerConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)
        self.store = LabelStore(cfg.store) if cfg.store else None
        self._ready: list[LabeledPair] = []

    def label(self, return_a: np.ndarray, return_b: np.ndarray) -> np.ndarray:
        """Targets (1 = a, 0 = b, 0.5 = equal) for arrays of segment returns."""
        cfg = self.cfg
        ra, rb = np.asarray(return_a, dtype=np.float64), np.asarray(return_b, dtype=np.float64)
        if not (np.isfinite(ra).all() and np.isfinite(rb).all()):
            raise ValueError(
                "the synthetic labeler needs the true rewards (info['raw_rewards']) of every segment"
            )
        n = len(ra)
        p = boltzmann_preference(ra, rb, cfg.temperature)
        u = torch.rand(n, generator=self.generator, dtype=torch.float64).numpy()
        if cfg.temperature > 0:
            target = (u < p).astype(np.float64)
        else:
            target = p.copy()  # 1, 0, or 0.5 for exactly equal returns
        err = torch.rand(n, generator=self.generator, dtype=torch.float64).numpy() < cfg.error_rate
        coin = torch.rand(n, generator=self.generator, dtype=torch.float64).numpy() < 0.5
        target = np.where(err, coin.astype(np.float64), target)
        target = np.where(np.abs(ra - rb) <= cfg.tie_margin, 0.5, target)
        return target

    def ask(self, pairs: list[tuple[Segment, Segment]]) -> None:
        if not pairs:
            return
        targets = self.label(
            np.array([a.true_return for a, _ in pairs]), np.array([b.true_return for _, b in pairs])
        )
        ids: list[int | None] = [None] * len(pairs)
        if self.store is not None:  # a record of the run, usable by `rlarena reward-from-labels`
            ids = self.store.add_queries(pairs, source="synthetic")
            for qid, t in zip(ids, targets):
                self.store.add_label(qid, target_to_choice(t), labeler="synthetic")
        self._ready += [LabeledPair(a, b, float(t), qid) for (a, b), t, qid in zip(pairs, targets, ids)]
        self.asked += len(pairs)

    def poll(self, wait_for: int = 0) -> list[LabeledPair]:
        ready, self._ready = self._ready, []
        self.answered += len(ready)
        return ready

    def publish(self, **status: Any) -> None:
        if self.store is not None:
            self.store.set_status(**status)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])


class HumanLabeler(Labeler):
    """Queues queries in a durable store for ``rlarena label`` and reads the answers back."""

    def __init__(self, cfg: LabelerConfig, seed: int = 0) -> None:
        del seed
        self.cfg = cfg
        self.store = LabelStore(cfg.store)
        counts = self.store.counts()
        if cfg.reuse_store:  # pick up where an earlier (maybe crashed) run stopped: its labels arrive at poll
            self.asked = counts["queries"]
            self._last_label_id = 0
        else:  # ignore what is there: only answers to our own queries count
            self._last_label_id = max((r.id for r in self.store.labels_since(0)), default=0)
        self._mine: set[int] | None = None if cfg.reuse_store else set()
        if counts["queries"]:
            log.info("label store %s: %s", cfg.store, counts)

    def ask(self, pairs: list[tuple[Segment, Segment]]) -> None:
        if not pairs:
            return
        ids = self.store.add_queries(pairs, source="human")
        if self._mine is not None:
            self._mine.update(ids)
        self.asked += len(ids)

    def poll(self, wait_for: int = 0) -> list[LabeledPair]:
        """New labels; with ``wait_for > 0`` block until that many answers arrived (or ``timeout_s``)."""
        cfg = self.cfg
        deadline = math.inf if cfg.timeout_s is None else time.monotonic() + cfg.timeout_s
        got: list[int] = []  # ids of labeled (not skipped) queries
        answered = 0
        told = False
        while True:
            for rec in self.store.labels_since(self._last_label_id):
                self._last_label_id = rec.id
                if self._mine is not None and rec.query_id not in self._mine:
                    continue
                answered += 1
                if rec.choice != "skip":
                    got.append(rec.query_id)
            if answered >= wait_for or time.monotonic() >= deadline:
                break
            if not told:
                log.warning(
                    "waiting for %d label(s) (%d pending): open the page of `rlarena label store=%s`",
                    wait_for - answered,
                    self.pending - answered,
                    cfg.store,
                )
                told = True
            time.sleep(min(cfg.poll_s, max(deadline - time.monotonic(), 0.0)))
        if answered < wait_for:
            log.warning(
                "gave up waiting after %.0f s with %d of %d label(s); training goes on",
                cfg.timeout_s,
                answered,
                wait_for,
            )
        self.answered += answered
        pairs = self.store.labeled_pairs(got) if got else []
        return pairs

    def publish(self, **status: Any) -> None:
        self.store.set_status(**status)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "last_label_id": self._last_label_id,
            "mine": None if self._mine is None else torch.tensor(sorted(self._mine), dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._last_label_id = int(state["last_label_id"])
        self._mine = None if state["mine"] is None else set(state["mine"].tolist())


def make_labeler(cfg: LabelerConfig, seed: int = 0) -> Labeler:
    return SyntheticLabeler(cfg, seed) if cfg.kind == "synthetic" else HumanLabeler(cfg, seed)
