"""Serving remote calls: what a node executes, what it refuses unexecuted, and that bad
input from the wire gets a clear error answer while the node keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial
from typing import Any

import pytest

import wes
from tests.support.cluster import cluster_of, nodes_of
from tests.support.counters import Counter
from tests.support.nodes import SESSION, A
from tests.support.waiting import wait_until
from wes._wire import Answer, decode_answer

cluster = partial(cluster_of, {"counter": Counter})


class Slow(Counter):
    @wes.command
    async def nap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def request(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "wes": 1,
        "op": "command",
        "to": list(SESSION),
        "name": "incr",
        "args": [1],
        "kwargs": {},
        "specs": [],
        "rid": "test#0",
        "deadline": time.time() + 10,
        "chain": [],
    }
    body.update(fields)
    return json.dumps(body).encode()


async def ask(node: wes.Node, data: bytes) -> Answer:
    """`data` sent to `node` as another node would, over its transport."""
    assert node._cluster is not None
    raw = await node._cluster.transport.request(node.address, data, 5.0)
    return decode_answer(raw)


async def test_a_good_request_is_executed_and_answered() -> None:
    async with cluster() as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        answer = await ask(a, request())
        assert answer.ok and answer.value is None
        assert a._actors[A].value == 1  # type: ignore[attr-defined]


class Answers:
    """A transport's `Reply` that keeps what it was given."""

    def __init__(self) -> None:
        self.got: list[Answer] = []

    async def __call__(self, data: bytes) -> None:
        self.got.append(decode_answer(data))


def serve(node: wes.Node, data: bytes) -> Answers:
    """`data` handed to `node`'s server as its transport would; the answers it sends."""
    assert node._server is not None
    answers = Answers()
    node._server.on_request(data, answers)
    return answers


async def test_a_command_on_a_free_channel_of_synchronous_handlers_is_served_at_once() -> None:
    async with cluster() as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        tasks = set(a._rt.tasks)
        answers = serve(a, request())
        # Executed and answered before the call returned, by no task of its own.
        assert [x.ok for x in answers.got] == [True] and a._rt.tasks == tasks
        assert a._actors[A].value == 1  # type: ignore[attr-defined]


async def test_a_read_on_a_free_channel_is_served_at_once() -> None:
    async with cluster() as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        answers = serve(a, request(op="read", to=list(A), name="value", args=[]))
        assert [(x.ok, x.value) for x in answers.got] == [(True, 0)]


async def test_a_command_on_a_channel_with_async_handlers_is_served_by_a_task() -> None:
    async with cluster_of({"counter": Slow}) as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        answers = serve(a, request(name="nap", args=[0.01]))
        assert answers.got == []  # not yet: it runs as a task
        await wait_until(lambda: bool(answers.got))
        assert answers.got[0].ok


async def test_a_durable_command_served_at_once_answers_once_its_state_is_written() -> None:
    async with cluster(durability="command") as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        answers = serve(a, request(args=[5]))
        assert a._actors[A].value == 5  # type: ignore[attr-defined]
        assert answers.got == []  # it waits for the write, as a task
        await wait_until(lambda: bool(answers.got))
        assert answers.got[0].ok
        stored = await a.stored(A)
        assert stored is not None and stored.value == 5  # type: ignore[attr-defined]


class Raising(Counter):
    @wes.command
    def fail(self) -> None:
        raise ValueError("no")


async def test_a_command_served_at_once_that_raises_stops_the_channel_and_answers_the_error() -> (
    None
):
    async with cluster_of({"counter": Raising}) as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        answers = serve(a, request(name="fail", args=[]))
        await wait_until(lambda: bool(answers.got))
        error = answers.got[0].error
        assert error is not None and "ValueError" in error["type"], error
        assert await a.status(SESSION) is None


async def test_a_request_past_its_deadline_is_refused_unexecuted() -> None:
    async with cluster() as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        answer = await ask(a, request(deadline=time.time() - 1))
        assert answer.refused == "expired"
        assert a._actors[A].value == 0  # type: ignore[attr-defined]


async def test_a_request_for_a_channel_not_here_is_refused_unexecuted() -> None:
    async with cluster() as (a, _):
        answer = await ask(a, request())
        assert answer.refused == "not_here"
        assert a.live_channels == 0


async def test_a_request_whose_chain_holds_its_channel_is_a_reentrant_call() -> None:
    async with cluster() as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        answer = await ask(a, request(chain=[list(SESSION)]))
        assert answer.error is not None and answer.error["type"] == "ReentrantCall"
        assert a._actors[A].value == 0  # type: ignore[attr-defined]


async def test_a_request_beyond_the_calls_in_flight_is_refused_as_overloaded_at_once() -> None:
    async with cluster_of({"counter": Slow}) as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        assert a._server is not None
        a._server.max_in_flight = 1
        first = asyncio.ensure_future(ask(a, request(name="nap", args=[0.3])))
        await wait_until(lambda: a._server is not None and a._server.in_flight == 1)
        answer = await ask(a, request())
        assert answer.refused == "overloaded"
        assert (await first).ok
        assert a._actors[A].value == 0  # type: ignore[attr-defined]


async def test_a_caller_retries_an_overloaded_node_until_it_has_room() -> None:
    async with cluster_of({"counter": Slow}) as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        assert a._server is not None
        a._server.max_in_flight = 1
        first = asyncio.ensure_future(b.command(SESSION, "nap", 0.2))
        await wait_until(lambda: a._server is not None and a._server.in_flight == 1)
        await b.command(SESSION, "incr")  # refused at first, then taken
        await first
        assert a._actors[A].value == 1  # type: ignore[attr-defined]


async def test_a_stopping_node_refuses_new_calls() -> None:
    async with cluster() as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        assert a._server is not None
        a._server.accepting = False
        answer = await ask(a, request())
        assert answer.refused == "stopping"
        a._server.accepting = True


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01",
        b"{}",
        b'{"wes": 99, "op": "command"}',
        request(op="shutdown"),
        request(to=["session"]),
        request(name=None),
        request(args="1"),
        request(kwargs=[]),
        request(specs=[{"mode": "create"}], op="create_actor"),
    ],
)
async def test_bad_input_gets_an_error_answer_and_the_node_keeps_serving(data: bytes) -> None:
    async with cluster() as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        answer = await ask(a, data)
        assert answer.error is not None and answer.error["kind"] == "wes"
        assert a._actors[A].value == 0  # type: ignore[attr-defined]
        await b.command(SESSION, "incr")
        assert a._actors[A].value == 1  # type: ignore[attr-defined]


async def test_an_answer_over_the_payload_limit_is_an_error_not_a_timeout() -> None:
    class Big(Counter):
        @wes.read
        def blob(self) -> str:
            return "x" * 5000

    async with cluster_of({"counter": Big}, transport=wes.MemoryTransport(max_payload=2000)) as (
        a,
        b,
    ):
        await a.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.UsageError, match="over the transport's limit of 2000"):
            await b.read(A, "blob")


async def test_a_request_over_the_payload_limit_is_refused_unsent_by_the_memory_transport() -> None:
    """As NatsTransport does: `InvalidArguments` at once, never a retried `NodeUnreachable`."""
    async with cluster(transport=wes.MemoryTransport(max_payload=100)) as (a, _):
        with pytest.raises(wes.InvalidArguments, match="over the limit of 100"):
            await ask(a, b"x" * 101)


async def test_keyword_arguments_travel_by_name() -> None:
    async with cluster() as (a, b):
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr", n=4)
        assert await b.read(A, "value") == 4
        with pytest.raises(wes.InvalidArguments):
            await b.command(SESSION, "incr", m=4)


async def test_a_node_closing_under_a_call_longer_than_call_timeout_says_so_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing waits for the calls in flight at most `call_timeout`, then logs how many still
    run, and stops its channels normally (the running command finishes first)."""
    a, b = nodes_of({"counter": Slow}, 2, call_timeout=0.2)
    async with b:
        async with a:
            await a.create_channel(SESSION, [wes.create(A)])
            call = asyncio.ensure_future(b.command(SESSION, "nap", 0.5))
            await wait_until(lambda: a._server is not None and a._server.in_flight == 1)
        assert "1 remote calls still running as the node stops" in caplog.text
        assert a.live_channels == 0
        with pytest.raises(wes.OutcomeUnknown):
            await call


class Failing(wes.MemoryTransport):
    """A hub whose unlisten and leave fail, as a broken connection's would."""

    async def unlisten(self, address: str) -> None:
        raise ConnectionError("gone")

    async def leave(self, address: str) -> None:
        raise ConnectionError("gone")


async def test_a_transport_failing_as_the_node_closes_is_logged_and_the_node_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = wes.MemoryStore()
    async with cluster(transport=Failing(), store=store) as (a, _):
        await a.create_channel(SESSION, [wes.create(A)])
        await a.command(SESSION, "incr")
    assert "could not stop taking remote calls" in caplog.text
    assert "could not leave the cluster's transport" in caplog.text
    assert a.live_channels == 0
    assert (await store.read(["counter/a"]))["counter/a"]  # saved on the way out
