"""The public surface: `wes.__all__`, the error tree, `wes.abc`, ChannelRef and the backends'
resource protocol."""

from __future__ import annotations

import ast
import dataclasses
import importlib.resources
from collections.abc import Callable
from pathlib import Path

import pytest

import wes
import wes.abc

ERRORS = [
    "WesError",
    "UsageError",
    "InvalidId",
    "InvalidName",
    "InvalidArguments",
    "InvalidSpec",
    "InvalidConfig",
    "UnknownChannelType",
    "UnknownActorType",
    "NodeNotRunning",
    "ChannelAlreadyStarted",
    "ChannelNotStarted",
    "ActorAlreadyExists",
    "ActorNotFound",
    "ActorAlreadyLocked",
    "ActorAlreadyInChannel",
    "ActorNotActive",
    "UnknownCommand",
    "UnknownRead",
    "ReentrantCall",
    "StateNotLoadable",
    "StateNotEncodable",
    "StaleToken",
    "LeaseLost",
    "StoreUnavailable",
    "RegistryUnavailable",
]

USAGE_ERRORS = [
    "InvalidId",
    "InvalidName",
    "InvalidArguments",
    "InvalidSpec",
    "InvalidConfig",
    "UnknownChannelType",
    "UnknownActorType",
    "NodeNotRunning",
]

PUBLIC = [
    "Actor",
    "ChannelRef",
    "JsonCodec",
    "LoggingStats",
    "MemoryRegistry",
    "MemoryStats",
    "MemoryStore",
    "MultiStats",
    "Node",
    "PostgresStore",
    "PrometheusStats",
    "RedisRegistry",
    "RedisStore",
    "SqliteRegistry",
    "SqliteStore",
    "command",
    "configure_logging",
    "create",
    "load",
    "load_or_create",
    "read",
    *ERRORS,
]

ABC = ["Claim", "Codec", "NameTaken", "Record", "Registry", "Stats", "Store", "Write"]


def test_all_is_sorted_and_every_name_is_exported() -> None:
    """`wes.__all__` is sorted, free of duplicates, and every name in it exists on `wes`."""
    assert list(wes.__all__) == sorted(wes.__all__)
    assert len(set(wes.__all__)) == len(wes.__all__)
    missing = [name for name in wes.__all__ if not hasattr(wes, name)]
    assert missing == []


def test_documented_names_are_in_all() -> None:
    """Every name DESIGN.md and the lead's decisions make public is in `wes.__all__`."""
    assert sorted(set(PUBLIC) - set(wes.__all__)) == []


def test_star_import_gives_exactly_all() -> None:
    """`from wes import *` binds exactly the names of `wes.__all__`."""
    namespace: dict[str, object] = {}
    exec("from wes import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(wes.__all__)


def test_abc_exports_the_interfaces() -> None:
    """`wes.abc` exports the backend interfaces with a sorted `__all__`."""
    assert list(wes.abc.__all__) == sorted(wes.abc.__all__)
    for name in ABC:
        assert name in wes.abc.__all__
        assert hasattr(wes.abc, name)


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_derives_from_wes_error(name: str) -> None:
    """Every error wes defines is a `wes.WesError` subclass."""
    error = getattr(wes, name)
    assert isinstance(error, type)
    assert issubclass(error, wes.WesError)
    assert issubclass(error, Exception)


@pytest.mark.parametrize("name", USAGE_ERRORS)
def test_usage_errors_derive_from_usage_error(name: str) -> None:
    """Errors about asking for something wrong derive from `wes.UsageError`."""
    assert issubclass(getattr(wes, name), wes.UsageError)


def test_reentrant_call_is_a_wes_error() -> None:
    """`wes.ReentrantCall` is a `wes.WesError` subclass."""
    assert issubclass(wes.ReentrantCall, wes.WesError)


def test_channel_ref_is_a_frozen_dataclass() -> None:
    """`wes.ChannelRef` is a frozen dataclass with fields id, owner and actors."""
    assert dataclasses.is_dataclass(wes.ChannelRef)
    assert [f.name for f in dataclasses.fields(wes.ChannelRef)] == ["id", "owner", "actors"]
    ref = wes.ChannelRef(("session", "s"), "node", (("counter", "a"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.id = ("session", "t")  # type: ignore[misc]
    assert ref == wes.ChannelRef(("session", "s"), "node", (("counter", "a"),))


def test_backends_implement_the_interfaces(tmp_path: Path) -> None:
    """The shipped backends implement the `wes.abc` interfaces."""
    assert isinstance(wes.MemoryRegistry(), wes.abc.Registry)
    assert isinstance(wes.MemoryStore(), wes.abc.Store)
    assert isinstance(wes.SqliteStore(str(tmp_path / "x.db")), wes.abc.Store)
    assert isinstance(wes.MemoryStats(), wes.abc.Stats)
    assert isinstance(wes.LoggingStats(), wes.abc.Stats)
    assert isinstance(wes.JsonCodec(), wes.abc.Codec)


@pytest.mark.parametrize("kind", ["MemoryRegistry", "MemoryStore", "SqliteStore"])
async def test_backends_close_idempotently_and_work_as_async_with(
    kind: str, tmp_path: Path
) -> None:
    """Backends work as `async with` and closing twice silently succeeds."""
    make: Callable[[], wes.abc.AsyncResource] = {
        "MemoryRegistry": wes.MemoryRegistry,
        "MemoryStore": wes.MemoryStore,
        "SqliteStore": lambda: wes.SqliteStore(str(tmp_path / "x.db")),
    }[kind]
    backend = make()
    async with backend as entered:
        assert entered is backend
    await backend.aclose()
    await make().aclose()


def test_incomplete_backend_fails_at_construction() -> None:
    """A backend missing an abstract method cannot be constructed."""

    class Half(wes.abc.Store):
        async def read(self, keys):  # type: ignore[no-untyped-def]
            return {}

    with pytest.raises(TypeError):
        Half()  # type: ignore[abstract]


def test_json_codec_round_trips_a_state() -> None:
    """`wes.JsonCodec` encodes a state to bytes and decodes it back."""
    codec = wes.JsonCodec()
    state = {"value": 3, "items": ["a", "b"], "nested": {"x": None, "y": 1.5}}
    data = codec.encode(state)
    assert isinstance(data, bytes)
    assert codec.decode(data) == state


def test_json_codec_refuses_what_it_cannot_encode() -> None:
    """`wes.JsonCodec` raises on a state that is not JSON (a set)."""
    with pytest.raises(Exception):  # noqa: B017 - the codec may raise any exception
        wes.JsonCodec().encode({"bad": {1, 2}})


def test_package_is_typed() -> None:
    """The package ships a `py.typed` marker."""
    assert importlib.resources.files("wes").joinpath("py.typed").is_file()


def test_bank_uses_only_the_public_surface() -> None:
    """The bank service, like any app, imports only `wes` and `wes.abc`, never a private
    module of the library."""
    bank = Path(wes.__file__).parent / "bank"
    private = []
    for path in sorted(bank.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level > 1 or (node.level == 0 and module.startswith("wes._")):
                    private.append(f"{path.name}: from {'.' * node.level}{module}")
            elif isinstance(node, ast.Import):
                private += [
                    f"{path.name}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("wes._")
                ]
    assert private == []
