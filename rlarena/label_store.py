"""A durable, append-only store of preference queries and labels (SQLite), shared by a trainer and a web page.

The training process writes queries (pairs of segments); the labeling page (``rlarena label``) reads them and
writes one label per query; the trainer reads labels back. Both sides may run at the same time, in separate
processes: SQLite's locking serializes them, and every commit is fsynced (WAL, ``synchronous=FULL``), so a
label the page acknowledged survives a crash of either process. Labels and queries are never updated or
deleted (triggers refuse it); a second label for the same query is refused, so a double click cannot
overwrite the first answer.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preferences import CHOICES, LabeledPair, Segment, choice_to_target

SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    source TEXT NOT NULL,
    env_id TEXT,
    meta TEXT NOT NULL,
    a BLOB NOT NULL,
    b BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id INTEGER NOT NULL UNIQUE REFERENCES queries(id),
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'equal', 'skip')),
    labeler TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS status (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS labels_no_update BEFORE UPDATE ON labels
    BEGIN SELECT RAISE(ABORT, 'labels are append-only'); END;
CREATE TRIGGER IF NOT EXISTS labels_no_delete BEFORE DELETE ON labels
    BEGIN SELECT RAISE(ABORT, 'labels are append-only'); END;
CREATE TRIGGER IF NOT EXISTS queries_no_update BEFORE UPDATE ON queries
    BEGIN SELECT RAISE(ABORT, 'queries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS queries_no_delete BEFORE DELETE ON queries
    BEGIN SELECT RAISE(ABORT, 'queries are append-only'); END;
"""


@dataclass
class Query:
    id: int
    a: Segment
    b: Segment
    env_id: str | None
    meta: dict[str, Any]
    created: float


class UndecodableQuery(ValueError):
    """A stored query whose segments or metadata cannot be decoded (a corrupt row, or one a newer or foreign
    writer produced). Carries the id, so a reader can skip past it."""

    def __init__(self, query_id: int, cause: BaseException) -> None:
        super().__init__(f"query {query_id} cannot be decoded: {type(cause).__name__}: {cause}")
        self.query_id = query_id


@dataclass
class LabelRecord:
    id: int
    query_id: int
    choice: str
    labeler: str
    created: float


class LabelStore:
    """One SQLite file; safe to share between threads of a process and between processes."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE), so writers never deadlock.
        self._conn = sqlite3.connect(
            str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # fsync at every commit: acknowledged = on disk
            self._conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    # ---- queries ------------------------------------------------------------------------------------------

    def add_queries(
        self, pairs: list[tuple[Segment, Segment]], *, source: str = "trainer", env_id: str | None = None
    ) -> list[int]:
        """Store pairs to be labeled, in one transaction; returns their ids (in order)."""
        ids = []
        now = time.time()
        with self._write() as conn:
            for a, b in pairs:
                meta = {
                    "len_a": len(a),
                    "len_b": len(b),
                    "ended_a": bool(a.ended),
                    "ended_b": bool(b.ended),
                    "renderable": a.states is not None and b.states is not None,
                    **{f"a_{k}": v for k, v in a.meta.items()},
                    **{f"b_{k}": v for k, v in b.meta.items()},
                }
                env = env_id or a.meta.get("env_id")
                cur = conn.execute(
                    "INSERT INTO queries (created, source, env_id, meta, a, b) VALUES (?, ?, ?, ?, ?, ?)",
                    (now, source, env, json.dumps(meta, default=str), a.to_bytes(), b.to_bytes()),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def get_query(self, query_id: int) -> Query:
        rows = self._read(
            "SELECT id, a, b, env_id, meta, created FROM queries WHERE id = ?", (int(query_id),)
        )
        if not rows:
            raise KeyError(f"no query {query_id} in {self.path}")
        return self._query(rows[0])

    @staticmethod
    def _query(row: tuple) -> Query:
        qid, a, b, env_id, meta, created = row
        try:  # decoding reads only this row's bytes, so any failure is the row's fault
            seg_a, seg_b, meta_dict = Segment.from_bytes(a), Segment.from_bytes(b), json.loads(meta)
        except Exception as exc:
            raise UndecodableQuery(int(qid), exc) from exc
        return Query(int(qid), seg_a, seg_b, env_id, meta_dict, float(created))

    def pending_ids(self) -> list[int]:
        """Queries without a label, oldest first."""
        rows = self._read(
            "SELECT q.id FROM queries q LEFT JOIN labels l ON l.query_id = q.id "
            "WHERE l.id IS NULL ORDER BY q.id"
        )
        return [int(r[0]) for r in rows]

    def next_pending(self, after: int = 0) -> Query | None:
        """The oldest unlabeled query with id > ``after`` (the page passes the one it skipped past).

        Raises ``UndecodableQuery`` if that query cannot be decoded; pass its id as ``after`` to go on."""
        rows = self._read(
            "SELECT q.id, q.a, q.b, q.env_id, q.meta, q.created FROM queries q LEFT JOIN labels l "
            "ON l.query_id = q.id WHERE l.id IS NULL AND q.id > ? ORDER BY q.id LIMIT 1",
            (int(after),),
        )
        return self._query(rows[0]) if rows else None

    # ---- labels -------------------------------------------------------------------------------------------

    def add_label(self, query_id: int, choice: str, *, labeler: str = "human") -> bool:
        """Store the answer to a query durably. False if it already had one (the first answer stays)."""
        choice_to_target(choice)  # refuses unknown choices
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM queries WHERE id = ?", (int(query_id),)).fetchone() is None:
                raise KeyError(f"no query {query_id} in {self.path}")
            cur = conn.execute(
                "INSERT OR IGNORE INTO labels (query_id, choice, labeler, created) VALUES (?, ?, ?, ?)",
                (int(query_id), choice, labeler, time.time()),
            )
            return cur.rowcount == 1

    def labels_since(self, last_id: int = 0) -> list[LabelRecord]:
        rows = self._read(
            "SELECT id, query_id, choice, labeler, created FROM labels WHERE id > ? ORDER BY id",
            (int(last_id),),
        )
        return [LabelRecord(int(i), int(q), c, lb, float(t)) for i, q, c, lb, t in rows]

    def labeled_pairs(
        self, query_ids: Iterable[int] | None = None, *, undecodable: list[int] | None = None
    ) -> list[LabeledPair]:
        """Every labeled query (skips left out) as pairs with their targets, in labeling order. A query that
        cannot be decoded raises ``UndecodableQuery``; with an ``undecodable`` list its id goes there instead
        and the query is left out."""
        rows = self._read(
            "SELECT q.id, q.a, q.b, q.env_id, q.meta, q.created, l.choice FROM labels l "
            "JOIN queries q ON q.id = l.query_id WHERE l.choice != 'skip' ORDER BY l.id"
        )
        wanted = None if query_ids is None else set(int(i) for i in query_ids)
        out = []
        for row in rows:
            if wanted is not None and int(row[0]) not in wanted:
                continue
            try:
                q = self._query(row[:6])
            except UndecodableQuery as exc:
                if undecodable is None:
                    raise
                undecodable.append(exc.query_id)
                continue
            out.append(LabeledPair(q.a, q.b, float(CHOICES[row[6]]), query_id=q.id))
        return out

    def counts(self) -> dict[str, int]:
        (queries,) = self._read("SELECT COUNT(*) FROM queries")[0]
        by_choice = dict(self._read("SELECT choice, COUNT(*) FROM labels GROUP BY choice"))
        answered = sum(by_choice.values())
        return {
            "queries": int(queries),
            "answered": int(answered),
            "labels": int(answered - by_choice.get("skip", 0)),
            "skipped": int(by_choice.get("skip", 0)),
            "pending": int(queries - answered),
        }

    # ---- status the trainer publishes for the page (budget, reward-model accuracy) ------------------------

    def set_status(self, **values: Any) -> None:
        now = time.time()
        with self._write() as conn:
            for key, value in values.items():
                if isinstance(value, float) and not math.isfinite(value):
                    value = None
                conn.execute(
                    "INSERT INTO status (key, value, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                    (key, json.dumps(value), now),
                )

    def status(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._read("SELECT key, value FROM status")}

    # ---- export -------------------------------------------------------------------------------------------

    def export_jsonl(self, path: str | Path) -> int:
        """Write every labeled pair as one JSON line (the format ``rlarena reward-from-labels`` reads too)."""
        pairs = self.labeled_pairs()
        with open(path, "w", encoding="utf-8") as f:
            for p in pairs:
                f.write(
                    json.dumps(
                        {"query_id": p.query_id, "target": p.target, "a": p.a.to_json(), "b": p.b.to_json()}
                    )
                )
                f.write("\n")
        return len(pairs)
