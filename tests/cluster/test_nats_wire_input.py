"""Bad input from the wire, against a real node over a real NATS server: raw requests
published with nats-py to the node's subject (`<cluster>.node.<address token>`), bypassing
every check a wes caller makes. Each gets a clear error answer, nothing executes, and the
node serves the next good request as if nothing happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from nats.aio.client import Client

import wes
from tests.cluster.node_worker import actor, channel, configure
from wes._backends.nats import subject_token
from wes._wire import Answer, decode_answer

ADDRESS = "node a.1"  # a space and a dot: the subject token is escaped


@dataclass
class Served:
    """A node serving over NATS, the channel `f` running on it, and a raw NATS client."""

    node: wes.Node
    client: Client
    subject: str

    async def ask(self, data: bytes) -> Answer:
        msg = await self.client.request(self.subject, data, timeout=5)
        return decode_answer(msg.data)


@contextlib.asynccontextmanager
async def served(nats_url: str) -> AsyncIterator[Served]:
    cluster = f"w{uuid.uuid4().hex[:10]}"
    node = wes.Node(
        store=wes.MemoryStore(),
        address=ADDRESS,
        transport=wes.NatsTransport(nats_url, cluster=cluster),
    )
    configure(node, 10.0, "local")
    async with node:
        await node.ensure_channel(channel("f"), wes.create(actor("f")))
        client = await nats.connect(nats_url)
        try:
            yield Served(node, client, f"{cluster}.node.{subject_token(ADDRESS)}")
        finally:
            await client.close()


def body(**fields: Any) -> dict[str, Any]:
    """A good command `add("x")` to `f`'s channel, with `fields` replaced (None drops one)."""
    good: dict[str, Any] = {
        "wes": 1,
        "op": "command",
        "to": ["log", "f"],
        "name": "add",
        "args": ["x"],
        "kwargs": {},
        "specs": [],
        "rid": "raw-1",
        # Far off: the cases are built when the module is collected, maybe minutes before
        # they are sent.
        "deadline": time.time() + 24 * 3600,
        "chain": [],
    }
    good.update(fields)
    return {k: v for k, v in good.items() if v is not None}


def raw(**fields: Any) -> bytes:
    return json.dumps(body(**fields)).encode()


SPEC = {"actor": ["entries", "g"], "mode": "load_or_create", "args": []}

# case -> (the request's bytes, or how to make them from the server's limit; the error's
# type; words its message must hold)
CASES: dict[str, tuple[Any, str, str]] = {
    "not JSON": (b"{not json", "UsageError", "must be JSON"),
    "not UTF-8": (b'\xff\xfe{"wes": 1}', "UsageError", "must be JSON"),
    "a NaN": (raw().replace(b'"chain"', b'"x": NaN, "chain"'), "UsageError", "NaN is not JSON"),
    "empty": (b"", "UsageError", "must be JSON"),
    "not an object": (b'[1, "command"]', "UsageError", "must be a JSON object"),
    "no version": (raw(wes=None), "UsageError", "wire version None"),
    "a later version": (raw(wes=2), "UsageError", "wire version 2"),
    "a version as a string": (raw(wes="1"), "UsageError", "wire version '1'"),
    "an unknown op": (raw(op="exec"), "UsageError", "unknown operation 'exec'"),
    "an op a list": (raw(op=["command"]), "UsageError", "unknown operation ['command']"),
    "an op an object": (raw(op={"command": 1}), "UsageError", "unknown operation"),
    "an id as a string": (raw(to="log/f"), "InvalidId", "log/f"),
    "an id of one part": (raw(to=["log"]), "InvalidId", "('log',)"),
    "an id of three parts": (raw(to=["log", "f", "g"]), "InvalidId", "'g'"),
    "an id with a float": (raw(to=["log", 5.5]), "InvalidId", "5.5"),
    "an id nested": (raw(to=[["log"], "f"]), "InvalidId", "['log']"),
    "an id missing": (raw(to=None), "InvalidId", "None"),
    "a name not a string": (raw(name=5), "InvalidName", "command name must be a str, not 5"),
    "a name missing": (raw(name=None), "InvalidName", "not None"),
    "args not a list": (raw(args={"id": "y"}), "InvalidArguments", "args must be a list"),
    "kwargs not an object": (raw(kwargs=["y"]), "InvalidArguments", "kwargs must be an object"),
    "a rid not a string": (raw(rid=7), "UsageError", "rid must be a str"),
    "a deadline not a number": (raw(deadline="soon"), "UsageError", "deadline must be a number"),
    "a deadline true": (raw(deadline=True), "UsageError", "deadline must be a number"),
    "a chain not a list": (raw(chain="log/f"), "UsageError", "chain must be a list"),
    "a chain of bad ids": (raw(chain=[5]), "InvalidId", "5"),
    "specs not a list": (raw(op="ensure_actor", specs=SPEC), "InvalidSpec", "specs must be"),
    "a spec of an unknown mode": (
        raw(op="ensure_actor", specs=[{**SPEC, "mode": "eval"}]),
        "InvalidSpec",
        "not a spec",
    ),
    "a spec of a mode not a string": (
        raw(op="ensure_actor", specs=[{**SPEC, "mode": ["load"]}]),
        "InvalidSpec",
        "not a spec",
    ),
    "a spec with bad args": (
        raw(op="ensure_actor", specs=[{**SPEC, "args": "x"}]),
        "InvalidSpec",
        "spec args must be a list",
    ),
    "a spec of a bad actor id": (
        raw(op="ensure_actor", specs=[{**SPEC, "actor": "entries/g"}]),
        "InvalidId",
        "entries/g",
    ),
    "an unknown channel type": (raw(to=["vault", "f"]), "UnknownChannelType", "vault"),
    "a command of the wrong arity": (raw(args=["x", "y"]), "InvalidArguments", "add"),
    "an unknown command": (raw(name="drop"), "UnknownCommand", "drop"),
    "huge, not JSON": (lambda limit: b"{" + b"x" * (limit - 200), "UsageError", "must be JSON"),
    "huge, nested deep": (lambda limit: b"[" * (limit - 200), "UsageError", "must be JSON"),
    "huge args not a list": (
        lambda limit: raw(args={"id": "y" * (limit - 500)}),
        "InvalidArguments",
        "args must be a list",
    ),
    "huge args whose error doubles in size": (  # each backslash is escaped twice over
        lambda limit: raw(args={"id": "\\" * (limit // 2 - 500)}),
        "InvalidArguments",
        "args must be a list",
    ),
    "huge kwargs not an object": (
        lambda limit: raw(kwargs=["y" * (limit - 500)]),
        "InvalidArguments",
        "kwargs must be an object",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_request_gets_a_clear_error_and_nothing_runs(nats_url: str, case: str) -> None:
    """A malformed or wrong request sent raw to a node over NATS gets an error answer of
    the right wes type, naming what is wrong; nothing executes; the next good request
    works."""
    data, expected_type, words = CASES[case]
    async with served(nats_url) as s:
        if callable(data):
            data = data(s.client.max_payload)
            assert len(data) > s.client.max_payload * 0.99
        answer = await s.ask(data)
        assert not answer.ok and answer.error is not None, answer
        assert (answer.error["kind"], answer.error["type"]) == ("wes", expected_type), answer
        assert words in answer.error["message"], answer.error["message"]
        assert await s.node.read(actor("f"), "ids") == []
        assert await s.node.status(channel("g")) is None
        assert (await s.ask(raw(args=["good"]))).ok
        assert await s.node.read(actor("f"), "ids") == ["good"]


async def test_a_publish_without_a_reply_subject_runs_nothing(nats_url: str) -> None:
    """A good request published without a reply subject (nobody could hear the answer) is
    dropped unexecuted, and the node serves on."""
    async with served(nats_url) as s:
        await s.client.publish(s.subject, raw(args=["unasked"]))
        await s.client.flush()
        assert (await s.ask(raw(args=["good"]))).ok  # served after the publish, in order
        assert await s.node.read(actor("f"), "ids") == ["good"]


async def test_a_request_past_its_deadline_is_refused_unexecuted(nats_url: str) -> None:
    """A request whose deadline passed (a late delivery) is refused as expired, unexecuted."""
    async with served(nats_url) as s:
        answer = await s.ask(raw(deadline=time.time() - 1))
        assert (answer.ok, answer.refused) == (False, "expired"), answer
        assert await s.node.read(actor("f"), "ids") == []


async def test_a_request_for_a_channel_elsewhere_is_refused_not_forwarded(nats_url: str) -> None:
    """A request for a channel that does not run on the node is refused as not here (the
    caller looks the owner up again); the node neither starts it nor forwards it."""
    async with served(nats_url) as s:
        answer = await s.ask(raw(to=["log", "g"]))
        assert (answer.ok, answer.refused) == (False, "not_here"), answer
        assert await s.node.status(channel("g")) is None


async def test_many_bad_requests_at_once_leave_the_node_serving(nats_url: str) -> None:
    """Hundreds of bad requests at once are each answered with an error, and the node runs
    nothing and serves a good request afterwards."""
    async with served(nats_url) as s:
        small = [v[0] for v in CASES.values() if isinstance(v[0], bytes)]
        answers = await asyncio.gather(*(s.ask(data) for data in small * 10))
        assert all(a.error is not None for a in answers)
        assert (await s.ask(raw(args=["good"]))).ok
        assert await s.node.read(actor("f"), "ids") == ["good"]
