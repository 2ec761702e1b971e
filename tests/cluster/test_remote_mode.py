"""The behaviour suite in two modes: `local` (one node runs the channels and takes every
operation) and `remote` (the channels run on `n0`, every operation is issued from `n1` over
a `MemoryTransport`), so the local and the remote paths are held to one contract: the
operation table's returns and errors, and the channel semantics of DESIGN.md.

The differences DESIGN.md allows (JSON types on the wire) are in `test_remote_json.py`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import pytest

import wes
from tests.support import counters
from tests.support.cluster import MODES, Mode, Sides, sides_of
from tests.support.nodes import EMPTY, OTHER, SESSION, A, B, C
from tests.support.waiting import wait_until


class Overdrawn(Exception):
    """An actor's exception the caller registers with `node.error_type`."""

    def __init__(self, account: str, amount: int) -> None:
        super().__init__(account, amount)
        self.account = account
        self.amount = amount


class Jammed(Exception):
    """An actor's exception no caller registers."""


ERRORS: dict[str, type[Exception]] = {"value": ValueError, "jammed": Jammed}


class Counter(counters.Counter):
    """The usual counter, with handlers that raise, stop, leave and await."""

    entered: ClassVar[asyncio.Event | None] = None
    gate: ClassVar[asyncio.Event | None] = None

    @wes.command
    def fail(self, kind: str) -> None:
        self.value += 100  # changed, then raised: the change must never be persisted
        if kind == "overdrawn":
            raise Overdrawn("acc-1", 7)
        raise ERRORS[kind]("it broke", 3)

    @wes.command
    async def fail_later(self, kind: str) -> None:
        await asyncio.sleep(0)
        self.value += 100
        raise ERRORS[kind]("it broke", 3)

    @wes.command
    async def hold_then_halt(self) -> None:
        """Hold the channel's turn until the test opens `gate`, then stop the channel."""
        assert Counter.entered is not None and Counter.gate is not None
        Counter.entered.set()
        await Counter.gate.wait()
        self.stop_channel()

    @wes.command
    def halt(self) -> None:
        self.value += 1
        self.stop_channel()

    @wes.command("go")
    def go_now(self) -> None:
        self.value += 1
        self.leave()

    @wes.command
    async def later(self, n: int) -> None:
        await asyncio.sleep(0)
        self.value += n

    @wes.read("doubled")
    async def doubled(self, factor: int = 2) -> int:
        await asyncio.sleep(0)
        return self.value * factor

    @wes.command
    def named(self, name: str = "", channel: str = "") -> None:
        self.value += len(name) + len(channel)

    @wes.read("echo")
    def echo(self, actor: str = "", name: str = "") -> str:
        return actor + name

    @wes.read("broken")
    def broken(self) -> int:
        raise KeyError("no such view")


class Loopy(wes.Actor):
    """An async command that awaits a command on another channel, through the node that runs
    the handler's own channel (`Loopy.nodes`), and records what that call did."""

    nodes: ClassVar[dict[tuple[str, str | int], wes.Node]] = {}
    outcomes: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.calls = 0

    @wes.command
    async def call(self, target: list[Any], then: list[Any] | None = None) -> None:
        try:
            await self._forward("call", target, then)
        except wes.ReentrantCall:
            Loopy.outcomes.append("reentrant")
        else:
            Loopy.outcomes.append("ok")

    @wes.command
    async def relay(self, target: list[Any], then: list[Any] | None = None) -> None:
        """`call`, letting what the call raised through (this channel dies of it)."""
        await self._forward("relay", target, then)

    @wes.command
    async def ask(self, target: list[Any], name: str, arg: list[Any]) -> None:
        """Send command `name` with `arg` to channel `target`."""
        assert self.channel is not None
        await Loopy.nodes[self.channel].command((target[0], target[1]), name, arg)

    @wes.command
    async def look(self, target: list[Any]) -> None:
        """Record who runs channel `target`, by `status`."""
        assert self.channel is not None
        ref = await Loopy.nodes[self.channel].status((target[0], target[1]))
        Loopy.outcomes.append("nowhere" if ref is None else ref.owner)

    async def _forward(self, name: str, target: list[Any], then: list[Any] | None) -> None:
        self.calls += 1
        assert self.channel is not None
        args = [] if then is None else [then]
        await Loopy.nodes[self.channel].command((target[0], target[1]), name, *args)

    @wes.read("calls")
    def count(self) -> int:
        return self.calls


ACTORS: dict[str, type[wes.Actor]] = {"counter": Counter, "loopy": Loopy}
SHORT_ID: Any = ("counter",)  # of the wrong shape on purpose


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """Each test once with one node, once with the operations on a node not owning."""
    value: Mode = request.param
    return value


def sides(mode: Mode, **settings: Any) -> Any:
    return sides_of(mode, ACTORS, **settings)


async def started(s: Sides, channel: Any = SESSION, *specs: wes.Spec) -> None:
    """Start `channel` on the owner (with A at 1 unless told)."""
    await s.owner.create_channel(channel, list(specs) or [wes.create(A, 1)])


# --- returns -----------------------------------------------------------------------------


async def test_status_names_the_owner_and_the_actors(mode: Mode) -> None:
    """`status` from the caller is the channel's `ChannelRef`: its id, the owner's address
    and its actors; `None` for a channel that runs nowhere."""
    async with sides(mode) as s:
        await started(s, SESSION, wes.create(A), wes.create(B))
        ref = await s.caller.status(SESSION)
        assert ref == wes.ChannelRef(SESSION, s.owner.address, (A, B))
        assert await s.caller.status(OTHER) is None


async def test_command_returns_none_once_applied(mode: Mode) -> None:
    """A command from the caller returns `None` after the owner's actor applied it."""
    async with sides(mode) as s:
        await started(s)
        assert await s.caller.command(SESSION, "incr", 2) is None
        assert await s.caller.command(SESSION, "incr", n=3) is None
        assert await s.caller.read(A, "value") == 6
        assert await s.owner.read(A, "value") == 6


async def test_actor_operations_return_none_and_change_the_channel(mode: Mode) -> None:
    """`create_actor` and `ensure_actor` from the caller return `None` and add the actors to
    the owner's channel; `ensure_actor` leaves an actor already there as it is."""
    async with sides(mode) as s:
        await started(s)
        assert await s.caller.create_actor(SESSION, wes.create(B, 5)) is None
        assert await s.caller.ensure_actor(SESSION, [wes.create(A, 9), wes.create(C, 2)]) is None
        assert await s.owner.status(SESSION) == wes.ChannelRef(SESSION, s.owner.address, (A, B, C))
        assert [await s.caller.read(x, "value") for x in (A, B, C)] == [1, 5, 2]


async def test_ensure_channel_of_a_running_channel_reaches_its_owner(mode: Mode) -> None:
    """`ensure_channel` of a channel running on the owner returns its ref (owner named)
    and gives it the specs' missing actors; nothing starts on the caller."""
    async with sides(mode) as s:
        await started(s)
        ref = await s.caller.ensure_channel(SESSION, [wes.create(A, 9), wes.create(B, 4)])
        assert ref == wes.ChannelRef(SESSION, s.owner.address, (A, B))
        assert await s.caller.read(A, "value") == 1
        assert await s.caller.read(B, "value") == 4
        assert s.live_channels == s.owner.live_channels == 1


async def test_a_channel_running_nowhere_starts_on_the_caller(mode: Mode) -> None:
    """`create_channel` and `ensure_channel` of a channel that runs nowhere start it on the
    calling node (the default placement, "local")."""
    async with sides(mode) as s:
        await started(s)
        ref = await s.caller.create_channel(OTHER, wes.create(B, 2))
        assert ref == wes.ChannelRef(OTHER, s.caller.address, (B,))
        ref = await s.caller.ensure_channel(EMPTY)
        assert ref == wes.ChannelRef(EMPTY, s.caller.address, ())
        assert await s.owner.read(B, "value") == 2


async def test_stop_channel_saves_and_releases(mode: Mode) -> None:
    """`stop_channel` from the caller returns `None` once the owner saved the actors and
    released their claims: the store holds the last state and the actor can start anew."""
    async with sides(mode) as s:
        await started(s)
        await s.caller.command(SESSION, "incr", 4)
        assert await s.caller.stop_channel(SESSION) is None
        assert await s.caller.status(SESSION) is None
        stored = await s.caller.stored(A)
        assert isinstance(stored, Counter) and stored.value == 5
        await s.caller.create_channel(OTHER, wes.load(A))
        assert await s.owner.read(A, "value") == 5


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("command", lambda n: n.command(SESSION, "incr")),
        ("read", lambda n: n.read(A, "value")),
        ("status", lambda n: n.status(SESSION)),
        ("stop_channel", lambda n: n.stop_channel(SESSION)),
        ("create_actor", lambda n: n.create_actor(SESSION, wes.create(B))),
        ("ensure_actor", lambda n: n.ensure_actor(SESSION, wes.create(B))),
        ("ensure_channel", lambda n: n.ensure_channel(SESSION, wes.create(B))),
    ],
)
async def test_the_remote_mode_calls_the_owner_over_the_transport(op: str, call: Any) -> None:
    """In the remote mode each operation on the owner's channel is one request of that op
    from the caller to the owner (the suite's remote mode is not local in disguise)."""
    async with sides("remote") as s:
        await started(s)
        await call(s.caller)
        assert [json.loads(data)["op"] for data in s.transport.sent] == [op]


async def test_int_names_and_keywords_named_like_parameters(mode: Mode) -> None:
    """Channels and actors with int names are reached by those ids, and keyword arguments
    named like an operation's own parameters (`name`, `channel`, `actor`) reach the
    handler."""
    channel, actor = ("session", 5), ("counter", 7)
    async with sides(mode) as s:
        await s.owner.create_channel(channel, wes.create(actor))
        await s.caller.command(channel, "named", name="abc", channel="de")
        assert await s.caller.read(actor, "value") == 5
        assert await s.caller.read(actor, "echo", actor="x", name="y") == "xy"
        assert await s.caller.status(channel) == wes.ChannelRef(channel, "n0", (actor,))


async def test_a_new_actor_of_a_channel_that_died_leaves_no_trace(mode: Mode) -> None:
    """An actor the caller added to the owner's channel is first written at the channel's
    next save: when the channel dies before it, the store does not hold the actor."""
    async with sides(mode) as s:
        await started(s)
        await s.caller.create_actor(SESSION, wes.create(B, 4))
        with pytest.raises(ValueError, match="it broke"):
            await s.caller.command(SESSION, "fail", "value")
        assert await s.caller.stored(B) is None
        with pytest.raises(wes.ActorNotFound):
            await s.caller.create_channel(SESSION, wes.load(B))


# --- the table's errors ------------------------------------------------------------------


async def test_create_channel_of_a_running_channel_is_already_started(mode: Mode) -> None:
    """`create_channel` of a channel the owner runs fails with `ChannelAlreadyStarted`, and
    the specs it was given took nothing: their actors can start elsewhere."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(wes.ChannelAlreadyStarted):
            await s.caller.create_channel(SESSION, wes.create(B))
        assert s.live_channels == 1
        await s.caller.create_channel(OTHER, wes.create(B))


@pytest.mark.parametrize("op", ["command", "stop_channel", "create_actor", "ensure_actor"])
async def test_operations_on_a_channel_running_nowhere_are_not_started(mode: Mode, op: str) -> None:
    """Every operation on a channel that runs on no node fails with `ChannelNotStarted`."""
    calls = {
        "command": lambda n: n.command(OTHER, "incr"),
        "stop_channel": lambda n: n.stop_channel(OTHER),
        "create_actor": lambda n: n.create_actor(OTHER, wes.create(B)),
        "ensure_actor": lambda n: n.ensure_actor(OTHER, wes.create(B)),
    }
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(wes.ChannelNotStarted):
            await calls[op](s.caller)
        assert await s.caller.status(OTHER) is None


async def test_create_actor_of_an_actor_in_the_channel_fails_and_changes_nothing(
    mode: Mode,
) -> None:
    """`create_actor` of an actor already in the channel fails with `ActorAlreadyInChannel`;
    the channel keeps its actors and their states, and none of the call's other specs."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(wes.ActorAlreadyInChannel):
            await s.caller.create_actor(SESSION, [wes.create(B), wes.create(A)])
        assert (await s.caller.status(SESSION)) == wes.ChannelRef(SESSION, s.owner.address, (A,))
        assert await s.caller.read(A, "value") == 1
        with pytest.raises(wes.ActorNotActive):
            await s.caller.read(B, "value")


async def test_specs_of_an_actor_active_elsewhere_are_already_locked(mode: Mode) -> None:
    """A spec for an actor active in the owner's channel (or for another id of its storage
    key) fails with `ActorAlreadyLocked`, whether it starts a channel or joins another."""
    async with sides(mode) as s:
        await started(s)
        await started(s, OTHER, wes.create(B))
        with pytest.raises(wes.ActorAlreadyLocked):
            await s.caller.create_channel(EMPTY, wes.load(A))
        with pytest.raises(wes.ActorAlreadyLocked):
            await s.caller.create_actor(OTHER, wes.load(A))
        await s.owner.create_actor(SESSION, wes.create(("counter", 1)))
        with pytest.raises(wes.ActorAlreadyLocked):  # another id, the same storage key
            await s.caller.create_actor(OTHER, wes.load_or_create(("counter", "1")))
        assert await s.caller.status(EMPTY) is None
        assert (await s.caller.status(OTHER)) == wes.ChannelRef(OTHER, s.owner.address, (B,))


async def test_specs_against_the_store_fail_as_the_table_says(mode: Mode) -> None:
    """`load` of an actor the store lacks fails with `ActorNotFound`, `create` of one it
    holds with `ActorAlreadyExists`; the owner's channel stays as it was."""
    async with sides(mode) as s:
        await started(s, OTHER, wes.create(C, 3))
        await s.owner.stop_channel(OTHER)  # C is stored now
        await started(s)
        with pytest.raises(wes.ActorNotFound):
            await s.caller.create_actor(SESSION, wes.load(B))
        with pytest.raises(wes.ActorAlreadyExists):
            await s.caller.ensure_actor(SESSION, wes.create(C))
        with pytest.raises(wes.ActorNotFound):
            await s.caller.ensure_channel(EMPTY, wes.load(B))
        with pytest.raises(wes.ActorNotFound):
            await s.caller.ensure_channel(SESSION, [wes.create(B), wes.load(("counter", "z"))])
        with pytest.raises(TypeError):  # create arguments that do not bind `__init__`
            await s.caller.create_actor(SESSION, wes.create(B, 1, 2, 3))
        assert (await s.caller.status(SESSION)) == wes.ChannelRef(SESSION, s.owner.address, (A,))
        assert await s.caller.status(EMPTY) is None


async def test_unknown_command_and_read_change_nothing(mode: Mode) -> None:
    """A command no actor handles fails with `UnknownCommand`, a read the actor lacks with
    `UnknownRead`; the channel runs on unchanged."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(wes.UnknownCommand):
            await s.caller.command(SESSION, "nope", 1)
        with pytest.raises(wes.UnknownRead):
            await s.caller.read(A, "nope")
        assert await s.caller.read(A, "value") == 1


async def test_read_of_an_actor_in_no_channel_is_not_active(mode: Mode) -> None:
    """A read of an actor that is in no channel on any node fails with `ActorNotActive`."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(wes.ActorNotActive):
            await s.caller.read(B, "value")


@pytest.mark.parametrize(
    ("op", "args", "kwargs"),
    [
        ("command", (1, 2), {}),
        ("command", (), {"m": 1}),
        ("read", (1,), {}),
        ("read", (), {"factor": 1, "extra": 2}),
    ],
)
async def test_arguments_that_do_not_bind_are_invalid(
    mode: Mode, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """A command or read whose arguments do not bind to the handler fails with
    `InvalidArguments`; nothing ran and the channel keeps running."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(wes.InvalidArguments):
            if op == "command":
                await s.caller.command(SESSION, "incr", *args, **kwargs)
            else:
                await s.caller.read(A, "value" if args else "doubled", *args, **kwargs)
        assert await s.caller.read(A, "value") == 1
        assert await s.caller.status(SESSION) is not None


@pytest.mark.parametrize(
    ("error", "call"),
    [
        (wes.InvalidName, lambda n: n.command(SESSION, 5)),
        (wes.InvalidName, lambda n: n.read(A, 5)),
        (wes.InvalidId, lambda n: n.command(("session",), "incr")),
        (wes.InvalidId, lambda n: n.command(["session", "s1"], "incr")),
        (wes.InvalidId, lambda n: n.read(("counter", 1.5), "value")),
        (wes.InvalidId, lambda n: n.status(("session", None))),
        (wes.InvalidId, lambda n: n.stop_channel("s1")),
        (wes.InvalidId, lambda n: n.create_actor(SESSION, wes.create(SHORT_ID))),
        (wes.InvalidId, lambda n: n.ensure_channel(("session", b"s1"))),
    ],
)
async def test_ids_and_names_are_checked_at_the_caller(
    mode: Mode, error: type[wes.WesError], call: Any
) -> None:
    """An id or a name of the wrong shape fails on the calling node with `InvalidId` or
    `InvalidName`: no request leaves it, and the owner's channel is as it was."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(error):
            await call(s.caller)
        assert s.transport.sent == []
        assert await s.owner.read(A, "value") == 1


async def test_a_failed_start_releases_what_it_took(mode: Mode) -> None:
    """`create_channel` whose later spec fails starts nothing and releases the claims its
    earlier specs took: both the channel and the actor can start anew at once."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(wes.ActorNotFound):
            await s.caller.create_channel(OTHER, [wes.create(B), wes.load(C)])
        assert await s.caller.status(OTHER) is None
        await s.owner.create_channel(OTHER, wes.create(B, 2))
        assert await s.caller.read(B, "value") == 2


@pytest.mark.parametrize(
    ("error", "call"),
    [
        (wes.UnknownChannelType, lambda n: n.command(("nope", "x"), "incr")),
        (wes.UnknownChannelType, lambda n: n.ensure_channel(("nope", "x"))),
        (wes.UnknownActorType, lambda n: n.read(("nope", "x"), "value")),
    ],
)
async def test_unknown_types_are_refused_at_the_caller(
    mode: Mode, error: type[wes.WesError], call: Any
) -> None:
    """An id of a type the calling node does not know fails there, unsent."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(error):
            await call(s.caller)
        assert s.transport.sent == []


# --- an actor's exception ----------------------------------------------------------------


async def test_builtin_exception_arrives_as_its_class(mode: Mode) -> None:
    """An actor's builtin exception reaches the caller as that very class with its args;
    from another node it carries the remote traceback as a note."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(ValueError, match="it broke") as caught:
            await s.caller.command(SESSION, "fail", "value")
        assert caught.value.args == ("it broke", 3)
        notes = getattr(caught.value, "__notes__", [])
        if mode == "remote":
            assert any("remote traceback, from node n0" in note for note in notes)
            assert any("in fail" in note for note in notes)


async def test_registered_exception_arrives_as_its_class(mode: Mode) -> None:
    """An actor's exception of a class the caller registered with `node.error_type` reaches
    it as that class, rebuilt from its args."""
    async with sides(mode) as s:
        s.caller.error_type(Overdrawn)
        await started(s)
        with pytest.raises(Overdrawn) as caught:
            await s.caller.command(SESSION, "fail", "overdrawn")
        assert (caught.value.account, caught.value.amount) == ("acc-1", 7)


async def test_unregistered_exception_is_the_one_difference(mode: Mode) -> None:
    """An actor's exception of a class the caller did not register reaches a local caller
    unchanged, a remote one as `wes.RemoteError` with the qualified type name, the message
    and the remote traceback."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(Exception) as caught:
            await s.caller.command(SESSION, "fail", "jammed")
        if mode == "local":
            assert type(caught.value) is Jammed
            return
        err = caught.value
        assert isinstance(err, wes.RemoteError)
        assert err.type_name == f"{__name__}.Jammed"
        assert err.message == str(Jammed("it broke", 3))
        assert any("Jammed" in note for note in getattr(err, "__notes__", []))


async def test_exception_in_a_read_leaves_the_channel_running(mode: Mode) -> None:
    """A read that raises reaches the caller as its exception; the channel runs on."""
    async with sides(mode) as s:
        await started(s)
        with pytest.raises(KeyError, match="no such view"):
            await s.caller.read(A, "broken")
        await s.caller.command(SESSION, "incr")
        assert await s.caller.read(A, "value") == 2


@pytest.mark.parametrize("handler", ["fail", "fail_later"])
@pytest.mark.parametrize(("kind", "type_name"), [("value", "ValueError"), ("jammed", "Jammed")])
async def test_raising_actor_kills_the_channel_unsaved(
    mode: Mode, handler: str, kind: str, type_name: str
) -> None:
    """After an actor raised (in a plain or an async handler), the owner's channel is
    stopped without saving, counted as a stop named after the exception, and its claims
    are released: the next start sees the last persisted state, not the unsaved changes."""
    stats = wes.MemoryStats()
    async with sides(mode, stats=stats) as s:
        await started(s)
        await s.caller.command(SESSION, "incr", 2)
        await s.caller.stop_channel(SESSION)  # 3 persisted
        await started(s, SESSION, wes.load(A))
        await s.caller.command(SESSION, "incr", 4)  # 7, never saved
        with pytest.raises(Exception):  # noqa: B017 - each kind's class is tested above
            await s.caller.command(SESSION, handler, kind)
        assert await s.caller.status(SESSION) is None
        assert stats.counts()[("stop", type_name)] == 1
        with pytest.raises(wes.ActorNotActive):
            await s.caller.read(A, "value")
        ref = await s.caller.ensure_channel(SESSION, wes.load(A))
        assert ref.owner == s.caller.address
        assert await s.owner.read(A, "value") == 3


# --- channel semantics -------------------------------------------------------------------


async def test_command_is_broadcast_to_every_actor(mode: Mode) -> None:
    """A command reaches every actor of the owner's channel before it returns."""
    async with sides(mode) as s:
        await started(s, SESSION, wes.create(A, 1), wes.create(B, 10), wes.create(C, 100))
        await s.caller.command(SESSION, "incr", 5)
        assert [await s.caller.read(x, "value") for x in (A, B, C)] == [6, 15, 105]


async def test_command_to_an_empty_channel_is_a_dead_letter(mode: Mode) -> None:
    """A command to a channel with no actors succeeds and the owner counts a dead letter."""
    stats = wes.MemoryStats()
    async with sides(mode, stats=stats) as s:
        await s.owner.create_channel(EMPTY)
        assert await s.caller.command(EMPTY, "incr", 1) is None
        assert stats.counts()[("dead_letter", "incr")] == 1


async def test_async_handlers_run_in_the_owners_turn(mode: Mode) -> None:
    """An async command and an async read work from the caller as locally, and commands
    sent at once are applied one at a time (none lost)."""
    async with sides(mode) as s:
        await started(s, SESSION, wes.create(A, 1), wes.create(B, 0))
        await asyncio.gather(*(s.caller.command(SESSION, "later", 2) for _ in range(10)))
        assert await s.caller.read(A, "doubled") == 42
        assert await s.caller.read(B, "doubled", factor=3) == 60


async def test_handler_stopping_its_channel_stops_it_saved(mode: Mode) -> None:
    """`self.stop_channel()` in a handler stops the owner's channel after that command,
    normally: its actors are saved with the command's change."""
    async with sides(mode) as s:
        await started(s)
        await s.caller.command(SESSION, "halt")
        assert await s.caller.status(SESSION) is None
        stored = await s.caller.stored(A)
        assert isinstance(stored, Counter) and stored.value == 2


async def test_calls_queued_behind_a_stopping_command_find_it_stopped(mode: Mode) -> None:
    """A command and a read that wait for the turn of a command which stops the channel fail
    with `ChannelNotStarted` and `ActorNotActive`, unapplied; the stop saved the state."""
    Counter.entered, Counter.gate = asyncio.Event(), asyncio.Event()
    async with sides(mode) as s:
        await started(s)
        holding = asyncio.create_task(s.caller.command(SESSION, "hold_then_halt"))
        await Counter.entered.wait()
        queued = [
            asyncio.create_task(s.caller.command(SESSION, "incr", 5)),
            asyncio.create_task(s.caller.read(A, "doubled")),
        ]
        turn = s.owner._channels[SESSION]
        await wait_until(lambda: len(turn.waiters or ()) == 2)
        Counter.gate.set()
        await holding
        with pytest.raises(wes.ChannelNotStarted):
            await queued[0]
        with pytest.raises(wes.ActorNotActive):
            await queued[1]
        stored = await s.caller.stored(A)
        assert isinstance(stored, Counter) and stored.value == 1


async def test_handler_leaving_its_channel_is_saved_and_gone(mode: Mode) -> None:
    """`self.leave()` in a handler saves the actor, which leaves the owner's channel; the
    other actors run on."""
    async with sides(mode) as s:
        await started(s, SESSION, wes.create(A, 1), wes.create(B, 10))
        await s.caller.command(SESSION, "go")
        assert (await s.caller.status(SESSION)) == wes.ChannelRef(SESSION, s.owner.address, ())
        with pytest.raises(wes.ActorNotActive):
            await s.caller.read(A, "value")
        stored = await s.caller.stored(A)
        assert isinstance(stored, Counter) and stored.value == 2


async def test_handler_leave_of_one_actor_keeps_the_others(mode: Mode) -> None:
    """An actor without the leaving handler stays in the channel and keeps its state."""
    async with sides(mode) as s:
        await started(s, SESSION, wes.create(A, 1), wes.create(("loopy", "x")))
        await s.caller.command(SESSION, "go")
        assert (await s.caller.status(SESSION)) == wes.ChannelRef(
            SESSION, s.owner.address, (("loopy", "x"),)
        )
        assert await s.caller.read(("loopy", "x"), "calls") == 0


async def test_a_cycle_through_another_channel_is_reentrant(mode: Mode) -> None:
    """An async handler of the owner's channel awaiting a command on the caller's channel,
    whose handler awaits a command back on the first, gets `ReentrantCall` at once in the
    second handler (across two nodes as on one); both channels run on."""
    Loopy.outcomes.clear()
    async with sides(mode) as s:
        Loopy.nodes = {SESSION: s.owner, OTHER: s.caller}
        await s.owner.create_channel(SESSION, wes.create(("loopy", "x")))
        await s.caller.create_channel(OTHER, wes.create(("loopy", "y")))
        await s.caller.command(SESSION, "call", list(OTHER), list(SESSION))
        assert Loopy.outcomes == ["reentrant", "ok"]
        assert await s.caller.read(("loopy", "x"), "calls") == 1
        assert await s.owner.read(("loopy", "y"), "calls") == 1
        assert (await s.caller.status(SESSION)) == wes.ChannelRef(
            SESSION, s.owner.address, (("loopy", "x"),)
        )


async def test_a_handler_may_await_another_nodes_channel(mode: Mode) -> None:
    """An async handler of the owner's channel awaiting a command on the caller's channel
    (no cycle) gets it done."""
    Loopy.outcomes.clear()
    async with sides(mode) as s:
        Loopy.nodes = {SESSION: s.owner, OTHER: s.caller}
        await s.owner.create_channel(SESSION, wes.create(("loopy", "x")))
        await s.caller.create_channel(OTHER, wes.create(("loopy", "y")))
        await s.owner.create_channel(EMPTY)
        await s.caller.command(SESSION, "call", list(OTHER), list(EMPTY))
        assert Loopy.outcomes == ["ok", "ok"]  # the inner handler's, then the outer's
        assert await s.caller.read(("loopy", "y"), "calls") == 1


async def test_a_cycle_left_unhandled_reaches_the_caller_as_reentrant(mode: Mode) -> None:
    """When neither handler of an `A -> B -> A` cycle catches `ReentrantCall`, the caller
    gets it as its own class and both channels died of it, as on one node."""
    async with sides(mode) as s:
        Loopy.nodes = {SESSION: s.owner, OTHER: s.caller}
        await s.owner.create_channel(SESSION, wes.create(("loopy", "x")))
        await s.caller.create_channel(OTHER, wes.create(("loopy", "y")))
        with pytest.raises(wes.ReentrantCall):
            await s.caller.command(SESSION, "relay", list(OTHER), list(SESSION))
        assert await s.caller.status(SESSION) is None
        assert await s.caller.status(OTHER) is None


async def test_status_inside_a_cycle_answers(mode: Mode) -> None:
    """`status` takes no turn, so a handler on the path of a call holding a channel may ask
    for that channel's status and gets its ref (across two nodes as on one)."""
    Loopy.outcomes.clear()
    async with sides(mode) as s:
        Loopy.nodes = {SESSION: s.owner, OTHER: s.caller}
        await s.owner.create_channel(SESSION, wes.create(("loopy", "x")))
        await s.caller.create_channel(OTHER, wes.create(("loopy", "y")))
        await s.caller.command(SESSION, "ask", list(OTHER), "look", list(SESSION))
        assert Loopy.outcomes == [s.owner.address]


# --- after the owner stopped the channel -------------------------------------------------


async def test_operations_after_the_owner_stopped_the_channel(mode: Mode) -> None:
    """Once the owner stopped the channel, the caller's commands fail with
    `ChannelNotStarted`, its reads with `ActorNotActive`, and its `ensure_channel` starts
    the channel anew from its last save."""
    async with sides(mode) as s:
        await started(s)
        await s.caller.command(SESSION, "incr", 2)
        assert await s.caller.read(A, "value") == 3  # the caller knows the owner now
        await s.owner.stop_channel(SESSION)
        with pytest.raises(wes.ChannelNotStarted):
            await s.caller.command(SESSION, "incr")
        with pytest.raises(wes.ActorNotActive):
            await s.caller.read(A, "value")
        ref = await s.caller.ensure_channel(SESSION, wes.load(A))
        assert ref == wes.ChannelRef(SESSION, s.caller.address, (A,))
        await s.caller.command(SESSION, "incr")
        assert await s.owner.read(A, "value") == 4
