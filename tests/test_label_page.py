"""The human labeling page, end to end in headless Chromium: clips render (text queries: the prompt and both
responses, as literal text), a click or a key stores a label, and a restarted server shows every label given
before it stopped.

Needs Debian's chromium and chromium-driver (``scripts/ensure-test-deps.sh`` installs them); the test fails,
rather than skips, without them, so CI cannot pass while silently not testing the page.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlarena.label_store import LabelStore
from rlarena.preferences import Segment

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def pendulum_segments(n: int, length: int = 12, seed: int = 0) -> list[Segment]:
    """Segments of InvertedPendulum-v5 with the simulator states the page renders."""
    env = gym.make("InvertedPendulum-v5")
    rng = np.random.default_rng(seed)
    segments = []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        rows, acts, states, rewards, ended = [], [], [], [], False
        for _ in range(length):
            data = env.unwrapped.data
            states.append(np.concatenate([data.qpos, data.qvel]))
            action = rng.uniform(-1, 1, size=1)
            rows.append(obs)
            acts.append(action)
            obs, reward, terminated, _, _ = env.step(action)
            rewards.append(reward)
            if terminated:
                ended = True
                break
        segments.append(
            Segment(
                np.array(rows),
                np.array(acts),
                np.array(rewards),
                np.array(states),
                ended=ended,
                absorbing=length - len(rows) if ended else 0,
                meta={"env_id": "InvertedPendulum-v5"},
            )
        )
    env.close()
    return segments


# Model output is arbitrary text: markup in it must be shown, never run. The first would run if set as HTML
# in a <script>-executing way; the second runs through innerHTML too (an <img> whose load fails).
PROMPT = "Q: what is 2+3?\nline2: answer in one word"
SCRIPT_RESPONSE = "<script>alert(1)</script> & x"
TAG_RESPONSE = """<img src=x onerror="document.title='pwned'"> "five" & 'cinq'"""


def text_segment(prompt: str, response: str, score: float) -> Segment:
    """A text response as the text environment stores it: token ids and the text a person reads."""
    return Segment(
        [ord(c) % 97 for c in prompt],
        [ord(c) % 97 for c in response],
        [score],
        unit="response",
        display={"prompt": prompt, "response": response},
        meta={"env_id": "text/arithmetic"},
    )


def text_pairs() -> list[tuple[Segment, Segment]]:
    """Queries 1 and 2 answer PROMPT; query 3's two responses answer different prompts."""
    return [
        (text_segment(PROMPT, SCRIPT_RESPONSE, 0.0), text_segment(PROMPT, TAG_RESPONSE, 1.0)),
        (text_segment(PROMPT, "5", 1.0), text_segment(PROMPT, "six\nor seven", 0.0)),
        (text_segment("Q: 1+1?", "2", 1.0), text_segment("Q: 2+2?", "4", 1.0)),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``rlarena label``'s app under uvicorn in a thread, on 127.0.0.1."""

    def __init__(self, store_path: Path, clip_dir: Path) -> None:
        import uvicorn

        from rlarena.bench.label_server import create_app

        self.port = free_port()
        app = create_app(store_path, clip_dir=clip_dir, width=160, height=120)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "label server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def browser(tmp_path) -> Iterator:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), (
            f"{path} missing: run scripts/ensure-test-deps.sh (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,700",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")  # fresh profile every run
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the element may not be there yet
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def choices(store_path: Path) -> dict[int, str]:
    with LabelStore(store_path) as store:
        return {r.query_id: r.choice for r in store.labels_since(0)}


def test_label_page_stores_clicks_and_keys_and_survives_a_restart(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    store_path = tmp_path / "labels.sqlite"
    segs = pendulum_segments(8)
    with LabelStore(store_path) as store:
        store.add_queries(list(zip(segs[0::2], segs[1::2])))  # queries 1..4
        store.set_status(budget=10, val_accuracy=0.875)  # what a trainer publishes
    server = Server(store_path, tmp_path / "clips")
    try:
        browser.get(server.url)
        text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
        wait_for(lambda: text("query-id") == "1", what="the first query")
        assert text("progress") == "0 of 10" and text("accuracy") == "87.5%" and text("pending") == "4"
        # Both clips are real rendered GIFs, loaded by the browser.
        for side in ("left", "right"):
            wait_for(
                lambda side=side: (
                    browser.execute_script(
                        f"const i = document.getElementById('{side}-clip'); "
                        "return i.complete && i.naturalWidth"
                    )
                    == 160
                ),
                what=f"the {side} clip",
            )
        browser.save_screenshot(str(tmp_path / "page.png"))

        browser.find_element(By.ID, "btn-left").click()
        wait_for(lambda: text("query-id") == "2", what="the second query after a click")
        assert choices(store_path) == {1: "left"}
        assert text("progress") == "1 of 10"

        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        wait_for(lambda: text("query-id") == "3", what="the third query after a key press")
        assert choices(store_path) == {1: "left", 2: "right"}
    finally:
        server.stop()

    # A new server on the same store: nothing lost, the page continues at the first unanswered query.
    server = Server(store_path, tmp_path / "clips")
    try:
        browser.get(server.url)
        wait_for(lambda: text("query-id") == "3", what="the page after a restart")
        assert text("progress") == "2 of 10" and text("pending") == "2"
        browser.find_element(By.ID, "btn-equal").click()
        wait_for(lambda: text("query-id") == "4", what="the fourth query")
        browser.find_element(By.ID, "btn-skip").click()
        wait_for(lambda: text("query-id") == "none", what="the empty queue")
        assert "No query waiting" in text("message")
        assert choices(store_path) == {1: "left", 2: "right", 3: "equal", 4: "skip"}
        assert text("progress") == "3 of 10"  # a skip is answered but is not a label
    finally:
        server.stop()


def test_label_api_refuses_bad_requests(tmp_path):
    from fastapi.testclient import TestClient

    from rlarena.bench.label_server import create_app, main

    store_path = tmp_path / "labels.sqlite"
    segs = pendulum_segments(2, length=4)
    segs = [Segment(s.obs, s.actions, s.true_rewards) for s in segs]  # no states: drawn as a plot
    with LabelStore(store_path) as store:
        store.add_queries([(segs[0], segs[1])])
    with TestClient(create_app(store_path), base_url="http://127.0.0.1") as client:
        assert client.get("/api/next").json()["query"]["id"] == 1
        clip = client.get("/api/clip/1/left")
        assert clip.status_code == 200 and clip.headers["content-type"].startswith("image/svg+xml")
        assert client.get("/api/clip/7/left").status_code == 404
        ok = {"query_id": 1, "choice": "left"}
        assert (
            client.post(
                "/api/label",
                content='{"query_id": 1, "choice": "left"}',
                headers={"content-type": "text/plain"},
            ).status_code
            == 415
        )  # no cross-site form posts
        assert client.post("/api/label", json={"query_id": 1, "choice": "better"}).status_code == 422
        assert client.post("/api/label", json={"query_id": 9, "choice": "left"}).status_code == 404
        assert client.post("/api/label", json=ok).status_code == 200
        assert client.post("/api/label", json={"query_id": 1, "choice": "right"}).status_code == 409
        assert client.get("/api/status").json()["labels"] == 1
    with TestClient(create_app(store_path), base_url="http://evil.example") as client:
        assert client.get("/").status_code == 400  # DNS rebinding: only loopback host names are served
    assert main([f"store={store_path}", "host=0.0.0.0"]) == 2  # no authentication: loopback only


def test_label_page_shows_text_queries_as_literal_text_and_survives_a_restart(browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    store_path = tmp_path / "labels.sqlite"
    with LabelStore(store_path) as store:
        store.add_queries(text_pairs())  # queries 1..3, as the trainer stores them
        store.set_status(budget=5)
    element = lambda element_id: browser.find_element(By.ID, element_id)  # noqa: E731
    text = lambda element_id: element(element_id).text  # noqa: E731 (rendered text, as a person sees it)
    raw = lambda element_id: browser.execute_script(  # noqa: E731 (the DOM's text, and its child elements)
        "const e = document.getElementById(arguments[0]); return [e.textContent, e.children.length];",
        element_id,
    )

    def assert_nothing_ran() -> None:
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert  # noqa: B018 (the property raises when no alert() ran)
        assert browser.title == "rlarena: which is better?"
        # Neither the <img> in a response (never created) nor a clip (text has none) was requested.
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname);"
        )
        assert not [path for path in fetched if path == "/x" or path.startswith("/api/clip")], fetched

    server = Server(store_path, tmp_path / "clips")
    try:
        browser.get(server.url)
        wait_for(lambda: text("query-id") == "1", what="the first text query")
        assert text("title") == "Which response is better?"
        assert not element("left-clip").is_displayed() and element("left-clip").get_attribute("src") is None
        time.sleep(0.5)  # what markup in a response would have fetched or fired has had time to
        assert_nothing_ran()
        # The prompt once, its line break kept (pre-wrap); each response as written, markup and all.
        assert element("prompt").is_displayed() and text("prompt") == PROMPT
        assert not element("left-prompt-box").is_displayed()
        assert raw("left-response") == [SCRIPT_RESPONSE, 0] and text("left-response") == SCRIPT_RESPONSE
        assert raw("right-response") == [TAG_RESPONSE, 0] and text("right-response") == TAG_RESPONSE
        assert text("left-text-caption") == f"left: {len(SCRIPT_RESPONSE)} tokens"
        left, right = element("left-response").rect, element("right-response").rect
        assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 2  # side by side
        assert text("progress") == "0 of 5" and text("pending") == "3"
        browser.save_screenshot(str(tmp_path / "text-page.png"))

        element("btn-right").click()
        wait_for(lambda: text("query-id") == "2", what="the second text query after a click")
        assert choices(store_path) == {1: "right"}
        assert text("progress") == "1 of 5" and text("right-response") == "six\nor seven"
        assert_nothing_ran()
    finally:
        server.stop()

    # A new server on the same store: the label kept, the page continues at the first unanswered query.
    server = Server(store_path, tmp_path / "clips")
    try:
        browser.get(server.url)
        wait_for(lambda: text("query-id") == "2", what="the page after a restart")
        assert choices(store_path) == {1: "right"}
        assert text("progress") == "1 of 5" and text("pending") == "2" and text("prompt") == PROMPT
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        wait_for(lambda: text("query-id") == "3", what="the third text query after a key press")
        assert choices(store_path) == {1: "right", 2: "left"}
        # Different prompts: each shown above its own response, no shared prompt.
        assert not element("prompt-box").is_displayed()
        assert text("left-prompt") == "Q: 1+1?" and text("right-prompt") == "Q: 2+2?"
        element("btn-equal").click()
        wait_for(lambda: text("query-id") == "none", what="the empty queue")
        assert choices(store_path) == {1: "right", 2: "left", 3: "equal"}
        assert text("progress") == "3 of 5" and text("left-response") == ""
        assert_nothing_ran()
    finally:
        server.stop()


def test_label_api_describes_text_queries(tmp_path):
    from fastapi.testclient import TestClient

    from rlarena.bench.label_server import create_app

    store_path = tmp_path / "labels.sqlite"
    no_text = Segment([5, 6], [7, 8, 9], [0.0], unit="response")  # token ids only, no display
    steps = Segment(np.zeros((3, 2)), np.zeros((3, 1)))
    with LabelStore(store_path) as store:
        store.add_queries(text_pairs()[:1] + text_pairs()[2:] + [(no_text, no_text), (steps, steps)])
    with TestClient(create_app(store_path, clip_dir=tmp_path / "clips"), base_url="http://127.0.0.1") as c:

        def next_query() -> dict:
            reply = c.get("/api/next")
            assert reply.status_code == 200, reply.text
            return reply.json()["query"]

        def answer(query_id: int) -> None:
            assert c.post("/api/label", json={"query_id": query_id, "choice": "skip"}).status_code == 200

        assert next_query() == {
            "id": 1,
            "unit": "response",
            "env_id": "text/arithmetic",
            "prompt": PROMPT,
            "left": {"tokens": len(SCRIPT_RESPONSE), "response": SCRIPT_RESPONSE, "prompt": PROMPT},
            "right": {"tokens": len(TAG_RESPONSE), "response": TAG_RESPONSE, "prompt": PROMPT},
        }
        clip = c.get("/api/clip/1/left")  # a response has no clip: a clear 404, not a 500 from the plotter
        assert clip.status_code == 404 and "text" in clip.json()["detail"]
        answer(1)
        query = next_query()
        assert query["id"] == 2 and query["prompt"] is None
        assert (query["left"]["prompt"], query["right"]["prompt"]) == ("Q: 1+1?", "Q: 2+2?")
        answer(2)
        query = next_query()  # no stored text: the token ids, not an empty box
        assert query["prompt"] == "[no text stored; token ids: 5 6]"
        assert query["left"] == {
            "tokens": 3,
            "response": "[no text stored; token ids: 7 8 9]",
            "prompt": query["prompt"],
        }
        answer(3)
        query = next_query()  # a steps query after text ones is still a clip
        assert query == {
            "id": 4,
            "unit": "steps",
            "env_id": None,
            "left": {"steps": 3, "ended": False},
            "right": {"steps": 3, "ended": False},
        }
        assert c.get("/api/clip/4/left").headers["content-type"].startswith("image/svg+xml")


def test_anyio_has_nothing_left_to_import_lazily():
    """conftest resolves anyio's lazy imports in the main thread: the label server's thread then parses no
    module (a parse beside the main thread's fails on CPython 3.11 under pytest's rewriting, seen in CI)."""
    import anyio
    import anyio.abc

    for module in (anyio, anyio.abc):
        unresolved = [name for name in dir(module) if name not in vars(module)]
        assert not unresolved, f"{module.__name__} would still import {unresolved[:5]} on first use"
