"""Structured logs: `configure_logging` writes one JSON object or key=value line per record,
LoggingStats records carry the event's fields, and a channel stopped by an exception logs its
traceback exactly once."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import wes
from tests.support import counters
from tests.support.nodes import EMPTY, SESSION, A, B, node_of
from tests.support.recorder import Recorder
from tests.support.waiting import wait_until
from wes import _saving, _sweep
from wes._logging import configure_logging
from wes._stats import LoggingStats, MultiStats
from wes.abc import Stats


class Counter(counters.Counter):
    def __init__(self) -> None:
        super().__init__()
        self.fail_on_tick = False

    @wes.command
    def fail(self) -> None:
        raise ValueError("boom in a handler")

    @wes.command
    async def fail_async(self) -> None:
        raise ValueError("boom in an async handler")

    @wes.command
    def unencodable(self) -> None:
        self.value = {1, 2}  # type: ignore[assignment]  # a set: the JSON codec refuses it at save time

    @wes.command
    def tick_then_fail(self) -> None:
        self.fail_on_tick = True
        self.set_timer("tick", 0.01)

    def on_timer(self, name: str) -> None:
        raise ValueError("boom in a timer")


@pytest.fixture(autouse=True)
def restore_wes_logger() -> Iterator[None]:
    """configure_logging changes the process-wide `wes` logger: put it back after each test."""
    logger = logging.getLogger("wes")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def make_node(stats: Stats, **kw: Any) -> wes.Node:
    return node_of({"counter": Counter}, stats=stats, **kw)


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, each parsed as one JSON object."""
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_json_lines_one_per_event() -> None:
    """At DEBUG every event is one JSON line carrying ts, level, logger, msg and the event's
    kind, name and ident, plus seconds for timed events."""
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    recorder = Recorder()
    node = make_node(MultiStats(LoggingStats(timed=True), recorder))
    async with node:
        await node.create_channel(SESSION, [wes.create(A), wes.create(B)])
        await node.create_channel(EMPTY)
        await node.command(SESSION, "incr", 2)
        await node.read(A, "value")
        await node.command(EMPTY, "nobody")
        await node.stop_channel(SESSION)
    lines = json_lines(out)
    assert len(lines) == len(recorder.events) >= 9
    assert [(r["kind"], r["name"], tuple(r["ident"])) for r in lines] == recorder.names()
    for record in lines:
        assert {"ts", "level", "logger", "msg", "kind", "name", "ident"} <= record.keys()
        assert record["logger"] == "wes.stats"
        assert record["level"] == "DEBUG"
        assert record["ts"].endswith("Z")
        assert "traceback" not in record
    [command] = [r for r in lines if r["kind"] == "command" and r["name"] == "incr"]
    assert command["ident"] == list(SESSION)
    assert command["seconds"] >= 0
    assert "incr" in command["msg"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("fail", "boom in a handler"),
        ("fail_async", "boom in an async handler"),
    ],
)
async def test_raising_command_logs_one_traceback(command: str, message: str) -> None:
    """A command that raises logs exactly one record with a traceback: the ERROR record of the
    channel's stop, naming the exception type and the handler that raised it."""
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    node = make_node(LoggingStats())
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(ValueError, match=message):
            await node.command(SESSION, command)
    with_traceback = [r for r in json_lines(out) if "traceback" in r]
    assert len(with_traceback) == 1
    [record] = with_traceback
    assert (record["level"], record["kind"], record["name"]) == ("ERROR", "stop", "ValueError")
    assert record["ident"] == list(SESSION)
    assert record["error"] == "ValueError"
    assert record["error_message"] == message
    assert record["traceback"].startswith("Traceback (most recent call last):")
    assert f"in {command}" in record["traceback"]
    assert record["traceback"].endswith(f"ValueError: {message}")
    assert out.getvalue().count("Traceback") == 1


async def test_raising_timer_logs_one_traceback() -> None:
    """A timer that raises kills its channel and logs the traceback once."""
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    stats = wes.MemoryStats()
    node = make_node(MultiStats(LoggingStats(), stats))
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "tick_then_fail")
        await wait_until(lambda: stats.counts().get(("stop", "ValueError"), 0) == 1)
    [record] = json_lines(out)  # at INFO, routine events are not logged
    assert (record["kind"], record["name"]) == ("stop", "ValueError")
    assert "in on_timer" in record["traceback"]


async def test_failed_durable_save_logs_its_traceback_once() -> None:
    """A durable save that fails logs a WARNING with the traceback; the stop it causes is
    logged too, naming the same error, without repeating the traceback."""
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    node = make_node(LoggingStats(), durability="command")
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.StateNotEncodable):
            await node.command(SESSION, "unencodable")
    save, stop = json_lines(out)
    assert (save["level"], save["kind"], save["name"]) == ("WARNING", "save", "error")
    assert (stop["level"], stop["kind"], stop["name"]) == ("ERROR", "stop", "StateNotEncodable")
    assert save["error"] == stop["error"] == "StateNotEncodable"
    assert "traceback" in save and "traceback" not in stop
    assert "direct cause" in save["traceback"]  # the codec's own error, chained
    assert sum("Traceback" in line for line in out.getvalue().splitlines()) == 1


async def test_text_mode_writes_one_key_value_line_per_event() -> None:
    """Text mode writes one key=value line per event, a traceback escaped onto its line."""
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)
    recorder = Recorder()
    node = make_node(MultiStats(LoggingStats(), recorder))
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "incr")
        with pytest.raises(ValueError):
            await node.command(SESSION, "fail")
    lines = out.getvalue().splitlines()
    assert len(lines) == len(recorder.events)
    assert all(line.startswith("ts=") and " level=" in line for line in lines)
    [incr] = [line for line in lines if "kind=command name=incr" in line]
    assert "logger=wes.stats" in incr and "ident=session/s1" in incr
    [stop] = [line for line in lines if "kind=stop" in line]
    assert "level=ERROR" in stop and "name=ValueError" in stop and "error=ValueError" in stop
    assert 'traceback="Traceback (most recent call last):\\n' in stop
    assert 'error_message="boom in a handler"' in stop


def test_configuring_again_replaces_the_handler() -> None:
    """A second configure_logging replaces the first handler: each record is written once."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", json=True, stream=first)
    configure_logging("INFO", json=True, stream=second)
    logging.getLogger("wes.node").warning("lease renewal failed: %r", OSError("down"))
    assert first.getvalue() == ""
    [record] = json_lines(second)
    assert record["msg"] == "lease renewal failed: OSError('down')"
    assert record["level"] == "WARNING" and record["logger"] == "wes.node"


def test_extra_fields_and_exceptions_of_plain_records() -> None:
    """Any `extra=` field of a plain log call becomes a field; `log.exception` a traceback."""
    out = io.StringIO()
    configure_logging(logging.INFO, json=True, stream=out)
    log = logging.getLogger("wes")
    log.debug("not at INFO")
    empty: dict[str, int] = {}
    try:
        empty["missing"]
    except KeyError:
        log.exception("channel could not save", extra={"ident": SESSION, "error": "KeyError"})
    [record] = json_lines(out)
    assert record["ident"] == list(SESSION) and record["error"] == "KeyError"
    assert record["traceback"].endswith("KeyError: 'missing'")


def test_other_loggers_can_share_the_format() -> None:
    """`loggers=` formats other libraries' loggers (such as uvicorn's) the same way."""
    out = io.StringIO()
    other = logging.getLogger("wes_test_other")
    try:
        configure_logging("INFO", json=True, stream=out, loggers=("wes", "wes_test_other"))
        other.info("listening on %s", "127.0.0.1:8080", extra={"color_message": "\x1b[1m"})
        [record] = json_lines(out)
        assert record["logger"] == "wes_test_other" and record["msg"].endswith("8080")
        assert "color_message" not in record  # uvicorn's coloured copy of the message
    finally:
        other.handlers.clear()
        other.propagate = True
        other.setLevel(logging.NOTSET)


async def test_failed_save_at_node_exit_logs_its_traceback_once() -> None:
    """A channel whose final save fails when the node stops logs the failed save with its
    traceback, the node's error, and the stop, with one traceback among them."""
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    node = make_node(LoggingStats())
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "unencodable")
    lines = json_lines(out)
    assert [(r["logger"], r.get("kind"), r.get("name")) for r in lines] == [
        ("wes.stats", "save", "error"),
        ("wes", None, None),
        ("wes.stats", "stop", "StateNotEncodable"),
    ]
    assert [("traceback" in r) for r in lines] == [True, False, False]


# -- failing periodic saves on the `wes` logger ---------------------------------------------


class Healing(Counter):
    @wes.command
    def heal(self) -> None:
        self.value = 0


def failing_node(stats: Stats, **kw: Any) -> wes.Node:
    return node_of({"counter": Healing}, stats=stats, **{"save_interval": 0.01, **kw})


def save_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of the `wes` logger itself about saves."""
    return [r for r in caplog.records if r.name == "wes" and "saves of channel" in r.msg]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed saves retried every 10-20 ms, so a streak has many failures within a second."""
    monkeypatch.setattr(_saving, "RETRY_BACKOFF", (0.01, 0.02))


async def test_failing_periodic_saves_warn_once_naming_actor_and_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first failure of a periodic save is logged at WARNING on `wes`, naming the channel,
    the actor whose state cannot be encoded and the cause; the retries that follow within the
    log interval are not."""
    caplog.set_level(logging.DEBUG, logger="wes")
    stats = wes.MemoryStats()
    async with failing_node(stats) as node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "unencodable")
        await wait_until(lambda: stats.counts().get(("save", "error"), 0) >= 3)
        assert node.live_channels == 1
    [line] = save_lines(caplog)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert "('session', 's1')" in message and "('counter', 'a')" in message
    assert "StateNotEncodable" in message and "set is not JSON serializable" in message
    fields = line.wes  # type: ignore[attr-defined]
    assert (fields["channel"], fields["actor"], fields["error"]) == (
        SESSION,
        A,
        "StateNotEncodable",
    )
    assert fields["failures"] == 1


async def test_failing_saves_are_logged_again_at_most_every_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, fast_retries: None
) -> None:
    """While saves keep failing, a line comes at most every `FAILING_LOG_INTERVAL` seconds,
    saying how many failures there were since the line before."""
    monkeypatch.setattr(_sweep, "FAILING_LOG_INTERVAL", 0.2)
    caplog.set_level(logging.WARNING, logger="wes")
    stats = wes.MemoryStats()
    async with failing_node(stats) as node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "unencodable")
        await wait_until(lambda: len(save_lines(caplog)) >= 4)
        errors = stats.counts()[("save", "error")]
    lines = save_lines(caplog)
    first, *repeats = lines
    assert "are failing" in first.getMessage()
    assert all("still failing" in r.getMessage() for r in repeats)
    gaps = [b.created - a.created for a, b in itertools.pairwise(lines)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    counts = [r.wes["failures"] for r in repeats]  # type: ignore[attr-defined]
    assert all(n > 1 for n in counts)  # each line stands for several failures
    assert f"{counts[0]} failures in the last" in repeats[0].getMessage()
    assert 1 + sum(counts) == repeats[-1].wes["failures_total"] <= errors  # type: ignore[attr-defined]
    assert len(lines) < errors / 2


@pytest.mark.parametrize("counted", [True, False], ids=["stats", "no-stats"])
async def test_saves_that_work_again_are_logged_once(
    caplog: pytest.LogCaptureFixture, fast_retries: None, counted: bool
) -> None:
    """When a save works again after failures, one WARNING says so, with the number of failures
    and how long they lasted, also on the sweep's fast path without stats; saves after it log
    nothing."""
    caplog.set_level(logging.WARNING, logger="wes")
    recorder = Recorder()
    store = wes.MemoryStore()
    node = wes.Node(store=store, stats=recorder if counted else None)
    node.actor_type("counter", Healing)
    node.channel_type("session", idle_timeout=None, save_interval=0.01)
    async with node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "unencodable")
        await wait_until(lambda: len(save_lines(caplog)) == 1)
        await asyncio.sleep(0.05)  # a few more failures
        await node.command(SESSION, "heal")
        await wait_until(lambda: len(save_lines(caplog)) == 2)
        await node.command(SESSION, "incr")
        await wait_until(lambda: b'"value":1' in store._records["counter/a"].data)
        assert not node._rt.sweep.failing
    began, recovered = save_lines(caplog)
    assert "are failing" in began.getMessage()
    assert recovered.levelno == logging.WARNING
    failures = recovered.wes["failures_total"]  # type: ignore[attr-defined]
    assert failures >= 2
    if counted:
        assert failures == recorder.count("save", "error")
    assert recovered.getMessage().startswith(
        f"saves of channel ('session', 's1') work again after {failures} failures over "
    )
    assert recovered.wes["failing_seconds"] >= 0.05  # type: ignore[attr-defined]


async def test_a_healthy_channel_logs_nothing_beside_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the channel whose saves fail is logged; a channel beside it whose periodic saves
    work logs nothing and has no streak entry."""
    caplog.set_level(logging.DEBUG, logger="wes")
    stats = wes.MemoryStats()
    async with failing_node(stats) as node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.create_channel(EMPTY, [wes.create(B)])
        await node.command(SESSION, "unencodable")
        for _ in range(3):
            saved = stats.counts().get(("save", "ok"), 0)
            await node.command(EMPTY, "incr")

            def saved_again(n: int = saved) -> bool:
                return stats.counts().get(("save", "ok"), 0) > n

            await wait_until(saved_again)
        await wait_until(lambda: stats.counts().get(("save", "error"), 0) >= 2)
        assert [ch.id for ch in node._rt.sweep.failing] == [SESSION]
    assert [r.wes["channel"] for r in save_lines(caplog)] == [SESSION]  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.name == "wes" and "empty" in r.getMessage()] == []


async def test_a_failing_save_at_idle_stop_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A channel without periodic saves whose final save at an idle stop fails logs a WARNING
    naming the actor, runs on, and logs the recovery when a later idle stop saves."""
    caplog.set_level(logging.WARNING, logger="wes")
    stats = wes.MemoryStats()
    async with failing_node(stats, save_interval=None, idle_timeout=0.05) as node:
        await node.create_channel(SESSION, [wes.create(A)])
        await node.command(SESSION, "unencodable")
        await wait_until(lambda: stats.counts().get(("save", "error"), 0) >= 1)
        [line] = save_lines(caplog)
        assert line.wes["actor"] == A  # type: ignore[attr-defined]
        assert node.live_channels == 1
        await node.command(SESSION, "heal")
        await wait_until(lambda: stats.counts().get(("stop", "idle"), 0) == 1)
        assert not node._rt.sweep.failing
    assert "work again" in save_lines(caplog)[-1].getMessage()
