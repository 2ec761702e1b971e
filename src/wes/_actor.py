"""Actors: the base class, and the `command` / `read` decorators that mark handlers."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from types import MethodType
from typing import Any, ClassVar, Protocol, Self, TypeVar, overload

from ._abc import Ident
from ._arguments import Arity, arities
from ._errors import InvalidName


class Host(Protocol):
    """The channel an actor is in, as the actor sees it (`_channel.Channel` is the one kind;
    naming it by protocol keeps this module below the channel's)."""

    id: Ident

    def request_stop(self) -> None: ...
    def request_leave(self, actor: Actor) -> None: ...
    def set_timer(self, actor: Actor, name: str, seconds: float) -> None: ...
    def cancel_timer(self, actor: Actor, name: str) -> None: ...


F = TypeVar("F", bound=Callable[..., Any])

_COMMAND = "_wes_command_name"
_READ = "_wes_read_name"


def _mark(attr: str, kind: str, arg: Any) -> Any:
    if isinstance(arg, str):

        def named(func: F) -> F:
            setattr(func, attr, arg)
            return func

        return named
    if callable(arg):
        setattr(arg, attr, arg.__name__)
        return arg
    raise InvalidName(f"@wes.{kind} takes a handler or a name (str), not {arg!r}")


@overload
def command(arg: F, /) -> F: ...
@overload
def command(arg: str, /) -> Callable[[F], F]: ...
def command(arg: Any, /) -> Any:
    """Mark a method as a command handler named after it, or, as `@wes.command("name")`,
    under that name. Plain `def` handlers must not block; `async def` ones hold the
    channel's turn while they run."""
    return _mark(_COMMAND, "command", arg)


@overload
def read(arg: F, /) -> F: ...
@overload
def read(arg: str, /) -> Callable[[F], F]: ...
def read(arg: Any, /) -> Any:
    """Mark a method as a read handler named after it, or, as `@wes.read("name")`, under
    that name. A read returns a view and must not change state."""
    return _mark(_READ, "read", arg)


class _Fixed:
    # A method of `Actor` that an instance attribute cannot replace: assigning one raises
    # `InvalidName` naming the clash. A data descriptor, so that no per-instance check has to
    # read `__dict__`, which would cost the instance its fast inline attribute layout.

    __slots__ = ("__doc__", "__wrapped__", "name")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.__wrapped__ = func
        self.__doc__ = func.__doc__
        self.name = func.__name__

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        return self.__wrapped__ if obj is None else MethodType(self.__wrapped__, obj)

    def __set__(self, obj: Any, value: Any) -> None:
        raise _clash(self.name, f"{type(obj).__qualname__} attribute")


def _fixed(func: F) -> F:
    return _Fixed(func)  # type: ignore[return-value]  # a method to callers and to mypy


class Actor:
    """Base class of actors: isolated state plus the logic that acts on it.

    Mark command handlers with `@wes.command` and read handlers with `@wes.read`. Inside a
    handler `self.id` and `self.channel` name the actor and its channel. Override `key`,
    `to_state`, `from_state`, `should_save`, `version` and `migrate` to control persistence.
    """

    # Internal fields live in slots, out of `__dict__`, so the default `to_state` sees only
    # the user's attributes and each actor stays small.
    __slots__ = ("__dict__", "_wes_ch", "_wes_claim", "_wes_dirty", "_wes_id")

    _wes_commands: ClassVar[dict[str, Callable[..., Any]]] = {}
    _wes_async_commands: ClassVar[dict[str, Callable[..., Any]]] = {}
    _wes_reads: ClassVar[dict[str, Callable[..., Any]]] = {}
    _wes_async_reads: ClassVar[dict[str, Callable[..., Any]]] = {}
    _wes_async_timer: ClassVar[bool] = False
    _wes_activates: ClassVar[bool] = False
    _wes_deactivates: ClassVar[bool] = False
    # By command or read name, what binding arguments to its handler needs (`_arguments`).
    _wes_command_arity: ClassVar[dict[str, Arity]] = {}
    _wes_read_arity: ClassVar[dict[str, Arity]] = {}

    version: ClassVar[int] = 1
    """The version of the state this class writes; stored with every saved state."""

    expected_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """Exceptions this actor's handlers raise to refuse a request (an overdraft, say). The
    channel still stops unsaved and the caller still gets the exception, but logs report it
    as expected (at INFO, without a traceback) rather than as a crash."""

    _wes_id: Ident
    _wes_ch: Host | None
    _wes_claim: Any
    _wes_dirty: bool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_names(cls)
        tables: dict[str, dict[str, Callable[..., Any]]] = {table: {} for table in _TABLES}
        by_attr: dict[str, list[tuple[str, str]]] = {}  # attribute -> its (table, name)s
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                # An override replaces what the attribute registered before, marked or not.
                for table, name in by_attr.pop(attr, ()):
                    tables[table].pop(name, None)
                marks = _marks(value)
                for table, name in marks:
                    for other in _KINDS[_KIND_OF[table]]:
                        tables[other].pop(name, None)
                    tables[table][name] = value
                if marks:
                    by_attr[attr] = marks
        cls._wes_commands = tables["command"]
        cls._wes_async_commands = tables["async_command"]
        cls._wes_reads = tables["read"]
        cls._wes_async_reads = tables["async_read"]
        cls._wes_async_timer = inspect.iscoroutinefunction(cls.on_timer)
        cls._wes_command_arity = arities(cls._wes_commands, cls._wes_async_commands)
        cls._wes_read_arity = arities(cls._wes_reads, cls._wes_async_reads)
        # Calling a hook nobody overrides costs a call per actor on every start and stop.
        cls._wes_activates = cls.on_activate is not Actor.on_activate
        cls._wes_deactivates = cls.on_deactivate is not Actor.on_deactivate

    # -- identity -------------------------------------------------------------------------

    @property
    def id(self) -> Ident:
        """This actor's id, `(actor_type, name)`."""
        return self._wes_id

    @id.setter
    def id(self, value: Any) -> None:
        raise _clash("id", f"{type(self).__qualname__} attribute")

    @property
    def channel(self) -> Ident | None:
        """The id of the channel this actor is in, or `None` outside one."""
        ch = getattr(self, "_wes_ch", None)
        return None if ch is None else ch.id

    @channel.setter
    def channel(self, value: Any) -> None:
        raise _clash("channel", f"{type(self).__qualname__} attribute")

    # -- talking to the channel -----------------------------------------------------------

    @_fixed
    def stop_channel(self) -> None:
        """Ask the channel to stop normally (saving) after the current command."""
        self._channel_or_raise("stop_channel").request_stop()

    @_fixed
    def leave(self) -> None:
        """After the current command, the channel saves all its actors in one write and
        this actor leaves it."""
        self._channel_or_raise("leave").request_leave(self)

    @_fixed
    def set_timer(self, name: str, seconds: float) -> None:
        """Call `on_timer(name)` every `seconds`, serially with commands; replaces a timer
        of the same name."""
        if not isinstance(name, str):
            raise TypeError(f"timer name must be a str, not {type(name).__name__}")
        if not isinstance(seconds, int | float) or not seconds > 0:
            raise ValueError(f"timer {name!r}: seconds must be a positive number, not {seconds!r}")
        self._channel_or_raise("set_timer").set_timer(self, name, float(seconds))

    @_fixed
    def cancel_timer(self, name: str) -> None:
        """Cancel the timer `name`; cancelling a timer that is not set does nothing."""
        self._channel_or_raise("cancel_timer").cancel_timer(self, name)

    def on_timer(self, name: str) -> Any:
        """Called when the timer `name` fires. May be `async def` in subclasses."""

    # -- lifecycle hooks ------------------------------------------------------------------

    def on_activate(self) -> Any:
        """Called in the channel's turn right after the actor was created or loaded into a
        channel, before anything else reaches it: re-arm timers and rebuild attributes that
        are not stored here. An exception fails the spec and nothing starts. May be
        `async def` in subclasses."""

    def on_deactivate(self, reason: str) -> Any:
        """Called in the channel's turn before the final save when the actor leaves its
        channel normally; `reason` is `"normal"`, `"idle"` or `"leave"`. Changes it makes are
        saved. Not called when the channel dies by an exception or a lost lease; an exception
        here kills the channel like a command's. May be `async def` in subclasses."""

    def _channel_or_raise(self, what: str) -> Host:
        ch: Host | None = getattr(self, "_wes_ch", None)
        if ch is None:
            raise RuntimeError(f"{what}() needs the actor to be in a running channel")
        return ch

    # -- persistence hooks ----------------------------------------------------------------

    @classmethod
    def key(cls, name: str | int) -> str:
        """The storage key of the actor `name` of this class; see the node for the default."""
        raise NotImplementedError  # marker: the node uses f"{actor_type}/{name}"

    def to_state(self) -> dict[str, Any]:
        """The state to persist; by default the instance's public attributes."""
        attrs = vars(self)
        for name in attrs:  # a plain loop: every periodic save calls this, per actor
            if name.startswith("_"):
                return {k: v for k, v in attrs.items() if not k.startswith("_")}
        return attrs.copy()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild an actor from a state `to_state` returned, without calling `__init__`."""
        actor = cls.__new__(cls)
        actor.__dict__.update(state)
        return actor

    def should_save(self) -> bool:
        """Whether the channel persists this actor; by default always."""
        return True

    @classmethod
    def migrate(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring a stored state of an older `from_version` up to `cls.version`."""
        raise ValueError(
            f"{cls.__qualname__} has no migrate() for stored version {from_version} "
            f"(current version {cls.version})"
        )


# The handler tables of a class, by kind: a name is a command or a read, sync or async.
_KINDS = {"command": ("command", "async_command"), "read": ("read", "async_read")}
_KIND_OF = {table: kind for kind, tables in _KINDS.items() for table in tables}
_TABLES = tuple(_KIND_OF)


def _marks(value: Any) -> list[tuple[str, str]]:
    """The handler tables (and names) a class attribute belongs in."""
    if not callable(value):
        return []
    is_async = inspect.iscoroutinefunction(value)
    marks = []
    name = getattr(value, _COMMAND, None)
    if isinstance(name, str):
        marks.append(("async_command" if is_async else "command", name))
    name = getattr(value, _READ, None)
    if isinstance(name, str):
        marks.append(("async_read" if is_async else "read", name))
    return marks


def has_own_key(cls: type[Actor]) -> bool:
    """Whether the actor class overrides `key`."""
    return cls.key.__func__ is not Actor.key.__func__  # type: ignore[attr-defined]


# The members of `Actor` a subclass may override; every other member is fixed.
_HOOKS = frozenset(
    {
        "expected_errors",
        "from_state",
        "key",
        "migrate",
        "on_activate",
        "on_deactivate",
        "on_timer",
        "should_save",
        "to_state",
        "version",
    }
)
MEMBERS = frozenset(name for name in vars(Actor) if not name.startswith("__"))
"""The names of `Actor`'s members: a subclass may define only the hooks among them."""


def _describe(attr: str) -> str:
    member = vars(Actor).get(attr)
    if isinstance(member, property):
        return "a property"
    if attr in _HOOKS:
        return "a hook to override, not to mark"
    return "a method" if callable(member) or isinstance(member, _Fixed) else "an attribute"


def _clash(attr: str, what: str) -> InvalidName:
    return InvalidName(
        f"{what} {attr!r} would replace wes.Actor.{attr} ({_describe(attr)}): rename it "
        f"(the names of wes.Actor's members are reserved)"
    )


def _check_names(cls: type[Actor]) -> None:
    """Refuse class attributes that would replace a member of `Actor`: a handler method named
    like any member, and any other attribute named like a member that is not a hook."""
    for attr, value in vars(cls).items():
        if attr.startswith("__"):
            continue
        marks = _marks(value)
        if marks and (attr in MEMBERS or attr.startswith("_wes_")):
            kind, name = marks[0]
            decorator = _KIND_OF[kind]
            raise InvalidName(
                f"{cls.__qualname__}.{attr} is marked @wes.{decorator} but would replace "
                f"wes.Actor.{attr} ({_describe(attr)}): rename the method and keep the "
                f"{decorator} name with @wes.{decorator}({name!r})"
            )
        if (attr in MEMBERS and attr not in _HOOKS) or attr.startswith("_wes_"):
            raise _clash(attr, f"{cls.__qualname__} attribute")


_EXPECTED = "_wes_expected"  # set on an exception that an actor class declared expected


def note_expected(exc: BaseException, actors: Sequence[Actor]) -> None:
    """Mark `exc` as expected if the class of one of `actors` lists its type in
    `expected_errors`, so that stats sinks can tell a refusal from a crash."""
    for actor in actors:
        if actor.expected_errors and isinstance(exc, actor.expected_errors):
            setattr(exc, _EXPECTED, True)  # every exception has a __dict__, even with slots
            return


def is_expected(exc: BaseException) -> bool:
    """Whether a channel stopped by `exc` was refusing a request (see `expected_errors`)."""
    return getattr(exc, _EXPECTED, False) is True
