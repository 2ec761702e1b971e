"""The live page: `LiveStats` (rate window, bounded memory), its JSON endpoint over a real
socket, and the page itself rendered and updating in headless Chromium.

Chromium is driven over the DevTools protocol on `--remote-debugging-pipe` (fds 3 and 4,
NUL-separated JSON), so no websocket client is needed. A missing `chromium` fails the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import wes
from tests.support.waiting import wait_until
from wes.bank._live import MESSAGE_LIMIT, OTHER, LiveStats, live_routes

SCREENSHOT = Path(tempfile.gettempdir()) / "wes-live-page.png"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Account(wes.Actor):
    """A balance that refuses to go below zero."""

    def __init__(self, balance: int = 0) -> None:
        self.balance = balance

    @wes.command
    def add(self, amount: int) -> None:
        if self.balance + amount < 0:
            raise ValueError(f"<b>overdraft</b> of {-(self.balance + amount)}")
        self.balance += amount

    @wes.read
    def current(self) -> int:
        return self.balance


# -- LiveStats ----------------------------------------------------------------------------


def test_rate_is_averaged_over_the_window() -> None:
    """The rate counts the commands of the last `window` seconds and forgets older ones."""
    clock = FakeClock()
    live = LiveStats(window=10, clock=clock)
    clock.now += 100  # long past the sink's start: the full window applies
    for _second in range(5):
        for _ in range(4):
            live.event("command", "add", ("session", "s"))
        clock.now += 1.0
    live.event("read", "current", ("account", "a"))  # reads are not commands
    assert live.rate() == pytest.approx(20 / 9.0)  # 20 commands over 9 s (+0 of the current)
    clock.now += 0.5
    assert live.rate() == pytest.approx(20 / 9.5)
    clock.now += 5.0  # the first second's 4 commands have left the window
    assert live.rate() == pytest.approx(16 / 9.5)
    clock.now += 10.0
    assert live.rate() == 0.0
    assert live.counts() == {("command", "add"): 20, ("read", "current"): 1}


def test_rate_of_a_young_sink_averages_over_its_age() -> None:
    """A sink younger than its window divides by its age, at least one second."""
    clock = FakeClock()
    live = LiveStats(window=10, clock=clock)
    for _ in range(6):
        live.event("command", "add", ("session", "s"))
    clock.now += 0.25
    assert live.rate() == 6.0
    clock.now += 2.75
    assert live.rate() == pytest.approx(2.0)


def test_history_lists_whole_seconds_and_memory_stays_bounded() -> None:
    """History gives per-second counts oldest first, ending with the current second; the
    bucket ring never grows."""
    clock = FakeClock(0.0)
    live = LiveStats(window=10, history=5, clock=clock)
    ring = len(live._ring)
    for second in range(1000):
        for _ in range(second % 3):
            live.event("command", "add", ("session", "s"))
        clock.now += 1.0
    live.event("command", "add", ("session", "s"))
    assert live.history() == [0, 1, 2, 0, 1]  # seconds 996..999, then 1000 so far
    assert len(live._ring) == len(live._secs) == ring == 11


def test_errors_are_a_bounded_ring_newest_first() -> None:
    """Only the last `max_errors` errors are kept, as strings, newest first; all are counted."""
    wall = FakeClock(1_700_000_000.0)
    live = LiveStats(max_errors=3, wall_clock=wall)
    for i in range(10):
        wall.now += 1
        live.event("stop", "ValueError", ("session", i), error=ValueError(f"bad {i}"))
    live.event("save", "error", ("session", "x"), error=OSError("x" * 5000))
    live.event("stop", "lease_lost", ("session", "y"))
    live.event("stop", "normal", ("session", "z"))  # a normal stop is no error
    errors = live.errors()
    assert live.error_total == 12
    assert [(e.kind, e.channel, e.type) for e in errors] == [
        ("stop", "session/y", "lease_lost"),
        ("save", "session/x", "OSError"),
        ("stop", "session/9", "ValueError"),
    ]
    assert errors[2].message == "bad 9" and errors[2].time == 1_700_000_010.0
    assert len(errors[1].message) == MESSAGE_LIMIT
    assert all(isinstance(e.message, str) for e in errors)


def test_failing_saves_are_listed_until_a_save_works_or_the_channel_stops() -> None:
    """A channel is listed from its first failed save, with the count, the time of the first
    failure and the latest error, until a save of it works or it stops."""
    wall = FakeClock(1_700_000_000.0)
    live = LiveStats(wall_clock=wall)
    a, b = ("session", "a"), ("session", "b")
    live.event("save", "error", a, error=wes.StoreUnavailable("down"))
    wall.now += 1
    live.event("save", "error", b, error=wes.StoreUnavailable("down"))
    wall.now += 1
    live.event("save", "error", a, error=OSError("y" * 5000))
    live.event("save", "ok", b)  # another channel's save working clears only that one
    [failing] = live.failing_saves()
    assert (failing.channel, failing.failures, failing.type) == ("session/a", 2, "OSError")
    assert (failing.since, failing.last) == (1_700_000_000.0, 1_700_000_002.0)
    assert len(failing.message) == MESSAGE_LIMIT
    assert live.snapshot()["saves_failing"][0]["failures"] == 2
    live.event("command", "add", a)
    assert len(live.failing_saves()) == 1
    live.event("stop", "normal", a)
    assert live.failing_saves() == [] and live.snapshot()["saves_failing"] == []


def test_failing_saves_are_capped() -> None:
    """Past `max_failing` channels, further failing channels are left out and the list says it
    is full, until it empties."""
    live = LiveStats(max_failing=2)
    for i in range(4):
        live.event("save", "error", ("session", i), error=wes.StoreUnavailable("down"))
    assert [f.channel for f in live.failing_saves()] == ["session/0", "session/1"]
    assert live.failing_full and live.snapshot()["saves_failing_full"] is True
    live.event("save", "ok", ("session", 0))
    live.event("stop", "StoreUnavailable", ("session", 1), error=wes.StoreUnavailable("down"))
    assert live.failing_saves() == [] and not live.failing_full


def test_distinct_names_are_capped() -> None:
    """Past `max_names` distinct names, further names are counted under `OTHER`."""
    live = LiveStats(max_names=3)
    for name in ["a", "b", "c", "d", "e", "a"]:
        live.event("command", name, ("session", "s"))
    assert live.counts() == {
        ("command", "a"): 2,
        ("command", "b"): 1,
        ("command", "c"): 1,
        ("command", OTHER): 2,
    }


# -- a real server ------------------------------------------------------------------------


def build_node(tmp: Path, live: LiveStats) -> wes.Node:
    node = wes.Node(store=wes.SqliteStore(str(tmp / "live.db")), stats=live)
    node.actor_type("account", Account)
    node.channel_type("session", idle_timeout=None, durability="command")
    return node


def build_app(node: wes.Node, live: LiveStats) -> Starlette:
    """The live routes plus `POST /add/{session}/{account}?amount=N` to run a command."""

    async def add(request: Request) -> Response:
        session = ("session", request.path_params["session"])
        actor = ("account", request.path_params["account"])
        amount = int(request.query_params.get("amount", "1"))
        await node.ensure_channel(session, [wes.load_or_create(actor)])
        try:
            await node.command(session, "add", amount)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"balance": await node.read(actor, "current")})

    routes = [*live_routes(node, live), Route("/add/{session}/{account}", add, methods=["POST"])]
    return Starlette(routes=routes)


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port in this event loop; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done())
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def live_server(tmp_path: Path) -> AsyncIterator[tuple[str, wes.Node, LiveStats]]:
    live = LiveStats()
    node = build_node(tmp_path, live)
    async with node, serving(build_app(node, live)) as url:
        yield url, node, live


async def test_api_reports_channels_actors_counts_and_errors(tmp_path: Path) -> None:
    """`GET /api/live` reports the node's live channels and actors, counts, rate and errors."""
    async with live_server(tmp_path) as (url, node, _), httpx.AsyncClient(base_url=url) as http:
        empty = (await http.get("/api/live")).json()
        assert (empty["channels"], empty["actors"], empty["errors"]) == (0, 0, [])
        for user in ["ann", "bob"]:
            assert (await http.post(f"/add/{user}/{user}-1?amount=5")).status_code == 200
        assert (await http.post("/add/ann/ann-1?amount=-50")).status_code == 409
        response = await http.get("/api/live")
        assert response.headers["cache-control"] == "no-store"
        data = response.json()
        assert (data["channels"], data["actors"]) == (node.live_channels, node.live_actors)
        assert (data["channels"], data["actors"]) == (1, 1)  # ann's session died with the error
        assert data["kinds"]["command"] == 3
        assert {"kind": "command", "name": "add", "count": 3} in data["counts"]
        assert data["rate"] > 0 and len(data["history"]) == 60
        assert data["error_total"] == 1
        [error] = data["errors"]
        assert error["channel"] == "session/ann"
        assert (error["kind"], error["type"]) == ("stop", "ValueError")
        assert error["message"] == "<b>overdraft</b> of 45"


class Spoilable(Account):
    """An account that can be given a state JSON cannot hold, and healed."""

    @wes.command
    def spoil(self) -> None:
        self.tags: set[str] | list[str] = {"vip"}  # a set: every save of it fails

    @wes.command
    def heal(self) -> None:
        self.tags = ["vip"]


@contextlib.asynccontextmanager
async def failing_saves_server(tmp_path: Path) -> AsyncIterator[tuple[str, wes.Node, LiveStats]]:
    """The live routes of a node with periodic saves, one channel whose saves fail."""
    live = LiveStats()
    node = wes.Node(store=wes.SqliteStore(str(tmp_path / "live.db")), stats=live)
    node.actor_type("account", Spoilable)
    node.channel_type("session", idle_timeout=None, save_interval=0.02)
    async with node, serving(Starlette(routes=live_routes(node, live))) as url:
        await node.create_channel(("session", "ann"), [wes.create(("account", "ann-1"))])
        await node.create_channel(("session", "bob"), [wes.create(("account", "bob-1"))])
        await node.command(("session", "ann"), "spoil")
        await wait_until(lambda: live.counts().get(("save", "error"), 0) >= 2)
        yield url, node, live


async def test_api_lists_a_channel_whose_saves_fail_until_they_work(tmp_path: Path) -> None:
    """`GET /api/live` lists the channel whose periodic saves fail, with its failures, since
    when and the last error, and drops it once a save works again (its ("save", "ok") event
    reaches the sink)."""
    async with (
        failing_saves_server(tmp_path) as (url, node, live),
        httpx.AsyncClient(base_url=url) as http,
    ):
        data = (await http.get("/api/live")).json()
        [failing] = data["saves_failing"]
        assert failing["channel"] == "session/ann" and failing["failures"] >= 2
        assert failing["type"] == "StateNotEncodable"
        assert "('account', 'ann-1')" in failing["message"]
        assert failing["since"] <= failing["last"] <= data["time"]
        assert data["saves_failing_full"] is False
        saved = live.counts().get(("save", "ok"), 0)
        await node.command(("session", "ann"), "heal")
        await wait_until(lambda: live.failing_saves() == [])
        assert live.counts()[("save", "ok")] > saved
        assert (await http.get("/api/live")).json()["saves_failing"] == []


async def test_a_channel_stopped_while_its_saves_fail_leaves_the_list(tmp_path: Path) -> None:
    """A channel whose saves fail leaves the list when it stops without a save that works (a
    command killed it)."""
    async with failing_saves_server(tmp_path) as (_, node, live):
        assert [f.channel for f in live.failing_saves()] == ["session/ann"]
        with pytest.raises(ValueError, match="overdraft"):
            await node.command(("session", "ann"), "add", -1)
        assert live.failing_saves() == []
        assert node._rt.sweep.failing == {}


async def test_page_is_self_contained_html(tmp_path: Path) -> None:
    """`GET /` is one HTML document that loads nothing from elsewhere and polls its API."""
    async with live_server(tmp_path) as (url, _, _), httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in response.headers["content-security-policy"]
        page = response.text
        assert 'fetch("api/live"' in page
        assert "src=" not in page and "href=" not in page and "@import" not in page


# -- headless Chromium over the DevTools protocol -----------------------------------------


class Browser:
    """Headless Chromium driven over `--remote-debugging-pipe`: one page, CDP commands."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.session: str | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls) -> AsyncIterator[Browser]:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise RuntimeError("chromium not found: apt-get install chromium (see .ci)")
        with tempfile.TemporaryDirectory(prefix="wes-chromium-") as profile:
            args = [
                *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"),
                *("--no-first-run", "--disable-background-networking", "--disable-sync"),
                *("--disable-component-update", "--disable-extensions", "--mute-audio"),
                *("--remote-debugging-pipe", f"--user-data-dir={profile}"),
                "--window-size=1280,900",
                "about:blank",
            ]
            # The pipe protocol reads fd 3 and writes fd 4: the shell moves our stdin/stdout
            # pipes there and hands Chromium /dev/null as stdin and stdout instead.
            log = Path(profile) / "stderr.log"
            with log.open("wb") as stderr:
                proc = await asyncio.create_subprocess_exec(
                    *("sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', "sh", chromium),
                    *args,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    limit=64 * 1024 * 1024,  # a screenshot arrives as one message
                )
            browser = cls(proc)
            try:
                try:
                    target = await browser.send("Target.createTarget", url="about:blank")
                except (RuntimeError, TimeoutError) as exc:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"chromium did not start: {exc!r}\n{tail}") from exc
                attached = await browser.send(
                    "Target.attachToTarget", targetId=target["targetId"], flatten=True
                )
                browser.session = attached["sessionId"]
                yield browser
            finally:
                await browser.close()

    async def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            try:
                raw = await self._proc.stdout.readuntil(b"\0")
            except asyncio.IncompleteReadError:
                break
            message = json.loads(raw[:-1])
            future = self._waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
        for future in self._waiting.values():
            future.set_exception(RuntimeError("chromium closed the DevTools pipe"))

    async def send(self, method: str, *, page: bool = False, **params: Any) -> dict[str, Any]:
        """Send one CDP command (to the page's session when `page`); return its result."""
        assert self._proc.stdin is not None
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if page:
            message["sessionId"] = self.session
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        self._proc.stdin.write(json.dumps(message).encode() + b"\0")
        await self._proc.stdin.drain()
        reply = await asyncio.wait_for(future, 10.0)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def goto(self, url: str) -> None:
        await self.send("Page.enable", page=True)
        await self.send("Page.navigate", page=True, url=url)

    async def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        reply = await self.send(
            "Runtime.evaluate", page=True, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:  # noqa: ASYNC109 - polls the page like conftest.wait_until
        """Poll a JavaScript expression until it is truthy; return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with contextlib.suppress(RuntimeError):  # the page may be mid-navigation
                value = await self.js(expression)
                if value:
                    return value
            if loop.time() > deadline:
                raise AssertionError(f"{expression!r} stayed falsy for {timeout}s")
            await asyncio.sleep(0.05)

    async def text(self, element_id: str) -> str:
        value: str = await self.js(f"document.getElementById({element_id!r}).textContent")
        return value

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", page=True, format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5.0)
        try:
            await asyncio.wait_for(self._proc.wait(), 10.0)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        await self._reader


@pytest.mark.browser
async def test_page_renders_live_numbers_in_chromium(tmp_path: Path) -> None:
    """Chromium shows the live channels, actors, command count and the recent error, with the
    error's markup as plain text."""
    async with live_server(tmp_path) as (url, _, _), httpx.AsyncClient(base_url=url) as http:
        for user in ["ann", "bob", "cid"]:
            await http.post(f"/add/{user}/{user}-1?amount=10")
        assert (await http.post("/add/cid/cid-1?amount=-25")).status_code == 409
        async with Browser.launch() as browser:
            await browser.goto(url + "/")
            await browser.wait_for("document.body.dataset.updates >= 1")
            assert await browser.text("channels") == "2"
            assert await browser.text("actors") == "2"
            assert await browser.text("commands") == "4"
            assert await browser.text("errors") == "1"
            assert float(await browser.text("rate")) > 0
            errors = await browser.js(
                "[...document.querySelectorAll('#error-rows td')].map(td => td.textContent)"
            )
            assert errors[1:] == ["session/cid", "stop", "ValueError", "<b>overdraft</b> of 15"]
            assert await browser.js("document.querySelectorAll('#error-rows b').length") == 0
            bars = await browser.js(
                "[...document.querySelectorAll('#chart rect')].map(r => r.getAttribute('height'))"
            )
            assert len(bars) == 60 and any(float(h) > 0 for h in bars)
            assert "live" in await browser.text("status-text")
            await browser.screenshot(SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.browser
async def test_page_updates_after_a_command_without_reloading(tmp_path: Path) -> None:
    """After a command runs, the open page shows the new counts by itself, without a reload."""
    async with live_server(tmp_path) as (url, _, _), httpx.AsyncClient(base_url=url) as http:
        await http.post("/add/ann/ann-1?amount=1")
        async with Browser.launch() as browser:
            await browser.goto(url + "/")
            await browser.wait_for("document.getElementById('commands').textContent === '1'")
            await browser.js("window.loadedOnce = true")  # gone if the page ever reloads
            await http.post("/add/bob/bob-1?amount=1")
            await http.post("/add/bob/bob-1?amount=1")
            await browser.wait_for("document.getElementById('commands').textContent === '3'")
            assert await browser.text("channels") == "2"
            assert await browser.text("actors") == "2"
            assert await browser.js("window.loadedOnce") is True
            assert int(await browser.js("document.body.dataset.updates")) >= 2


@pytest.mark.browser
async def test_page_lists_a_channel_whose_saves_fail_and_clears_it(tmp_path: Path) -> None:
    """Chromium shows the channel whose saves fail in the "saves failing" table and card, and
    "every save works" once a save of it works again."""
    async with failing_saves_server(tmp_path) as (url, node, _), Browser.launch() as browser:
        await browser.goto(url + "/")
        await browser.wait_for("document.getElementById('saves-failing').textContent === '1'")
        cells = await browser.js(
            "[...document.querySelectorAll('#failing-rows td')].map(td => td.textContent)"
        )
        assert cells[0] == "session/ann" and int(cells[1]) >= 2
        assert cells[3] == "StateNotEncodable" and "set is not JSON serializable" in cells[4]
        await node.command(("session", "ann"), "heal")
        await browser.wait_for("document.getElementById('saves-failing').textContent === '0'")
        assert await browser.text("failing-rows") == "every save works"
