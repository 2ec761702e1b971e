"""What the remote path may do differently, by DESIGN.md: a remote call carries its
arguments and its answer as JSON, so tuples arrive as lists and dict keys as strings; what
JSON cannot carry fails clearly (at the caller for arguments, as an error answer for views);
and an answer over the transport's payload limit is an error answer, never a timeout.

Each test issues its operations from `n1` to a channel running on `n0`, and looks at what
the owner's actor received through the owner itself (a local read, no JSON in between).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import wes
from tests.support import counters
from tests.support.cluster import Sides, sides_of
from tests.support.nodes import SESSION, A, B

LIMIT = 4096  # the payload limit of the tests that need one


class Box(counters.Counter):
    """Keeps what it was last given, as given, and views it or what JSON cannot carry."""

    def __init__(self, start: int = 0, content: Any = None) -> None:
        super().__init__(start)
        self.content = content

    @wes.command
    def put(self, content: Any = None, **named: Any) -> None:
        self.content = named or content

    @wes.read("content")
    def view(self) -> Any:
        return self.content

    @wes.read("with")
    def view_with(self, extra: Any) -> Any:
        return [self.content, extra]

    @wes.read("unfit")
    def unfit(self, kind: str) -> Any:
        return {"set": {1, 2}, "bytes": b"ab", "object": object(), "nan": math.nan}[kind]

    @wes.read("blob")
    def blob(self, size: int) -> str:
        return "x" * size

    @wes.command
    def boom(self, size: int) -> None:
        raise ValueError("y" * size)


def remote(**settings: Any) -> Any:
    return sides_of("remote", {"counter": Box}, **settings)


async def started(s: Sides) -> None:
    await s.owner.create_channel(SESSION, [wes.create(A)])


def received(s: Sides, actor: Any = A) -> Any:
    """What the owner's actor holds, as Python objects, without JSON in between."""
    box = s.owner._actors[actor]
    assert isinstance(box, Box)
    return box.content


# --- what arrives ------------------------------------------------------------------------


async def test_tuples_arrive_as_lists() -> None:
    """A tuple argument, nested or not, reaches the owner's handler as a list."""
    async with remote() as s:
        await started(s)
        await s.caller.command(SESSION, "put", (1, (2, 3), [4, (5,)]))
        assert received(s) == [1, [2, 3], [4, [5]]]
        assert type(received(s)) is list and type(received(s)[1]) is list


async def test_dict_keys_arrive_as_strings() -> None:
    """A dict argument's int keys reach the owner's handler as strings, values intact."""
    async with remote() as s:
        await started(s)
        await s.caller.command(SESSION, "put", {1: "a", "2": {3: True}})
        assert received(s) == {"1": "a", "2": {"3": True}}


async def test_keyword_arguments_arrive_by_name_as_json() -> None:
    """Keyword arguments reach the handler by name, their values as JSON made them."""
    async with remote() as s:
        await started(s)
        await s.caller.command(SESSION, "put", pair=(1, 2), table={7: None})
        assert received(s) == {"pair": [1, 2], "table": {"7": None}}


async def test_spec_arguments_arrive_as_json() -> None:
    """A spec's `create` arguments sent to the owner build the actor from their JSON form."""
    async with remote() as s:
        await started(s)
        await s.caller.create_actor(SESSION, wes.create(B, 5, (1, {2: 3})))
        assert received(s, B) == [1, {"2": 3}]
        assert await s.caller.read(B, "value") == 5


async def test_views_arrive_as_json() -> None:
    """A read's view holding tuples and int keys reaches a remote caller as lists and string
    keys, where the owner itself sees the objects unchanged."""
    async with remote() as s:
        await started(s)
        await s.owner.command(SESSION, "put", (1, {2: (3, 4)}))
        assert await s.owner.read(A, "content") == (1, {2: (3, 4)})
        assert await s.caller.read(A, "content") == [1, {"2": [3, 4]}]
        assert await s.caller.read(A, "with", (5,)) == [[1, {"2": [3, 4]}], [5]]


async def test_json_values_arrive_unchanged() -> None:
    """What JSON carries as itself (str, int, float, bool, None, lists, str-keyed dicts,
    non-ASCII text) arrives equal and of the same types."""
    value = {"s": "żółw ✓", "i": -(2**62), "f": 0.1, "t": True, "n": None, "l": [1, "a"]}
    async with remote() as s:
        await started(s)
        await s.caller.command(SESSION, "put", value)
        assert received(s) == value
        assert await s.caller.read(A, "content") == value
        assert type((await s.caller.read(A, "content"))["f"]) is float


async def test_ids_with_int_names_arrive_as_ids() -> None:
    """A channel reference from another node names its actors as id tuples, int names
    kept as ints."""
    async with remote() as s:
        await s.owner.create_channel(SESSION, [wes.create(("counter", 7))])
        ref = await s.caller.status(SESSION)
        assert ref is not None
        assert ref.actors == (("counter", 7),) and ref.id == SESSION


# --- what JSON cannot carry --------------------------------------------------------------

UNFIT: list[Any] = [
    {1, 2},
    frozenset({1}),
    b"bytes",
    bytearray(b"x"),
    object(),
    math.nan,
    math.inf,
    -math.inf,
    {(1, 2): "tuple key"},
    [1, {2: {3, 4}}],
    1 + 2j,
]
UNFIT_IDS = [
    "set",
    "frozenset",
    "bytes",
    "bytearray",
    "object",
    "nan",
    "inf",
    "-inf",
    "tuple-key",
    "nested-set",
    "complex",
]


@pytest.mark.parametrize("value", UNFIT, ids=UNFIT_IDS)
@pytest.mark.parametrize("how", ["positional", "keyword"])
async def test_a_command_argument_json_cannot_carry_fails_at_the_caller(
    value: Any, how: str
) -> None:
    """A command argument JSON cannot carry fails on the calling node with
    `InvalidArguments`: nothing is sent, nothing runs, the owner's actor is unchanged."""
    async with remote() as s:
        await started(s)
        with pytest.raises(wes.InvalidArguments, match="cannot travel as JSON"):
            if how == "positional":
                await s.caller.command(SESSION, "put", value)
            else:
                await s.caller.command(SESSION, "put", named=value)
        assert s.transport.sent == []
        assert received(s) is None
        assert await s.caller.read(A, "value") == 0


@pytest.mark.parametrize("value", [{1, 2}, b"x", math.nan], ids=["set", "bytes", "nan"])
async def test_a_read_argument_json_cannot_carry_fails_at_the_caller(value: Any) -> None:
    """A read argument JSON cannot carry fails on the calling node with `InvalidArguments`,
    before any request."""
    async with remote() as s:
        await started(s)
        with pytest.raises(wes.InvalidArguments, match="cannot travel as JSON"):
            await s.caller.read(A, "with", value)
        assert s.transport.sent == []


@pytest.mark.parametrize("op", ["create_actor", "ensure_actor", "ensure_channel"])
async def test_a_spec_argument_json_cannot_carry_fails_at_the_caller(op: str) -> None:
    """A spec whose `create` arguments JSON cannot carry fails on the calling node with
    `InvalidArguments`: nothing is sent and the owner's channel gains no actor."""
    async with remote() as s:
        await started(s)
        with pytest.raises(wes.InvalidArguments, match="cannot travel as JSON"):
            await getattr(s.caller, op)(SESSION, wes.create(B, 0, {1, 2}))
        assert s.transport.sent == []
        assert await s.owner.status(SESSION) == wes.ChannelRef(SESSION, "n0", (A,))


@pytest.mark.parametrize("kind", ["set", "bytes", "object", "nan"])
async def test_a_view_json_cannot_carry_is_a_clear_error(kind: str) -> None:
    """A read whose view JSON cannot carry fails at the remote caller with a `UsageError`
    that names the read and says why; the channel runs on and the owner reads it."""
    async with remote() as s:
        await started(s)
        with pytest.raises(wes.UsageError, match="JSON cannot carry the answer") as caught:
            await s.caller.read(A, "unfit", kind)
        assert "'unfit'" in str(caught.value) and not isinstance(caught.value, wes.RemoteError)
        assert await s.owner.read(A, "unfit", kind) is not None
        assert await s.caller.read(A, "value") == 0


# --- the payload limit -------------------------------------------------------------------


async def test_a_request_over_the_limit_fails_at_the_caller() -> None:
    """A command whose request is over the transport's payload limit fails on the calling
    node with `InvalidArguments`, unsent and unrun."""
    async with remote(max_payload=LIMIT) as s:
        await started(s)
        with pytest.raises(wes.InvalidArguments, match=f"over the transport's limit of {LIMIT}"):
            await s.caller.command(SESSION, "put", "z" * LIMIT)
        assert s.transport.sent == []
        assert received(s) is None


async def test_a_view_over_the_limit_is_an_error_answer_not_a_timeout() -> None:
    """A read whose answer is over the payload limit fails with a `UsageError` saying so
    (not `OutcomeUnknown` after `call_timeout`); one just under it arrives whole."""
    async with remote(max_payload=LIMIT, call_timeout=5.0) as s:
        await started(s)
        with pytest.raises(wes.UsageError, match=f"over the transport's limit of {LIMIT}"):
            await s.caller.read(A, "blob", LIMIT)
        assert await s.caller.read(A, "blob", LIMIT - 100) == "x" * (LIMIT - 100)


async def test_an_actors_exception_over_the_limit_arrives_cut_not_as_a_timeout() -> None:
    """An actor's exception whose answer (message, args, traceback) is over the payload limit
    still reaches the remote caller as an error, its message cut to fit, instead of no
    answer and `OutcomeUnknown`; the channel died unsaved as always."""
    async with remote(max_payload=LIMIT, call_timeout=5.0) as s:
        await started(s)
        with pytest.raises(wes.WesError, match="cut to fit") as caught:
            await s.caller.command(SESSION, "boom", 2 * LIMIT)
        assert not isinstance(caught.value, wes.OutcomeUnknown)
        assert await s.caller.status(SESSION) is None


async def test_an_actors_exception_with_a_long_traceback_keeps_its_class() -> None:
    """An actor's exception that fits once its traceback is dropped arrives as its own class
    with its message whole; the note says the traceback was cut."""
    async with remote(max_payload=LIMIT, call_timeout=5.0) as s:
        await started(s)
        with pytest.raises(ValueError) as caught:
            await s.caller.command(SESSION, "boom", 1500)
        assert caught.value.args == ("y" * 1500,)
        notes = getattr(caught.value, "__notes__", [])
        assert any("cut" in note for note in notes)
