"""How errors travel between nodes: rebuilt from fixed tables, never evaluated."""

from __future__ import annotations

from typing import Any

import pytest

import wes
from wes._errors import ChannelNotHere
from wes._travel import error_from_wire, error_to_wire
from wes._wire import decode_answer, encode_error_body


class Overdrawn(Exception):
    """An actor's own exception class, which a caller may register."""


class Picky(Exception):
    def __init__(self, amount: int, account: str) -> None:
        super().__init__(f"{account}: {amount}")


class Mine(wes.ChannelNotStarted):
    """A user's subclass of a wes error."""


def travel(exc: BaseException, registered: dict[str, type[BaseException]] | None = None) -> Any:
    """`exc` raised remotely, sent as JSON, and rebuilt at the caller."""
    try:
        raise exc
    except BaseException as raised:
        answer = decode_answer(encode_error_body(error_to_wire(raised)))
    assert answer.error is not None
    return error_from_wire(answer.error, registered or {}, "n0")


@pytest.mark.parametrize(
    "exc",
    [
        wes.ChannelNotStarted("channel ('session', 's1') is not running"),
        wes.StateNotEncodable("cannot encode ('counter', 'a')"),
        wes.InvalidArguments("bad args"),
        wes.ReentrantCall("loop"),
    ],
)
def test_a_wes_error_arrives_as_its_own_class_with_its_message(exc: wes.WesError) -> None:
    got = travel(exc)
    assert type(got) is type(exc)
    assert str(got) == str(exc)


def test_a_not_here_error_from_a_handler_arrives_as_its_public_base() -> None:
    got = travel(ChannelNotHere(("session", "x"), "channel ('session', 'x') stopped"))
    assert type(got) is wes.ChannelNotStarted


def test_a_builtin_exception_arrives_as_itself_rebuilt_from_its_args() -> None:
    got = travel(KeyError("k", 2))
    assert type(got) is KeyError
    assert got.args == ("k", 2)


def test_a_rebuilt_exception_carries_the_remote_traceback_as_a_note() -> None:
    got = travel(ValueError("negative"))
    assert "remote traceback, from node n0" in got.__notes__[0]
    assert "ValueError: negative" in got.__notes__[0]


def test_a_registered_class_arrives_as_itself() -> None:
    registered: dict[str, type[BaseException]] = {f"{__name__}.Overdrawn": Overdrawn}
    got = travel(Overdrawn("alice", 5), registered)
    assert type(got) is Overdrawn
    assert got.args == ("alice", 5)


def test_an_unregistered_class_arrives_as_remote_error_with_its_qualified_name() -> None:
    got = travel(Overdrawn("alice is short"))
    assert type(got) is wes.RemoteError
    assert got.type_name == f"{__name__}.Overdrawn"
    assert got.message == "alice is short"
    assert "Overdrawn: alice is short" in got.__notes__[0]


def test_a_registered_class_that_cannot_be_rebuilt_from_its_args_is_a_remote_error() -> None:
    got = travel(Picky(5, "bob"), {f"{__name__}.Picky": Picky})
    assert type(got) is wes.RemoteError
    assert got.message == "bob: 5"


def test_a_builtin_with_args_json_cannot_carry_is_a_remote_error() -> None:
    got = travel(ValueError({1, 2}))
    assert type(got) is wes.RemoteError
    assert got.type_name == "builtins.ValueError"


@pytest.mark.parametrize(
    "type_name", ["builtins.SystemExit", "builtins.KeyboardInterrupt", "os.system"]
)
def test_only_exceptions_are_ever_rebuilt_by_name(type_name: str) -> None:
    wire = {"kind": "exception", "type": type_name, "args": ["rm -rf /"], "message": "x"}
    got = error_from_wire(wire, {}, "n0")
    assert type(got) is wes.RemoteError
    assert got.type_name == type_name


def test_an_unknown_wes_error_name_is_a_remote_error() -> None:
    got = error_from_wire({"kind": "wes", "type": "Exploded", "message": "m"}, {}, "n0")
    assert type(got) is wes.RemoteError


def test_a_users_subclass_of_a_wes_error_arrives_as_its_wes_base_unless_registered() -> None:
    assert type(travel(Mine("m"))) is wes.ChannelNotStarted
    assert type(travel(Mine("m"), {f"{__name__}.Mine": Mine})) is Mine


def test_a_remote_error_passing_through_a_node_keeps_the_original_type() -> None:
    once = travel(Overdrawn("short"))
    twice = travel(once)
    assert type(twice) is wes.RemoteError
    assert (twice.type_name, twice.message) == (f"{__name__}.Overdrawn", "short")


def test_error_type_takes_only_exception_classes() -> None:
    node = wes.Node(wes.MemoryStore(), transport=wes.MemoryTransport())
    with pytest.raises(wes.InvalidConfig, match="Exception subclass"):
        node.error_type(int)  # type: ignore[arg-type]
    with pytest.raises(wes.InvalidConfig, match="Exception subclass"):
        node.error_type(SystemExit)
    node.error_type(Overdrawn)
