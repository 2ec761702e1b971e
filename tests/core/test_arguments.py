"""Argument checks: a command or read whose arguments do not bind to a handler is refused
with InvalidArguments before any actor runs, and the channel runs on unchanged."""

from __future__ import annotations

from typing import Any

import pytest

import wes
from tests.support.counters import Counter
from tests.support.nodes import node_of
from wes._arguments import Arity

CH = ("session", "s")
A, B = ("counter", "a"), ("counter", "b")


class Strict(Counter):
    """Handlers of every parameter kind."""

    @wes.command
    def set(self, value: int, /, *, why: str) -> None:
        self.value = value

    @wes.command
    async def slow_incr(self, n: int) -> None:
        self.value += n

    @wes.command
    def broken(self) -> None:
        raise TypeError("a bug inside the handler")

    @wes.command
    async def nested(self, node: Any) -> None:
        await node.command(("session", "elsewhere"), "incr", 1, 2, 3)

    @wes.read("plus")
    def plus(self, n: int) -> int:
        return self.value + n

    @wes.read("slow_plus")
    async def slow_plus(self, n: int) -> int:
        return self.value + n


class Narrow(Counter):
    """Its `incr` takes no argument: a command `incr(5)` fits Strict but not this one."""

    @wes.command
    def incr(self) -> None:  # type: ignore[override]
        self.value += 1


def make_node(stats: wes.abc.Stats | None = None) -> wes.Node:
    return node_of({"counter": Strict, "narrow": Narrow}, stats=stats)


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        ((1, 2, 3), {}, "too many positional arguments"),
        ((), {"m": 1}, "unexpected keyword argument 'm'"),
        ((1,), {"n": 2}, "multiple values for argument 'n'"),
    ],
)
async def test_command_that_does_not_bind_is_refused_and_changes_nothing(
    args: tuple[Any, ...], kwargs: dict[str, Any], says: str
) -> None:
    """A command whose arguments do not bind raises InvalidArguments naming the command,
    the type and the problem; the channel runs on with its state unchanged."""
    stats = wes.MemoryStats()
    async with make_node(stats) as node:
        await node.create_channel(CH, wes.create(A, 5))
        with pytest.raises(wes.InvalidArguments, match=says) as info:
            await node.command(CH, "incr", *args, **kwargs)
        assert "'incr'" in str(info.value) and "'counter'" in str(info.value)
        assert await node.status(CH) is not None
        assert await node.read(A, "value") == 5
        await node.command(CH, "incr", 1)
        assert await node.read(A, "value") == 6
        assert not any(kind == "stop" for kind, _ in stats.counts())


async def test_invalid_arguments_is_a_usage_error_and_a_type_error() -> None:
    """InvalidArguments derives from UsageError (and TypeError, as Python's own would)."""
    assert issubclass(wes.InvalidArguments, wes.UsageError)
    assert issubclass(wes.InvalidArguments, TypeError)


async def test_missing_keyword_only_argument_is_refused() -> None:
    """A required keyword-only argument that is missing is refused."""
    async with make_node() as node:
        await node.create_channel(CH, wes.create(A, 5))
        with pytest.raises(wes.InvalidArguments, match="why"):
            await node.command(CH, "set", 9)
        with pytest.raises(wes.InvalidArguments, match="positional"):
            await node.command(CH, "set", value=9, why="x")
        await node.command(CH, "set", 9, why="x")
        assert await node.read(A, "value") == 9


async def test_command_is_checked_against_every_actor_before_any_runs() -> None:
    """In a channel of two actors, arguments that fit the first handler but not the second
    are refused before the first runs."""
    async with make_node() as node:
        await node.create_channel(CH, [wes.create(A, 5), wes.create(("narrow", "n"), 0)])
        with pytest.raises(wes.InvalidArguments, match="'narrow'"):
            await node.command(CH, "incr", 2)
        assert await node.read(A, "value") == 5
        assert await node.read(("narrow", "n"), "value") == 0
        assert await node.status(CH) is not None


async def test_async_handler_arguments_are_checked_before_it_runs() -> None:
    """A command reaching an async handler is checked too, and the channel runs on."""
    async with make_node() as node:
        await node.create_channel(CH, [wes.create(A, 5), wes.create(B, 1)])
        with pytest.raises(wes.InvalidArguments, match="slow_incr"):
            await node.command(CH, "slow_incr")
        await node.command(CH, "slow_incr", 2)
        assert [await node.read(x, "value") for x in (A, B)] == [7, 3]


async def test_type_error_inside_a_handler_still_kills_the_channel() -> None:
    """A TypeError the handler itself raises is the actor's exception: the channel stops."""
    async with make_node() as node:
        await node.create_channel(CH, wes.create(A))
        with pytest.raises(TypeError, match="a bug inside") as info:
            await node.command(CH, "broken")
        assert not isinstance(info.value, wes.InvalidArguments)
        assert await node.status(CH) is None


async def test_invalid_arguments_raised_by_a_handler_kills_its_channel() -> None:
    """InvalidArguments that escapes a handler (its own bad call) is the actor's exception."""
    node = make_node()
    async with node:
        await node.create_channel(("session", "elsewhere"), wes.create(B))
        await node.create_channel(CH, wes.create(A))
        with pytest.raises(wes.InvalidArguments):
            await node.command(CH, "nested", node)
        assert await node.status(CH) is None
        assert await node.status(("session", "elsewhere")) is not None


@pytest.mark.parametrize("counted", [False, True], ids=["fast", "counted"])
@pytest.mark.parametrize("read", ["plus", "slow_plus"])
async def test_read_that_does_not_bind_is_refused(read: str, counted: bool) -> None:
    """A read whose arguments do not bind raises InvalidArguments, on the fast path and the
    counted or async one; the channel runs on."""
    async with make_node(wes.MemoryStats() if counted else None) as node:
        await node.create_channel(CH, wes.create(A, 5))
        with pytest.raises(wes.InvalidArguments, match=f"read '{read}'"):
            await node.read(A, read, 1, 2)
        with pytest.raises(wes.InvalidArguments):
            await node.read(A, read)
        assert await node.read(A, read, 1) == 6
        assert await node.status(CH) is not None


def _handlers() -> list[Any]:
    def f1(self, a, b=1): ...  # type: ignore[no-untyped-def]
    def f2(self, a, /, b, *, c, d=1): ...  # type: ignore[no-untyped-def]
    def f3(self, *args, **kwargs): ...  # type: ignore[no-untyped-def]
    def f4(self, a, /, **kwargs): ...  # type: ignore[no-untyped-def]
    def f5(self, a, *rest, k): ...  # type: ignore[no-untyped-def]
    def f6(self): ...  # type: ignore[no-untyped-def]

    return [f1, f2, f3, f4, f5, f6]


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((), {"a": 1}),
    ((1,), {"a": 1}),
    ((1,), {"b": 2}),
    ((1,), {"b": 2, "c": 3}),
    ((1, 2), {"c": 3}),
    ((1, 2), {"c": 3, "d": 4, "e": 5}),
    ((1,), {"k": 1}),
    ((1, 2, 3), {"k": 1}),
    ((), {"a": 1, "b": 2}),
]


@pytest.mark.parametrize("handler", _handlers(), ids=lambda f: f.__name__)
def test_arity_agrees_with_python_binding(handler: Any) -> None:
    """The precomputed check accepts exactly the calls Python's own binding accepts: the
    calls themselves, not `inspect.Signature.bind` (which, in Python 3.13.0, binds a
    positional-only name given as a keyword to `**kwargs` where the call fails)."""
    arity = Arity(handler)
    for args, kwargs in CALLS:
        try:
            handler(None, *args, **kwargs)  # the handlers' bodies do nothing
            binds = True
        except TypeError:
            binds = False
        assert arity.fits(args, kwargs) is binds, (handler.__name__, args, kwargs)


def test_handler_without_a_signature_takes_anything() -> None:
    """A handler whose signature Python cannot tell (a builtin such as `type`) is not refused
    by the check; its own call decides."""
    arity = Arity(type)
    assert arity.fits((1, 2, 3), {"x": 1}) and arity.fits((), {})
