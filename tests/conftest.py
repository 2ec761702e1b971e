"""Shared test set-up: `async def` tests run on a fresh event loop each, without plugins;
markers come from the fixtures a test uses.

Where to add a test: the package mirrors the library, one module per concept.

| what the test checks                                | where (under tests/)            |
| --------------------------------------------------- | ------------------------------- |
| an actor's handlers, state, reads, `node.stored`    | core/test_actor.py              |
| arguments checked before a handler runs             | core/test_arguments.py          |
| a channel: turns, broadcast, leave, stop, idle      | core/test_channel_semantics.py  |
| create/ensure/stop/status, claims of this node      | core/test_node_ops.py           |
| load/create specs                                   | core/test_specs.py              |
| identities, storage keys, key exclusion             | core/test_identities.py         |
| on_activate/on_deactivate hooks                     | core/test_lifecycle.py          |
| timers; the timer wheel                             | core/test_timers.py, test_wheel |
| periodic saves and the save sweep                   | core/test_save_sweep.py         |
| durability modes, leases, fencing in one process    | core/test_durability.py         |
| the renewal sweep's slices and ring                 | core/test_leases.py             |
| the JSON codec and what it promises                 | core/test_codec.py              |
| the errors raised and their messages                | core/test_errors.py             |
| the public names (`wes`, `wes.abc`)                 | core/test_public_api.py         |
| what every store must do                            | backends/test_store_contract.py |
| what every registry must do                         | backends/test_registry_contract |
| one backend's own behaviour                         | backends/test_<backend>.py      |
| claims contended by several processes               | backends/test_contention.py     |
| stats events, MemoryStats                           | observability/test_stats.py     |
| logging; Prometheus; several sinks at once          | observability/test_<sink>.py    |
| the bank: service, live page, CLI, example          | bank/                           |
| a cluster: routing, the wire, errors that travel    | cluster/test_<concept>.py       |
| a cluster of processes over real NATS               | cluster/test_nats_*.py          |
| a whole program: crashes, frozen processes, README  | system/                         |

Helpers live in one place, `tests/support/`, imported as `from tests.support.X import Y`:
`nodes.node_of` (the usual node), `counters.Counter` (the usual actor; subclass it for more
handlers), `delegating.DelegatingStore`/`DelegatingRegistry` (override the call you watch or
break), `waiting.wait_until`, `recorder.Recorder` (a stats sink keeping every event),
`claims.actor_claim`, `servers` (real Redis/PostgreSQL/NATS), `cluster.cluster_of` (nodes
sharing a `MemoryTransport`), `programs` (a module run as a worker)
and `backends` (the `backend` fixture over every store and registry).

Markers, registered in pyproject.toml, say what a test needs beyond this process: `redis`,
`postgres`, `nats` (a server), `subprocess` (a program of its own), `browser` (Chromium). The server
markers are set here from the fixtures a test uses (`redis_url`, `postgres_dsn`, the
`backend` kinds, ...); a test that starts a process without one of these markers fails, so
`pytest -m "not redis and not postgres and not nats and not subprocess and not browser"` runs
the fast core alone, in this process.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.servers import NatsServer, nats_server, postgres_server, redis_server

pytest_plugins = ["tests.support.backends"]  # the `backend` fixture over stores and registries

TEST_TIMEOUT = 30.0  # seconds; a hung async test fails instead of blocking the suite

# Fixtures that start or need a server or a program, and the marker a test using one gets.
# (A process a module- or session-scoped fixture starts is not seen by the guard below, which
# is set up per test: such a fixture belongs here.)
FIXTURE_MARKERS = {
    "redis_url": "redis",
    "redis_box": "redis",
    "postgres_dsn": "postgres",
    "postgres_box": "postgres",
    "nats_url": "nats",
    "nats_box": "nats",
    "bank": "subprocess",  # bank/test_service.py: `wes bank serve` for the module
}
# Markers under which a test may start processes (servers, workers, Chromium).
PROCESS_MARKERS = ("redis", "postgres", "nats", "subprocess", "browser")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run coroutine test functions with `asyncio.run`, under a timeout."""
    func: Callable[..., Any] = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def bounded() -> None:
        await asyncio.wait_for(func(**kwargs), TEST_TIMEOUT)

    asyncio.run(bounded())
    return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server or a program: by its fixtures, or by a
    parameter naming the server's kind (`backend`'s kinds, a contract's `store`, a part of
    "redis-postgres"), so the markers cannot drift from what the tests do."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        needs = {FIXTURE_MARKERS[name] for name in item.fixturenames if name in FIXTURE_MARKERS}
        callspec = getattr(item, "callspec", None)
        for param in callspec.params.values() if callspec is not None else ():
            kinds = param if isinstance(param, tuple) else str(param).split("-")
            needs |= {kind for kind in ("redis", "postgres") if kind in kinds}
        for marker in sorted(needs):
            item.add_marker(marker)


@pytest.fixture(autouse=True)
def _processes_only_when_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test without a process marker cannot start a process (it would slip into the fast
    core run): `subprocess.Popen`, which `subprocess.run` and asyncio use, refuses."""
    if any(request.node.get_closest_marker(name) for name in PROCESS_MARKERS):
        return
    test = request.node.nodeid

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{test} starts a process: mark it {' or '.join(PROCESS_MARKERS)}")

    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server for the whole test session."""
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server for the whole test session."""
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def nats_box() -> Iterator[NatsServer]:
    """A real NATS server for the whole test session."""
    with nats_server() as server:
        yield server


@pytest.fixture
def nats_url(nats_box: NatsServer) -> str:
    """The URL of the session's NATS server."""
    return nats_box.url
