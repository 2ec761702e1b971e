"""`SqliteRegistry` beyond the shared registry contract: one file shared by instances (and so
by processes), waiting on and failing with a busy file, tokens that survive the clock stepping
back, and two nodes fenced by one file."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import wes
from tests.support.claims import actor_claim
from wes._backends import sqlite_registry
from wes.abc import ClaimKind, Ident, NameTaken

LONG = 30.0
CH_A: tuple[ClaimKind, Ident] = ("channel", ("session", "a"))
AC_X: tuple[ClaimKind, Ident] = ("actor", ("account", "x"))


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Hold the file's write lock from another connection (as another process would) for a
    while; returns once the lock is held."""
    locked = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    locked.wait()
    return thread


async def test_two_instances_share_claims_and_tokens(tmp_path: Path) -> None:
    """Two registries on one file see each other's claims, releases and renewals, and their
    tokens for a name interleave strictly increasing."""
    path = tmp_path / "reg.db"
    async with wes.SqliteRegistry(path) as one, wes.SqliteRegistry(path) as two:
        [ch, ac] = await one.claim([CH_A, AC_X], "node-1", LONG)
        assert await two.holder(*CH_A) == "node-1"
        with pytest.raises(NameTaken) as info:
            await two.claim([AC_X], ("session", "b"), LONG)
        assert info.value.holder == "node-1"
        assert await two.renew([ch, ac]) == [True, True]  # same file, same claims
        await two.release([ac])
        assert await one.holder(*AC_X) is None
        assert await one.renew([ac]) == [False]
        tokens = [ch.token]
        await one.release([ch])
        for reg in [two, one, two, two, one]:
            [claim] = await reg.claim([CH_A], repr(reg), LONG)
            tokens.append(claim.token)
            assert await (one if reg is two else two).holder(*CH_A) == repr(reg)
            await reg.release([claim])
        assert all(a < b for a, b in itertools.pairwise(tokens)), tokens


async def test_holders_round_trip_exactly(tmp_path: Path) -> None:
    """Holders come back as they went in: tuples stay tuples, 1 and "1" stay apart, unicode
    and nesting survive."""
    holders = ["node", ("s", 1), ("s", "1"), ("ß", "日本"), ("a", ("b", 2)), "", 7, None]
    async with wes.SqliteRegistry(tmp_path / "reg.db") as reg:
        for i, holder in enumerate(holders):
            await reg.claim([("actor", ("t", i))], holder, LONG)
        for i, holder in enumerate(holders):
            got = await reg.holder("actor", ("t", i))
            assert got == holder and type(got) is type(holder)


async def test_unicode_and_odd_idents_are_names(tmp_path: Path) -> None:
    """Idents with quotes, separators, unicode and large ints are distinct, exact names."""
    idents: list[Ident] = [("a", 'x"y'), ("a", "x,y"), ("a,x", "y"), ("ß", "\u2603"), ("a", 2**62)]
    async with wes.SqliteRegistry(tmp_path / "reg.db") as reg:
        for i, ident in enumerate(idents):
            await reg.claim([("channel", ident)], f"n{i}", LONG)
        for i, ident in enumerate(idents):
            assert await reg.holder("channel", ident) == f"n{i}"


async def test_tokens_never_go_back_when_the_clock_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock stepped back does not lower tokens, in the same or in a new instance: the file
    keeps the last token handed out."""
    path = tmp_path / "reg.db"
    async with wes.SqliteRegistry(path) as reg:
        [first] = await reg.claim([CH_A], "n", LONG)
        await reg.release([first])
    monkeypatch.setattr(time, "time_ns", lambda: first.token - 10**12)  # the registry's clock
    async with wes.SqliteRegistry(path) as reg:
        [second] = await reg.claim([CH_A], "n", LONG)
        await reg.release([second])
        _, third = await reg.claim([AC_X, CH_A], "n", LONG)
    assert first.token < second.token < third.token


async def test_released_and_expired_claims_leave_no_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file keeps no row per released name, and expired claims are swept by later claims;
    tokens keep rising regardless."""
    monkeypatch.setattr(sqlite_registry, "_PURGE_EVERY", 0.0)
    path = tmp_path / "reg.db"
    async with wes.SqliteRegistry(path) as reg:
        claims = await reg.claim([("actor", ("t", i)) for i in range(50)], "n", LONG)
        await reg.release(claims)
        await reg.claim([("actor", ("u", i)) for i in range(50)], "n", 0.05)
        await asyncio.sleep(0.1)
        [last] = await reg.claim([CH_A], "n", LONG)
        assert last.token > max(c.token for c in claims)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT kind, ident FROM wes_claims").fetchall() == [
            ("channel", '["session","a"]')
        ]
    finally:
        conn.close()


async def test_claim_expires_by_the_wall_clock(tmp_path: Path) -> None:
    """`Claim.expires` is a wall-clock deadline, the clock every process of the host shares."""
    async with wes.SqliteRegistry(tmp_path / "reg.db") as reg:
        before = time.time()
        [claim] = await reg.claim([CH_A], "n", 5.0)
        assert before + 5.0 <= claim.expires <= time.time() + 5.0


async def test_busy_file_makes_calls_wait_off_the_event_loop(tmp_path: Path) -> None:
    """While another connection holds the write lock, a claim waits for it (it does not fail)
    and the event loop keeps running meanwhile."""
    path = tmp_path / "reg.db"
    async with wes.SqliteRegistry(path) as reg:
        await reg.holder(*CH_A)  # creates the file and its tables
        thread = hold_write_lock(path, 0.4)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.get_running_loop().create_task(tick())
        started = time.time()
        [claim] = await reg.claim([CH_A], "n", LONG)
        waited = time.time() - started
        ticker.cancel()
        thread.join()
        assert waited >= 0.3
        assert ticks >= 10, "the event loop was blocked while the claim waited"
        assert claim.expires >= started + 0.3 + LONG  # the lease counts from the lock


async def test_first_open_waits_for_a_writer_of_a_new_file(tmp_path: Path) -> None:
    """Opening a file that another connection is writing before anyone switched it to WAL
    waits for the writer: SQLite itself answers that switch with SQLITE_BUSY at once (as it
    did, rarely, to processes starting together on a new file)."""
    path = tmp_path / "reg.db"
    thread = hold_write_lock(path, 0.3)
    started = time.monotonic()
    async with wes.SqliteRegistry(path) as reg:
        [claim] = await reg.claim([CH_A], "n", LONG)
        assert time.monotonic() - started >= 0.2
        assert await reg.holder(*CH_A) == "n"
    thread.join()
    assert claim.holder == "n"


async def test_first_open_past_busy_timeout_is_registry_unavailable(tmp_path: Path) -> None:
    """A writer of a new file that outlasts `busy_timeout` fails the first call with
    `RegistryUnavailable`; the next call, once the writer is gone, opens the file."""
    path = tmp_path / "reg.db"
    thread = hold_write_lock(path, 0.4)
    async with wes.SqliteRegistry(path, busy_timeout=0.05) as reg:
        try:
            with pytest.raises(wes.RegistryUnavailable, match="database is locked") as info:
                await reg.claim([CH_A], "n", LONG)
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        finally:
            thread.join()
        await reg.claim([CH_A], "n", LONG)
        assert await reg.holder(*CH_A) == "n"


async def test_busy_timeout_exceeded_is_registry_unavailable(tmp_path: Path) -> None:
    """A write lock held longer than `busy_timeout` fails the call with `RegistryUnavailable`
    carrying the SQLite error, and claims nothing."""
    path = tmp_path / "reg.db"
    async with wes.SqliteRegistry(path, busy_timeout=0.05) as reg:
        [claim] = await reg.claim([AC_X], "n", LONG)
        thread = hold_write_lock(path, 0.5)
        try:
            with pytest.raises(wes.RegistryUnavailable) as info:
                await reg.claim([CH_A], "n", LONG)
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            with pytest.raises(wes.RegistryUnavailable):
                await reg.renew([claim])
            with pytest.raises(wes.RegistryUnavailable):
                await reg.release([claim])
        finally:
            thread.join()
        assert await reg.holder(*CH_A) is None
        assert await reg.renew([claim]) == [True]


async def test_unusable_file_is_registry_unavailable(tmp_path: Path) -> None:
    """A file that cannot be opened gives `RegistryUnavailable` from every operation."""
    async with wes.SqliteRegistry(tmp_path / "missing" / "reg.db") as reg:
        with pytest.raises(wes.RegistryUnavailable) as info:
            await reg.claim([CH_A], "n", LONG)
        assert isinstance(info.value.__cause__, sqlite3.Error)
        with pytest.raises(wes.RegistryUnavailable):
            await reg.holder(*CH_A)


async def test_closed_registry_is_unavailable(tmp_path: Path) -> None:
    """After `aclose`, operations raise `RegistryUnavailable` instead of reopening the file."""
    reg = wes.SqliteRegistry(tmp_path / "reg.db")
    await reg.claim([CH_A], "n", LONG)
    await reg.aclose()
    with pytest.raises(wes.RegistryUnavailable):
        await reg.holder(*CH_A)


async def test_renewal_of_many_claims_is_one_transaction(tmp_path: Path) -> None:
    """A batch renewal takes the file's write lock once, however many claims it carries."""
    async with wes.SqliteRegistry(tmp_path / "reg.db") as reg:
        claims = await reg.claim([("actor", ("t", i)) for i in range(200)], "n", LONG)
        statements: list[str] = []
        assert reg._file._conn is not None
        reg._file._conn.set_trace_callback(statements.append)
        assert await reg.renew(claims) == [True] * 200
        reg._file._conn.set_trace_callback(None)
        assert statements.count("BEGIN IMMEDIATE") == 1
        assert statements.count("COMMIT") == 1


def test_bad_busy_timeout_is_invalid_config(tmp_path: Path) -> None:
    """A negative or non-numeric `busy_timeout` is refused when the registry is built."""
    for bad in (-1, "1", None, True):
        with pytest.raises(wes.InvalidConfig):
            wes.SqliteRegistry(tmp_path / "reg.db", busy_timeout=bad)  # type: ignore[arg-type]


class Account(wes.Actor):
    def __init__(self) -> None:
        self.balance = 0

    @wes.command
    def deposit(self, n: int) -> None:
        self.balance += n

    @wes.read
    def current(self) -> int:
        return self.balance


def bank_node(tmp_path: Path, address: str) -> wes.Node:
    node = wes.Node(
        store=wes.SqliteStore(tmp_path / "state.db"),
        registry=wes.SqliteRegistry(tmp_path / "reg.db"),
        address=address,
    )
    node.actor_type("account", Account)
    node.channel_type("session")
    return node


async def test_two_nodes_on_one_file_exclude_each_other(tmp_path: Path) -> None:
    """Two nodes sharing the file cannot both run a channel or lock an actor; once the first
    stops, the second takes over with its saved state."""
    async with bank_node(tmp_path, "node-1") as one, bank_node(tmp_path, "node-2") as two:
        await one.create_channel(("session", "s1"), wes.create(("account", "a")))
        await one.command(("session", "s1"), "deposit", 5)
        with pytest.raises(wes.ChannelAlreadyStarted, match="node-1"):
            await two.ensure_channel(("session", "s1"))
        with pytest.raises(wes.ActorAlreadyLocked):
            await two.create_channel(("session", "s2"), wes.load(("account", "a")))
        assert await two.status(("session", "s2")) is None
        await one.stop_channel(("session", "s1"))
        await two.ensure_channel(("session", "s2"), wes.load(("account", "a")))
        assert await two.read(("account", "a"), "current") == 5
        assert await two.registry.holder("actor", actor_claim(("account", "a"))) == (
            "session",
            "s2",
        )


async def test_aclose_with_calls_in_flight(tmp_path: Path) -> None:
    """Calls in flight when the registry closes finish before the file is closed, later calls
    fail with `RegistryUnavailable`, and the connection ends closed."""
    reg = wes.SqliteRegistry(tmp_path / "reg.db")
    names: list[tuple[ClaimKind, Ident]] = [("actor", ("t", i)) for i in range(20)]
    pending = [asyncio.ensure_future(reg.claim([name], "n", LONG)) for name in names]
    await asyncio.sleep(0)
    await reg.aclose()
    assert all(len(claims) == 1 for claims in await asyncio.gather(*pending))
    with pytest.raises(wes.RegistryUnavailable):
        await reg.claim([CH_A], "n", LONG)
    assert reg._file._conn is None
