"""The human labeling page, end to end in headless Chromium: clips render, a click or a key stores a label,
and a restarted server shows every label given before it stopped.

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
