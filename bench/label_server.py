"""``rlarena label``: the page where a person answers preference queries (FastAPI + uvicorn, 127.0.0.1).

The page shows the two segments of the oldest unanswered query side by side: for segments of steps
(``Segment.unit == "steps"``) as looping clips, rendered on demand from the recorded MuJoCo states
(``envs/mujoco_render.py``; segments without states are drawn as plots of their observations); for text
(``unit == "response"``) as the prompt, once, above the two responses (``Segment.display``), all set as
literal text (``textContent``: model output is never parsed as HTML). Below: left / right / equal / skip
buttons and keyboard shortcuts (arrows or 1 2 3, space or 0 to skip), the labels given of the budget, and the
reward model's validation accuracy that the trainer publishes in the store. Every answer is committed
(fsynced) before the page moves on. A query whose two segments have different units is skipped like an
undecodable one (there is no way to show it as one comparison).

A label post must come from the page's own origin, as JSON of at most ``MAX_BODY_BYTES`` that fits
``LabelRequest``; anything else gets a 4xx with a one-line reason and stores nothing. A stored query that
cannot be decoded is skipped, logged once and counted (``undecodable_queries`` in the progress).

    rlarena label store=runs/labels.sqlite [port=8765] [host=127.0.0.1] [budget=700]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from rlarena.label_store import LabelStore, Query, UndecodableQuery
from rlarena.preferences import CHOICES, Segment

log = logging.getLogger("rlarena.label")

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
# A label is about 40 bytes of JSON; no larger body is read (a client cannot make the server hold more).
MAX_BODY_BYTES = 4096
SQLITE_INT_MAX = 2**63 - 1  # SQLite's INTEGER is int64: a larger id would overflow, not just miss
QueryId = Annotated[int, Field(ge=1, le=SQLITE_INT_MAX)]  # ids start at 1 (AUTOINCREMENT)


# ---- clips ----------------------------------------------------------------------------------------------


def observation_plot_svg(segment: Segment, width: int = 320, height: int = 240) -> str:
    """A fallback picture for segments without simulator states: each observation dimension over time."""
    obs = segment.obs
    span = obs.max(0) - obs.min(0)
    z = (obs - obs.min(0)) / np.where(span > 0, span, 1.0)
    steps = max(len(obs) - 1, 1)
    lines = []
    for j in range(obs.shape[1]):
        hue = (j * 47) % 360
        points = " ".join(
            f"{8 + (width - 16) * t / steps:.1f},{8 + (height - 16) * (1 - v):.1f}"
            for t, v in enumerate(z[:, j])
        )
        lines.append(
            f'<polyline fill="none" stroke="hsl({hue},70%,45%)" stroke-width="1.5" points="{points}"/>'
        )
    note = "episode ended" if segment.ended else f"{len(obs)} steps"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f'<rect width="100%" height="100%" fill="#fafafa"/>{"".join(lines)}'
        f'<text x="10" y="{height - 10}" font-size="12" fill="#555">{note}</text></svg>'
    )


class NoClip(ValueError):
    """The segment is a text response: it is read on the page, there is no clip to render."""


class ClipMaker:
    """Renders and caches one clip per (query, side); all rendering on one thread (OpenGL contexts are)."""

    def __init__(self, store: LabelStore, clip_dir: Path, width: int, height: int) -> None:
        self.store = store
        self.clip_dir = clip_dir
        self.width = width
        self.height = height
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._renderer = None

    def _render(self, query_id: int, side: str) -> tuple[Path, str]:
        query = self.store.get_query(query_id)
        seg = query.a if side == "left" else query.b
        if seg.unit != "steps":  # a response has token ids, not states or per-step observations
            raise NoClip(f"query {query_id} compares text responses: it has no clips")
        # The creation time in the name: a new store at the same path never shows an old store's clips.
        stem = f"{query_id}_{int(query.created * 1e6)}_{side}"
        if seg.states is not None and query.env_id:
            path = self.clip_dir / f"{stem}.gif"
            if not path.exists():
                from rlarena.envs.mujoco_render import SegmentRenderer, render_segment_clip

                if self._renderer is None:
                    self._renderer = SegmentRenderer(self.width, self.height)
                render_segment_clip(self._renderer, query.env_id, seg.states, path, seg.absorbing)
            return path, "image/gif"
        path = self.clip_dir / f"{stem}.svg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(observation_plot_svg(seg, self.width, self.height), encoding="utf-8")
        return path, "image/svg+xml"

    async def clip(self, query_id: int, side: str) -> tuple[Path, str]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._render, query_id, side)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._renderer is not None:
            self._renderer.close()


# ---- requests -------------------------------------------------------------------------------------------


class LabelRequest(BaseModel):
    """The body of ``POST /api/label``. Strict: ``true`` and ``"1"`` are not query ids; no other fields."""

    model_config = ConfigDict(strict=True, extra="forbid")

    query_id: QueryId
    choice: Literal[tuple(CHOICES)]  # type: ignore[valid-type]  # CHOICES: one list of answers


def validation_message(errors: Sequence[Any]) -> str:
    """Pydantic errors as one short line ("query_id: Input should be a valid integer"), never echoing the
    input back: a long string or a deep structure is not repeated in the reply."""
    parts = []
    for error in errors[:3]:  # the first few are enough to fix a request
        where = ".".join(str(part) for part in error["loc"] if part != "body")
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


def is_json_content_type(value: str) -> bool:
    """Exactly ``application/json``, optionally with ``charset=utf-8``: not ``application/jsonfoo``, and
    nothing a cross-site form can send without a CORS preflight."""
    media_type, *params = (part.strip().lower() for part in value.split(";"))
    return media_type == "application/json" and all(p in ("charset=utf-8", 'charset="utf-8"') for p in params)


def is_same_origin(request: Request) -> bool:
    """No Origin header (not a browser), or the page's own: a page on another site cannot post labels."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin.lower() == f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused (413) as soon as it is known to be over ``limit``: from Content-Length before any
    of it is read, else while it streams in (chunked bodies carry no length)."""
    too_large = HTTPException(413, f"request body over {limit} bytes")
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def parse_label(request: Request) -> LabelRequest:
    """The checked body of a label post; an HTTP error (403, 415, 413, 422) for anything else."""
    if not is_same_origin(request):
        raise HTTPException(403, "cross-origin label posts are refused")
    # JSON only: a cross-site form post (text/plain, no CORS preflight) cannot forge a label.
    if not is_json_content_type(request.headers.get("content-type", "")):
        raise HTTPException(415, "send JSON (Content-Type: application/json)")
    body = await read_body(request)
    try:
        label = LabelRequest.model_validate_json(body)
    except ValidationError as exc:
        message = validation_message(exc.errors(include_url=False, include_input=False))
        raise HTTPException(422, message) from None
    # JSON parsers keep the last of two equal keys: a body that says both "left" and "right" is refused.
    # (The body is a valid flat object by now, so parsing it again is cheap and cannot recurse deeply.)
    json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    return label


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise HTTPException(422, f"duplicate key {key[:40]!r} in the label")
        seen.add(key)
    return dict(pairs)


class UndecodableLog:
    """Stored queries that cannot be decoded: each is logged once and counted, and the page skips it."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._lock = threading.Lock()  # /api/next runs in a thread pool

    def report(self, exc: UndecodableQuery) -> None:
        with self._lock:
            if exc.query_id in self._ids:
                return
            self._ids.add(exc.query_id)
        log.warning("skipping a stored query: %s", exc)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)


def next_decodable(store: LabelStore, undecodable: UndecodableLog) -> Query | None:
    """The oldest pending query that decodes and can be shown: one bad row must not block the queries after
    it."""
    after = 0
    while True:
        try:
            query = store.next_pending(after)
            if query is not None and query.a.unit != query.b.unit:
                # A clip beside a text is no comparison anyone can answer; no writer here makes one.
                cause = ValueError(f"its segments have different units ({query.a.unit}, {query.b.unit})")
                raise UndecodableQuery(query.id, cause)
            return query
        except UndecodableQuery as exc:
            undecodable.report(exc)
            after = exc.query_id


# ---- the app --------------------------------------------------------------------------------------------


def display_text(seg: Segment, key: str) -> str:
    """The prompt or response a person reads. Without stored text (a writer that kept only token ids) the
    ids themselves: something to compare is better than a blank box."""
    if seg.display is not None and key in seg.display:
        return seg.display[key]
    ids = seg.obs if key == "prompt" else seg.actions
    return f"[no text stored; token ids: {' '.join(str(int(i)) for i in ids)}]"


def _describe(query: Query) -> dict[str, Any]:
    """What the page needs to show a query. Raw text goes out as JSON strings; the page sets it with
    ``textContent``, so nothing a model wrote is ever parsed as HTML."""
    if query.a.unit == "response":
        prompts = [display_text(seg, "prompt") for seg in (query.a, query.b)]

        def response(seg: Segment, prompt: str) -> dict[str, Any]:
            return {"tokens": len(seg), "response": display_text(seg, "response"), "prompt": prompt}

        return {
            "id": query.id,
            "unit": "response",
            "env_id": query.env_id,
            # The text environment pairs responses to one prompt: shown once. null: each side shows its own.
            "prompt": prompts[0] if prompts[0] == prompts[1] else None,
            "left": response(query.a, prompts[0]),
            "right": response(query.b, prompts[1]),
        }

    def side(seg: Segment) -> dict[str, Any]:
        return {"steps": len(seg), "ended": seg.ended}

    return {
        "id": query.id,
        "unit": "steps",
        "env_id": query.env_id,
        "left": side(query.a),
        "right": side(query.b),
    }


def create_app(
    store_path: str | Path,
    *,
    clip_dir: str | Path | None = None,
    budget: int | None = None,
    width: int = 320,
    height: int = 240,
    allowed_hosts: list[str] | None = None,
):
    """The labeling app over one store (FastAPI). ``allowed_hosts`` guards against DNS rebinding."""
    store = LabelStore(store_path)
    clips = ClipMaker(store, Path(clip_dir) if clip_dir else Path(f"{store_path}.clips"), width, height)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        clips.close()
        store.close()

    # No schema or docs pages: the page is the only client, and they only widen what is served.
    app = FastAPI(
        title="rlarena preference labeling",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost", "[::1]"]
    )
    app.state.store = store
    undecodable = UndecodableLog()

    @app.exception_handler(RequestValidationError)
    async def short_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=422)

    def progress() -> dict[str, Any]:
        status = store.status()
        counts = store.counts()
        return {
            **counts,
            "budget": budget if budget is not None else status.get("budget"),
            "val_accuracy": status.get("val_accuracy"),
            "rm_labels": status.get("labels"),
            "undecodable_queries": len(undecodable),
        }

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/status")
    def api_status() -> dict[str, Any]:
        return progress()

    @app.get("/api/next")
    def api_next() -> dict[str, Any]:
        query = next_decodable(store, undecodable)
        return {"query": None if query is None else _describe(query), "progress": progress()}

    @app.get("/api/clip/{query_id}/{side}")
    async def api_clip(query_id: QueryId, side: str):
        if side not in ("left", "right"):
            raise HTTPException(404, "side must be left or right")
        try:
            path, media_type = await clips.clip(query_id, side)
        except KeyError:
            raise HTTPException(404, f"no query {query_id}") from None
        except UndecodableQuery:
            raise HTTPException(404, f"query {query_id} cannot be decoded") from None
        except NoClip as exc:
            raise HTTPException(404, str(exc)) from None
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "max-age=86400"})

    def add_label(query_id: int, choice: str) -> bool:
        """Store a label for a query that decodes and shows one comparison (what the page could show)."""
        query = store.get_query(query_id)  # KeyError, UndecodableQuery; queries never change once stored
        if query.a.unit != query.b.unit:
            cause = ValueError(f"its segments have different units ({query.a.unit}, {query.b.unit})")
            raise UndecodableQuery(query.id, cause)
        return store.add_label(query_id, choice)

    @app.post("/api/label")
    async def api_label(request: Request) -> dict[str, Any]:
        label = await parse_label(request)
        query_id, choice = label.query_id, label.choice
        try:
            stored = await asyncio.get_running_loop().run_in_executor(None, add_label, query_id, choice)
        except KeyError:
            raise HTTPException(404, f"no query {query_id}") from None
        except UndecodableQuery as exc:  # a label for it would make the store unreadable to its trainer
            undecodable.report(exc)
            raise HTTPException(422, f"query {query_id} cannot be decoded: it cannot be labeled") from None
        if not stored:
            raise HTTPException(409, f"query {query_id} already has a label")
        return {"stored": True, "query_id": query_id, "choice": choice, "progress": progress()}

    return app


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rlarena: which is better?</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 760px; color: #222; }
 h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
 .bar { display: flex; flex-wrap: wrap; gap: .4rem 1.5rem; font-size: .95rem; color: #444;
        margin-bottom: .8rem; }
 .bar span { white-space: nowrap; }
 [hidden] { display: none !important; }  /* else .clips' display: flex would keep a hidden view shown */
 .clips { display: flex; gap: 1rem; }
 figure { margin: 0; flex: 1; text-align: center; }
 figure img { width: 100%; aspect-ratio: 4 / 3; background: #eee; border-radius: 6px; }
 figcaption { font-size: .85rem; color: #555; margin-top: .2rem; }
 /* Text queries. pre-wrap: a dialogue prompt's line breaks are part of what is read. */
 .text-block { white-space: pre-wrap; overflow-wrap: anywhere; text-align: left; font-size: .95rem;
               line-height: 1.4; border: 1px solid #ccc; border-radius: 6px; padding: .5rem .7rem;
               background: #fafafa; max-height: 22rem; overflow-y: auto; margin: .2rem 0 0; }
 .text-label { font-size: .85rem; color: #555; }
 #prompt-box { margin-bottom: .8rem; }
 .responses { display: flex; gap: 1rem; }
 .responses figure { min-width: 0; }
 .response { background: #fff; border-color: #999; }
 .buttons { display: grid; grid-template-columns: repeat(4, 1fr); gap: .6rem; margin-top: 1rem; }
 button { font-size: 1rem; padding: .7rem; border-radius: 6px; border: 1px solid #999; background: #fff;
          cursor: pointer; }
 button:hover:enabled { background: #eef4ff; }
 button:disabled { opacity: .45; cursor: default; }
 kbd { font-size: .75rem; border: 1px solid #aaa; border-radius: 3px; padding: 0 .3rem; }
 #message { min-height: 1.4rem; margin-top: .8rem; color: #155; }
 progress { width: 180px; vertical-align: middle; }
</style></head>
<body>
<h1 id="title">Which clip shows the better behaviour?</h1>
<div class="bar">
 <span>labels given: <b id="progress">…</b> <progress id="progress-bar" value="0" max="1"></progress></span>
 <span>pending: <b id="pending">…</b></span>
 <span>reward model validation accuracy: <b id="accuracy">…</b></span>
 <span id="undecodable" hidden>unreadable queries skipped: <b id="undecodable-count"></b>
  (see the server log)</span>
</div>
<div class="clips" id="clips">
 <figure><img id="left-clip" alt="left segment"><figcaption id="left-caption">left</figcaption></figure>
 <figure><img id="right-clip" alt="right segment"><figcaption id="right-caption">right</figcaption></figure>
</div>
<div id="text" hidden>
 <div id="prompt-box"><div class="text-label">prompt</div><div id="prompt" class="text-block"></div></div>
 <div class="responses">
  <figure><div id="left-prompt-box" hidden><div class="text-label">left prompt</div>
   <div id="left-prompt" class="text-block"></div></div>
   <div class="text-label" id="left-text-caption">left</div>
   <div id="left-response" class="text-block response"></div></figure>
  <figure><div id="right-prompt-box" hidden><div class="text-label">right prompt</div>
   <div id="right-prompt" class="text-block"></div></div>
   <div class="text-label" id="right-text-caption">right</div>
   <div id="right-response" class="text-block response"></div></figure>
 </div>
</div>
<div class="buttons">
 <button id="btn-left" data-choice="left" disabled>Left is better <kbd>&larr;</kbd></button>
 <button id="btn-equal" data-choice="equal" disabled>Equally good <kbd>&darr;</kbd></button>
 <button id="btn-right" data-choice="right" disabled>Right is better <kbd>&rarr;</kbd></button>
 <button id="btn-skip" data-choice="skip" disabled>Can't tell / skip <kbd>space</kbd></button>
</div>
<div id="message"></div>
<div>query: <span id="query-id">none</span></div>
<script>
let current = null, busy = false, timer = null;
const $ = (id) => document.getElementById(id);
const buttons = () => document.querySelectorAll("button[data-choice]");

function caption(side) {
  const ended = side.ended ? ", episode ended" : "";
  return `${side.steps} steps${ended}`;
}

function showProgress(p) {
  const budget = p.budget == null ? "?" : p.budget;
  $("progress").textContent = `${p.labels} of ${budget}`;
  $("progress-bar").max = p.budget || Math.max(p.queries, 1);
  $("progress-bar").value = p.labels;
  $("pending").textContent = p.pending;
  $("accuracy").textContent =
    p.val_accuracy == null ? "not trained yet" : (100 * p.val_accuracy).toFixed(1) + "%";
  $("undecodable").hidden = !p.undecodable_queries;
  $("undecodable-count").textContent = p.undecodable_queries;
}

const TITLES = { steps: "Which clip shows the better behaviour?", response: "Which response is better?" };

function clearQuery() {
  $("left-clip").removeAttribute("src"); $("right-clip").removeAttribute("src");
  $("left-caption").textContent = "left"; $("right-caption").textContent = "right";
  // textContent, here and below: model output is shown as written, never parsed as HTML.
  for (const id of ["prompt", "left-prompt", "right-prompt", "left-response", "right-response"])
    $(id).textContent = "";
}

function showClips(q) {
  $("text").hidden = true; $("clips").hidden = false;
  $("left-clip").src = `/api/clip/${q.id}/left`;
  $("right-clip").src = `/api/clip/${q.id}/right`;
  $("left-caption").textContent = "left: " + caption(q.left);
  $("right-caption").textContent = "right: " + caption(q.right);
}

function showText(q) {
  $("clips").hidden = true; $("text").hidden = false;
  const shared = q.prompt != null;  // one prompt for both (the usual case), else one above each response
  $("prompt-box").hidden = !shared;
  $("prompt").textContent = shared ? q.prompt : "";
  for (const side of ["left", "right"]) {
    $(`${side}-prompt-box`).hidden = shared;
    $(`${side}-prompt`).textContent = shared ? "" : q[side].prompt;
    $(`${side}-text-caption`).textContent = `${side}: ${q[side].tokens} tokens`;
    $(`${side}-response`).textContent = q[side].response;
  }
}

async function load() {
  clearTimeout(timer);
  const data = await (await fetch("/api/next")).json();
  showProgress(data.progress);
  current = data.query;
  clearQuery();
  if (!current) {
    $("query-id").textContent = "none";
    $("message").textContent = "No query waiting. This page checks again every 2 seconds.";
    buttons().forEach((b) => (b.disabled = true));
    timer = setTimeout(load, 2000);
    return;
  }
  $("query-id").textContent = current.id;
  $("title").textContent = TITLES[current.unit] || TITLES.steps;
  if (current.unit === "response") showText(current); else showClips(current);
  buttons().forEach((b) => (b.disabled = false));
}

async function choose(choice) {
  if (!current || busy) return;
  busy = true;
  buttons().forEach((b) => (b.disabled = true));
  const id = current.id;
  try {
    const r = await fetch("/api/label", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query_id: id, choice: choice }),
    });
    $("message").textContent = r.ok ? `saved: query ${id} = ${choice}` :
      (r.status === 409 ? `query ${id} was already answered` : `not saved (${r.status}); try again`);
  } catch (e) {
    $("message").textContent = "not saved: the server is unreachable; try again";
  } finally {
    busy = false;
    await load();
  }
}

buttons().forEach((b) => b.addEventListener("click", () => choose(b.dataset.choice)));
const KEYS = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right",
               ArrowDown: "equal", ArrowUp: "equal", "3": "equal", "=": "equal", " ": "skip", "0": "skip" };
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || !(e.key in KEYS)) return;
  e.preventDefault();
  choose(KEYS[e.key]);
});
load();
</script>
</body></html>
"""


# ---- the command ----------------------------------------------------------------------------------------


def key_value_args(argv: list[str]) -> list[str]:
    """Accept Hydra-style ``key=value`` as well as ``--key value``."""
    return [a if a.startswith("-") or "=" not in a else f"--{a}" for a in argv]


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlarena label", description="Serve the preference-labeling page.")
    parser.add_argument(
        "--store", required=True, help="SQLite label store (the trainer's algo.labeler.store)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback only unless --allow-remote")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--budget", type=int, default=None, help="label budget shown (default: the trainer's)"
    )
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument(
        "--clip-dir", "--clip_dir", dest="clip_dir", default=None, help="default: <store>.clips/"
    )
    parser.add_argument(
        "--allow-remote",
        "--allow_remote",
        dest="allow_remote",
        default="false",
        help="true to bind a non-loopback address (the page has no authentication)",
    )
    args = parser.parse_args(key_value_args(list(sys.argv[1:] if argv is None else argv)))
    remote = str(args.allow_remote).lower() in ("1", "true", "yes")
    if not is_loopback(args.host) and not remote:
        print(
            f"rlarena label: refusing to serve on {args.host}: the page has no authentication. "
            "Use an SSH tunnel to 127.0.0.1, or pass allow_remote=true.",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports MuJoCo
    import uvicorn

    app = create_app(
        args.store,
        clip_dir=args.clip_dir,
        budget=args.budget,
        width=args.width,
        height=args.height,
        allowed_hosts=["*"] if remote else None,
    )
    counts = app.state.store.counts()
    print(
        f"rlarena label: {args.store}: {counts['labels']} label(s), {counts['pending']} pending. "
        f"Open http://{args.host}:{args.port}/  (Ctrl-C to stop)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
