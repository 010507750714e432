"""The labeling API under bad input: every malformed request gets a short 4xx JSON message (never a 500),
no bad request stores or changes a label, a good label afterwards still stores, and a stored query that
cannot be decoded is skipped (and reported) instead of blocking the page.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rlarena.bench.label_server import MAX_BODY_BYTES, SQLITE_INT_MAX, create_app
from rlarena.label_store import LabelStore
from rlarena.preferences import Segment

ORIGIN = "http://127.0.0.1"  # the page's own origin under TestClient's base_url
ALREADY = {3: "right"}  # a label given before the bad requests: it must survive them


def segment(seed: int) -> Segment:
    """A small segment without simulator states (the page draws it as a plot)."""
    rng = np.random.default_rng(seed)
    return Segment(rng.normal(size=(4, 3)), rng.normal(size=(4, 1)), rng.normal(size=4))


def stored_labels(store_path: Path) -> dict[int, str]:
    with LabelStore(store_path) as store:
        return {r.query_id: r.choice for r in store.labels_since(0)}


@pytest.fixture
def store_path(tmp_path) -> Path:
    """Queries 1..3; query 3 already answered, 1 and 2 pending."""
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        store.add_queries([(segment(2 * i), segment(2 * i + 1)) for i in range(3)])
        for query_id, choice in ALREADY.items():
            store.add_label(query_id, choice)
    return path


@pytest.fixture
def client(store_path, tmp_path) -> Iterator[TestClient]:
    # raise_server_exceptions=False: a server error shows up as the 500 a browser would get.
    app = create_app(store_path, clip_dir=tmp_path / "clips")
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as c:
        yield c


def label_json(query_id: Any = 1, choice: Any = "left") -> bytes:
    return json.dumps({"query_id": query_id, "choice": choice}).encode()


JSON = {"content-type": "application/json"}
OVERSIZE = json.dumps({"query_id": 1, "choice": "left", "pad": "x" * MAX_BODY_BYTES}).encode()


def streamed_oversize() -> Iterator[bytes]:
    """A streamed (chunked) body: no Content-Length for the server to check up front."""
    for start in range(0, len(OVERSIZE), 1024):
        yield OVERSIZE[start : start + 1024]


Body = bytes | Callable[[], Iterator[bytes]]

# (case, body, headers, expected status, a word the message must contain)
BAD_REQUESTS: list[tuple[str, Body, dict[str, str], int, str]] = [
    ("not JSON", b"not json", JSON, 422, "Invalid JSON"),
    ("empty body", b"", JSON, 422, "Invalid JSON"),
    ("not UTF-8", b'{"query_id": 1, "choice": "\xff"}', JSON, 422, "Invalid JSON"),
    ("deeply nested", b"[" * 1000 + b"]" * 1000, JSON, 422, "recursion"),
    ("deeply nested, huge", b"[" * 10**5 + b"]" * 10**5, JSON, 413, "bytes"),
    ("query_id true", label_json(True), JSON, 422, "query_id"),
    ("query_id over int64", label_json(SQLITE_INT_MAX + 1), JSON, 422, "query_id"),
    ("query_id 2**70", label_json(2**70), JSON, 422, "query_id"),
    ("application/jsonfoo", label_json(), {"content-type": "application/jsonfoo"}, 415, "JSON"),
    ("latin-1 charset", label_json(), {"content-type": "application/json; charset=latin-1"}, 415, "JSON"),
    ("oversize body, Content-Length", OVERSIZE, JSON, 413, "bytes"),
    ("oversize body, chunked", streamed_oversize, JSON, 413, "bytes"),
    ("cross-origin", label_json(), {**JSON, "origin": "http://evil.example"}, 403, "origin"),
    ("same host, other port", label_json(), {**JSON, "origin": "http://127.0.0.1:9999"}, 403, "origin"),
    ("Origin: null", label_json(), {**JSON, "origin": "null"}, 403, "origin"),
]


def post_label(client: TestClient, body: Body, headers: dict[str, str]):
    return client.post("/api/label", content=body() if callable(body) else body, headers=headers)


def assert_clear_error(response, status: int, word: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and word.lower() in detail.lower(), detail
    assert len(detail) < 200 and "Traceback" not in response.text, detail


@pytest.mark.parametrize(
    "body, headers, status, word", [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_a_malformed_label_post_gets_a_clear_4xx_and_stores_nothing(
    client, store_path, body, headers, status, word
):
    assert_clear_error(post_label(client, body, headers), status, word)
    assert stored_labels(store_path) == ALREADY  # nothing lost, nothing added


def test_a_good_label_after_bad_requests_still_stores(client, store_path):
    for _, body, headers, status, _ in BAD_REQUESTS:
        assert post_label(client, body, headers).status_code == status
    # What the page sends: its own origin, JSON with a charset.
    ok = client.post(
        "/api/label",
        content=label_json(1, "left"),
        headers={"content-type": "application/json; charset=UTF-8", "origin": ORIGIN},
    )
    assert ok.status_code == 200 and ok.json()["query_id"] == 1
    assert stored_labels(store_path) == {**ALREADY, 1: "left"}
    assert client.get("/api/next").json()["query"]["id"] == 2


def test_schema_and_docs_pages_are_not_served(client):
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 404, path


def test_a_clip_id_beyond_int64_is_a_clear_422(client):
    assert_clear_error(client.get(f"/api/clip/{2**70}/left"), 422, "query_id")


# ---- a real server: the body limit holds before the body has arrived --------------------------------------


def first_reply_line(port: int, request: bytes) -> str:
    """Send ``request`` and never finish its body: a server that waits for the rest times out here."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


def test_the_body_limit_holds_on_a_real_server(store_path, tmp_path):
    from test_label_page import Server  # uvicorn in a thread

    head = b"POST /api/label HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    server = Server(store_path, tmp_path / "clips")
    try:
        # 250 MB announced, none sent: refused from the header alone.
        assert " 413 " in first_reply_line(server.port, head + b"Content-Length: 250000000\r\n\r\n")
        # A chunked body with no length: refused once more than the limit has come in.
        chunk = b"x" * (MAX_BODY_BYTES + 1)
        chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        assert " 413 " in first_reply_line(server.port, chunked)
    finally:
        server.stop()
    assert stored_labels(store_path) == ALREADY


# ---- a stored query that cannot be decoded ----------------------------------------------------------------

CORRUPTIONS = {
    "segment bytes": ("{}", b"\x00\xff not an npz", b"\x00\xff not an npz"),
    "metadata": ("{not json", segment(0).to_bytes(), segment(1).to_bytes()),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_an_undecodable_query_is_skipped_reported_once_and_the_next_is_served(tmp_path, caplog, corrupt):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        store.add_queries([(segment(0), segment(1))])  # 1, answered below
        store.add_label(1, "left")
    meta, a, b = CORRUPTIONS[corrupt]
    with sqlite3.connect(path) as conn:  # 2: a row no decoder can read (from a bug, or another writer)
        conn.execute(
            "INSERT INTO queries (created, source, env_id, meta, a, b) VALUES (1.0, 'test', NULL, ?, ?, ?)",
            (meta, a, b),
        )
    conn.close()
    with LabelStore(path) as store:
        store.add_queries([(segment(2), segment(3))])  # 3

    app = create_app(path, clip_dir=tmp_path / "clips")
    with (
        caplog.at_level(logging.WARNING, logger="rlarena.label"),
        TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as client,
    ):
        for _ in range(2):  # the page polls; the bad query is reported once, not at every poll
            nxt = client.get("/api/next")
            assert nxt.status_code == 200, nxt.text
            assert nxt.json()["query"]["id"] == 3
            assert nxt.json()["progress"]["undecodable_queries"] == 1
        assert client.get("/api/status").json()["undecodable_queries"] == 1
        assert_clear_error(client.get("/api/clip/2/left"), 404, "decoded")
        assert client.post("/api/label", json={"query_id": 3, "choice": "equal"}).status_code == 200
        assert client.get("/api/next").json()["query"] is None
    warnings = [r for r in caplog.records if r.name == "rlarena.label" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "query 2" in warnings[0].getMessage()
    assert stored_labels(path) == {1: "left", 3: "equal"}


def test_a_query_mixing_a_clip_and_a_text_is_skipped_and_reported(tmp_path, caplog):
    path = tmp_path / "labels.sqlite"
    text = Segment([1, 2], [3, 4], [1.0], unit="response", display={"prompt": "Q", "response": "A"})
    with LabelStore(path) as store:
        store.add_queries([(segment(0), text), (text, text)])  # 1: no one comparison to show; 2: text
    app = create_app(path, clip_dir=tmp_path / "clips")
    with (
        caplog.at_level(logging.WARNING, logger="rlarena.label"),
        TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as client,
    ):
        nxt = client.get("/api/next").json()
        assert nxt["query"]["id"] == 2 and nxt["query"]["unit"] == "response"
        assert nxt["progress"]["undecodable_queries"] == 1
        assert_clear_error(client.get("/api/clip/1/right"), 404, "text")  # its text side has no clip
    warnings = [r for r in caplog.records if r.name == "rlarena.label" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "different units" in warnings[0].getMessage()


def _store_with_an_undecodable_query(path: Path) -> None:
    """Queries 1 and 3 decode; 2 does not (its segment bytes are no npz)."""
    with LabelStore(path) as store:
        store.add_queries([(segment(0), segment(1))])
    with sqlite3.connect(path) as conn:
        meta, a, b = CORRUPTIONS["segment bytes"]
        conn.execute(
            "INSERT INTO queries (created, source, env_id, meta, a, b) VALUES (1.0, 'test', NULL, ?, ?, ?)",
            (meta, a, b),
        )
    conn.close()
    with LabelStore(path) as store:
        store.add_queries([(segment(2), segment(3))])


def test_a_label_for_an_undecodable_query_is_refused(tmp_path):
    path = tmp_path / "labels.sqlite"
    _store_with_an_undecodable_query(path)
    app = create_app(path, clip_dir=tmp_path / "clips")
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as client:
        assert_clear_error(client.post("/api/label", json={"query_id": 2, "choice": "left"}), 422, "decoded")
        assert client.post("/api/label", json={"query_id": 3, "choice": "left"}).status_code == 200
    assert stored_labels(path) == {3: "left"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"query_id": 1, "choice": "left", "choice": "right"}',
        b'{"query_id": 1, "query_id": 2, "choice": "left"}',
    ],
)
def test_a_label_with_a_duplicate_key_is_refused(client, store_path, body):
    assert_clear_error(post_label(client, body, JSON), 422, "duplicate")
    assert stored_labels(store_path) == ALREADY


def test_reward_from_labels_skips_undecodable_rows_with_a_count(tmp_path, caplog):
    from rlarena.bench.reward_model_cli import train_from_labels_file

    path = tmp_path / "labels.sqlite"
    _store_with_an_undecodable_query(path)
    with LabelStore(path) as store:  # a label stored for query 2 (before the page refused such labels)
        for query_id in (1, 2, 3):
            store.add_label(query_id, "left")
    with caplog.at_level(logging.WARNING, logger="rlarena"):
        _, metrics = train_from_labels_file(path, {"epochs": 1, "ensemble_size": 1})
    assert metrics["pairs"] == 2 and metrics["undecodable_labels"] == 1
    assert any("1 labeled query" in r.getMessage() and "query 2" in r.getMessage() for r in caplog.records)
