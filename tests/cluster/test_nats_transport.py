"""`NatsTransport` against a real nats-server: request-reply between nodes, and each way it
fails told apart (certainly not delivered, or outcome unknown)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import partial

import pytest

import wes
from tests.support.counters import Counter
from tests.support.nodes import SESSION, A, node_of
from tests.support.servers import NatsServer, free_port, nats_server
from wes._backends.nats import subject_token

make_node = partial(node_of, {"counter": Counter})


class Slow(Counter):
    @wes.command
    async def nap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
def own_nats() -> Iterator[NatsServer]:
    """A server of the test's own, which it may stop and start."""
    with nats_server() as server:
        yield server


def pair(
    url: str, cluster: str = "t", actor: type[wes.Actor] = Counter, **settings: object
) -> list[wes.Node]:
    """Nodes `n0` and `n1`, each with a NatsTransport of its own, sharing memory backends."""
    store, registry = wes.MemoryStore(), wes.MemoryRegistry()
    return [
        node_of(
            {"counter": actor},
            store,
            registry,
            transport=wes.NatsTransport(url, cluster=cluster),
            address=f"n{i}",
            **settings,  # type: ignore[arg-type]
        )
        for i in range(2)
    ]


async def test_a_command_and_a_read_cross_nats_to_the_owner(nats_url: str) -> None:
    a, b = pair(nats_url)
    async with a, b:
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr", 2)
        assert await b.read(A, "value") == 2
        assert await b.status(SESSION) == wes.ChannelRef(SESSION, "n0", (A,))


async def test_an_actors_exception_crosses_nats_as_itself(nats_url: str) -> None:
    a, b = pair(nats_url, cluster="errors")
    async with a, b:
        await a.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.InvalidArguments):
            await b.command(SESSION, "incr", 1, 2, 3)


async def test_nodes_of_different_clusters_on_one_server_never_meet(nats_url: str) -> None:
    transport = wes.NatsTransport(nats_url, cluster="one")
    other = wes.NatsTransport(nats_url, cluster="two")
    try:
        await transport.listen("n0", lambda data, reply: None, lambda data: None)
        with pytest.raises(wes.NodeUnreachable, match="no node listens"):
            await other.request("n0", b"{}", 1.0)
    finally:
        await transport.aclose()
        await other.aclose()


async def test_no_responders_is_node_unreachable_at_once(nats_url: str) -> None:
    transport = wes.NatsTransport(nats_url)
    try:
        started = time.monotonic()
        with pytest.raises(wes.NodeUnreachable, match="no node listens at 'ghost'"):
            await transport.request("ghost", b"{}", 5.0)
        assert time.monotonic() - started < 2.0
    finally:
        await transport.aclose()


async def test_a_request_sent_and_unanswered_is_outcome_unknown(nats_url: str) -> None:
    transport = wes.NatsTransport(nats_url)
    try:
        await transport.listen("mute", lambda data, reply: None, lambda data: None)
        with pytest.raises(wes.OutcomeUnknown, match="may have run"):
            await transport.request("mute", b"{}", 0.2)
    finally:
        await transport.aclose()


async def test_concurrent_requests_each_get_their_own_answer(nats_url: str) -> None:
    transport = wes.NatsTransport(nats_url)
    replies: list[asyncio.Future[None]] = []

    def echo(data: bytes, reply: wes.abc.Reply) -> None:
        replies.append(asyncio.ensure_future(reply(b"re:" + data)))

    try:
        await transport.listen("echo", echo, lambda data: None)
        sent = [str(i).encode() for i in range(300)]
        got = await asyncio.gather(*(transport.request("echo", d, 5.0) for d in sent))
        assert got == [b"re:" + d for d in sent]
    finally:
        await transport.aclose()


async def test_a_request_awaiting_its_answer_as_the_transport_closes_is_outcome_unknown(
    nats_url: str,
) -> None:
    transport = wes.NatsTransport(nats_url)
    await transport.listen("mute", lambda data, reply: None, lambda data: None)
    call = asyncio.ensure_future(transport.request("mute", b"{}", 30.0))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await transport.aclose()
    with pytest.raises(wes.OutcomeUnknown, match="closed before the answer came"):
        await call
    assert time.monotonic() - started < 2.0


@pytest.mark.nats  # a server of its own
async def test_a_request_awaiting_its_answer_when_the_server_goes_is_outcome_unknown_at_once(
    own_nats: NatsServer,
) -> None:
    transport = wes.NatsTransport(own_nats.url)
    try:
        await transport.listen("mute", lambda data, reply: None, lambda data: None)
        call = asyncio.ensure_future(transport.request("mute", b"{}", 30.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        own_nats.stop()
        with pytest.raises(wes.OutcomeUnknown, match="broke before the answer came"):
            await call
        assert time.monotonic() - started < 5.0  # not the 30 s it was given
    finally:
        await transport.aclose()


@pytest.mark.nats  # a server of its own
async def test_a_request_over_the_servers_limit_is_invalid_arguments() -> None:
    with nats_server(max_payload=4096) as server:
        a, b = pair(server.url)
        async with a, b:
            await a.create_channel(SESSION, [wes.create(A)])
            assert b._cluster is not None and b._cluster.transport.max_payload == 4096
            with pytest.raises(wes.InvalidArguments, match="over the transport's limit of 4096"):
                await b.command(SESSION, "incr", "x" * 5000)


@pytest.mark.nats  # a server of its own
async def test_an_answer_over_the_servers_limit_is_an_error_answer() -> None:
    class Big(Counter):
        @wes.read
        def blob(self) -> str:
            return "x" * 5000

    with nats_server(max_payload=4096) as server:
        a, b = pair(server.url, actor=Big)
        async with a, b:
            await a.create_channel(SESSION, [wes.create(A)])
            with pytest.raises(wes.UsageError, match="over the transport's limit of 4096"):
                await b.read(A, "blob")


@pytest.mark.nats  # a server of its own
async def test_a_server_that_is_down_is_node_unreachable_and_calls_recover(
    own_nats: NatsServer,
) -> None:
    a, b = pair(own_nats.url, call_timeout=1.0)
    async with a, b:
        await a.create_channel(SESSION, [wes.create(A)])
        await b.command(SESSION, "incr")
        own_nats.stop()
        started = time.monotonic()
        with pytest.raises((wes.NodeUnreachable, wes.OutcomeUnknown)):
            await b.command(SESSION, "incr")
        assert time.monotonic() - started < 1.0 + 0.5  # never a hang past call_timeout
        own_nats.start()
        deadline = time.monotonic() + 10
        while True:  # both nodes reconnect by themselves
            try:
                await b.command(SESSION, "incr")
                break
            except (wes.NodeUnreachable, wes.OutcomeUnknown):
                assert time.monotonic() < deadline, "calls did not recover"
                await asyncio.sleep(0.1)
        assert await b.read(A, "value") >= 2


async def test_a_node_that_cannot_reach_nats_does_not_start() -> None:
    node = make_node(transport=wes.NatsTransport(f"nats://127.0.0.1:{free_port()}"))
    with pytest.raises(wes.NodeUnreachable, match="cannot reach NATS"):
        await node.start()
    with pytest.raises(wes.NodeNotRunning):
        await node.command(SESSION, "incr")


async def test_a_slow_command_over_nats_is_outcome_unknown_after_call_timeout(
    nats_url: str,
) -> None:
    a, b = pair(nats_url, "slow", Slow, call_timeout=0.3)
    async with a, b:
        await a.create_channel(SESSION, [wes.create(A)])
        with pytest.raises(wes.OutcomeUnknown):
            await b.command(SESSION, "nap", 1.0)


@pytest.mark.parametrize("cluster", ["", "a.b", "a b", "a*", ">", 7])
def test_a_cluster_name_must_be_one_subject_token(cluster: object) -> None:
    with pytest.raises(wes.InvalidConfig, match="cluster must be"):
        wes.NatsTransport("nats://127.0.0.1:4222", cluster=cluster)  # type: ignore[arg-type]


@pytest.mark.parametrize("address", ["host.example.com:12:ab", "a b", "x*>y", "ünï", "a%2E"])
def test_an_address_becomes_one_subject_token_and_distinct_addresses_stay_distinct(
    address: str,
) -> None:
    token = subject_token(address)
    assert all((c.isalnum() and c.isascii()) or c in "_:-%" for c in token)
    assert subject_token(address + "x") != token
    assert subject_token("a.b") != subject_token("a_b")
