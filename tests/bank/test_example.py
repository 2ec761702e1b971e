"""The bank without HTTP: `wes.bank.Bank` on a SQLite node, and examples/bank.py as a script.

Accounts, sessions locking them, atomic transfers, overdrafts ending a session that resumes
from its last save, and persistence.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import wes
from tests.support.programs import ROOT, run_python
from wes.abc import Write
from wes.bank import (
    ACCOUNT,
    MAX_AMOUNT,
    MAX_BALANCE,
    SESSION,
    Account,
    AccountExists,
    AccountLocked,
    AccountNotFound,
    BalanceLimitExceeded,
    Bank,
    InsufficientFunds,
    InvalidRequest,
    build_node,
    session,
)

EXAMPLE = ROOT / "examples" / "bank.py"
NAMES = ["alice", "bob", "carol"]


@asynccontextmanager
async def running(path: Path, **kwargs: Any) -> AsyncIterator[Bank]:
    node = build_node(path / "bank.db", **kwargs)
    async with node:
        yield Bank(node)


async def opened(bank: Bank, user: str, names: list[str], amount: int = 100) -> None:
    for name in names:
        assert await bank.open(user, name) == (True, 0)
        assert await bank.insert(user, name, amount) == amount


async def balances(bank: Bank, user: str, names: list[str]) -> dict[str, int]:
    return {name: await bank.balance(user, name) for name in names}


async def test_open_creates_then_opens(tmp_path: Path) -> None:
    """`open` creates a missing account (stored before it returns), then only opens it."""
    async with running(tmp_path) as bank:
        assert await bank.open("ann", "alice") == (True, 0)
        assert await bank.open("ann", "alice") == (False, 0)
        store = wes.SqliteStore(tmp_path / "bank.db")
        async with store:
            assert "account/alice" in await store.read(["account/alice"])
        assert await bank.accounts("ann") == ["alice"]


async def test_insert_and_withdraw(tmp_path: Path) -> None:
    """Inserting and withdrawing change only the named account and return its balance."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice", "bob"])
        assert await bank.insert("ann", "alice", 50) == 150
        assert await bank.withdraw("ann", "bob", 30) == 70
        assert await balances(bank, "ann", ["alice", "bob"]) == {"alice": 150, "bob": 70}


async def test_transfer_moves_money(tmp_path: Path) -> None:
    """A transfer debits the source and credits the target in one command."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice", "bob"])
        assert await bank.transfer("ann", "alice", "bob", 40) == {"alice": 60, "bob": 140}


async def test_session_locks_its_accounts(tmp_path: Path) -> None:
    """An account in one user's session cannot be opened or changed in another's, but its
    balance can be read; once the session ends it is free."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice"])
        await opened(bank, "eve", ["bob"])
        with pytest.raises(AccountLocked) as caught:
            await bank.open("eve", "alice")
        assert caught.value.account == "alice"
        with pytest.raises(AccountLocked):
            await bank.transfer("eve", "bob", "alice", 1)
        assert await bank.balance("eve", "alice") == 100
        assert await bank.accounts("eve") == ["bob"]  # the failed transfer took nothing
        assert await bank.logout("ann") is True
        assert await bank.logout("ann") is False
        assert await bank.transfer("eve", "bob", "alice", 1) == {"bob": 99, "alice": 101}


async def test_unknown_account(tmp_path: Path) -> None:
    """An account never created is `AccountNotFound`, naming it, whichever side it is on."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice"])
        for call in (
            bank.insert("ann", "ghost", 1),
            bank.withdraw("ann", "ghost", 1),
            bank.transfer("ann", "alice", "ghost", 1),
            bank.transfer("ann", "ghost", "alice", 1),
            bank.balance("ann", "ghost"),
        ):
            with pytest.raises(AccountNotFound) as caught:
                await call
            assert caught.value.account == "ghost"


async def test_overdraft_ends_session_unsaved(tmp_path: Path) -> None:
    """An overdraft raises InsufficientFunds and ends the session, which resumes from its last
    save: every operation that returned before is in it."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice"])
        await bank.insert("ann", "alice", 20)
        with pytest.raises(InsufficientFunds) as caught:
            await bank.withdraw("ann", "alice", 500)
        assert (caught.value.account, caught.value.balance, caught.value.amount) == (
            "alice",
            120,
            500,
        )
        assert await bank.node.status(session("ann")) is None
        assert await bank.balance("ann", "alice") == 120
        assert await bank.withdraw("ann", "alice", 120) == 0


async def test_failed_transfer_credits_nobody(tmp_path: Path) -> None:
    """A transfer whose source is overdrawn leaves both accounts as last saved, even the target
    that was credited before the source raised."""
    async with running(tmp_path) as bank:
        # alice joins the session first, so she handles the broadcast before bob raises.
        await opened(bank, "ann", ["alice", "bob"])
        await bank.transfer("ann", "alice", "bob", 10)
        with pytest.raises(InsufficientFunds):
            await bank.transfer("ann", "bob", "alice", 1000)
        assert await balances(bank, "ann", ["alice", "bob"]) == {"alice": 90, "bob": 110}


async def test_balance_limit(tmp_path: Path) -> None:
    """An insert past MAX_BALANCE raises BalanceLimitExceeded and changes nothing."""
    async with running(tmp_path) as bank:
        node = bank.node
        await node.ensure_channel(session("ann"), wes.create(("account", "rich"), MAX_BALANCE))
        await node.command(session("ann"), "open")
        with pytest.raises(BalanceLimitExceeded):
            await bank.insert("ann", "rich", 1)
        assert await bank.balance("ann", "rich") == MAX_BALANCE


@pytest.mark.parametrize("amount", [0, -5, 1.5, 2.0, True, "5", None, MAX_AMOUNT + 1])
async def test_bad_amount_is_refused(tmp_path: Path, amount: Any) -> None:
    """An amount that is not an int from 1 to MAX_AMOUNT is InvalidRequest; nothing changes
    and the session keeps running."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice", "bob"])
        for call in (
            bank.insert("ann", "alice", amount),
            bank.withdraw("ann", "alice", amount),
            bank.transfer("ann", "alice", "bob", amount),
        ):
            with pytest.raises(InvalidRequest):
                await call
        assert await bank.node.status(session("ann")) is not None
        assert await balances(bank, "ann", ["alice", "bob"]) == {"alice": 100, "bob": 100}


@pytest.mark.parametrize("name", ["", "é", "a b", "a/b", "a" * 65, 5, None, "x\n"])
async def test_bad_names_are_refused(tmp_path: Path, name: Any) -> None:
    """Account names and user ids outside their patterns are InvalidRequest."""
    async with running(tmp_path) as bank:
        with pytest.raises(InvalidRequest):
            await bank.open("ann", name)
        with pytest.raises(InvalidRequest):
            await bank.open(name, "alice")
        with pytest.raises(InvalidRequest):
            await bank.transfer("ann", "alice", "alice", 1)


async def test_create_race_and_account_exists(tmp_path: Path) -> None:
    """Two sessions creating one account at once: one creates it, the other is refused."""
    async with running(tmp_path) as bank:
        results = await asyncio.gather(
            bank.open("ann", "alice"), bank.open("eve", "alice"), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["AccountLocked", "tuple"]
        assert issubclass(AccountExists, wes.bank.BankError)


async def test_money_is_conserved_under_concurrency(tmp_path: Path) -> None:
    """Random concurrent transfers of one user, overdrafts among them, never create or destroy
    money, and each account ends at its start plus the transfers that returned."""
    rng = random.Random(7)
    async with running(tmp_path) as bank:
        await opened(bank, "ann", NAMES)
        expected = dict.fromkeys(NAMES, 100)
        refused = 0

        async def one() -> None:
            nonlocal refused
            source, target = rng.sample(NAMES, 2)
            amount = rng.randint(1, 120)
            try:
                await bank.transfer("ann", source, target, amount)
            except InsufficientFunds:
                refused += 1
                return
            expected[source] -= amount
            expected[target] += amount

        await asyncio.gather(*(one() for _ in range(80)))
        assert await balances(bank, "ann", NAMES) == expected
        assert sum(expected.values()) == 300
        assert refused > 0
        assert len(bank._locks) == 0  # no lock left behind for a user nobody waits on


async def test_a_caller_cancelled_while_waiting_leaves_no_lock(tmp_path: Path) -> None:
    """An operation cancelled while it waits for its user's turn neither runs nor keeps the
    user's lock; the one it waited behind completes."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["a", "b"])
        async with bank._locks.hold("ann"):  # ann's turn is taken: the next caller waits
            waiting = asyncio.create_task(bank.transfer("ann", "a", "b", 5))
            await asyncio.sleep(0)
            assert len(bank._locks) == 1
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert len(bank._locks) == 1  # still held here
        assert len(bank._locks) == 0
        assert await balances(bank, "ann", ["a", "b"]) == {"a": 100, "b": 100}


async def test_idle_session_ends(tmp_path: Path) -> None:
    """A session without operations for idle_timeout seconds ends, unlocking its accounts."""
    async with running(tmp_path, idle_timeout=0.1) as bank:
        await opened(bank, "ann", ["alice"])
        for _ in range(100):
            if await bank.node.status(session("ann")) is None:
                break
            await asyncio.sleep(0.02)
        assert await bank.open("eve", "alice") == (False, 100)


async def test_balances_survive_node_restart(tmp_path: Path) -> None:
    """Balances acknowledged by one node are what a new node on the same file loads."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice", "bob"])
        await bank.transfer("ann", "alice", "bob", 25)
    async with running(tmp_path) as bank:
        assert await balances(bank, "eve", ["alice", "bob"]) == {"alice": 75, "bob": 125}
        assert await bank.login("ann") == []


async def test_acknowledged_commands_are_stored(tmp_path: Path) -> None:
    """With durability="command", an acknowledged transfer is in the store at once."""
    store = wes.SqliteStore(str(tmp_path / "bank.db"))
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice", "bob"])
        await bank.transfer("ann", "alice", "bob", 10)
        async with store:
            found = await store.read(["account/alice", "account/bob"])
        assert {key: wes.JsonCodec().decode(r.data) for key, r in found.items()} == {
            "account/alice": {"balance": 90},
            "account/bob": {"balance": 110},
        }


class CentsAccount(Account):
    """Version 2 of the account; version 1 stored the balance under "cents"."""

    version = 2

    @classmethod
    def migrate(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        return {"balance": state["cents"]}


async def test_balance_at_rest_is_the_stored_actor() -> None:
    """The balance of an account in no session is its stored state as the node's own class
    decodes and migrates it (`node.stored`), read without activating or locking it."""
    store = wes.MemoryStore()
    old = wes.JsonCodec().encode({"cents": 42})
    assert await store.write([[Write("account/alice", old, 1, 1)]]) == [None]
    node = wes.Node(store=store)
    node.actor_type(ACCOUNT, CentsAccount)
    node.channel_type(SESSION, durability="command")
    async with node:
        bank = Bank(node)
        assert await bank.balance("ann", "alice") == 42
        assert await node.status(session("ann")) is None
        with pytest.raises(AccountNotFound):
            await bank.balance("ann", "nobody")
        assert await bank.open("eve", "alice") == (False, 42)  # nobody holds it
        await bank.insert("eve", "alice", 8)
        await bank.logout("eve")
        assert await bank.balance("ann", "alice") == 50
        assert (await store.read(["account/alice"]))["account/alice"].version == 2


class CountedReads:
    """Wraps a node's `read`, counting the reads of each account asked of the node. With
    `stale_once` set, the next read first awaits it, then answers `ActorNotActive`: what a
    node says of an account that a session took in only while the node answered."""

    def __init__(self, node: wes.Node) -> None:
        self.read = node.read
        self.asked: list[str] = []
        self.stale_once: Callable[[], Awaitable[object]] | None = None

    async def __call__(self, actor: Any, name: str, *args: Any) -> Any:
        self.asked.append(actor[1])
        meanwhile, self.stale_once = self.stale_once, None
        if meanwhile is not None:
            await meanwhile()
            raise wes.ActorNotActive(f"actor {actor!r} is in no channel")
        return await self.read(actor, name, *args)


async def test_balance_at_rest_is_not_asked_of_the_node_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a balance read finds an account in no session, later reads go to the store at
    once, without asking the node (where a read of an account at rest raises and catches
    `ActorNotActive`); an account this bank never put in a session is never asked."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice"], amount=30)
        await bank.logout("ann")
        counted = CountedReads(bank.node)
        monkeypatch.setattr(bank.node, "read", counted)
        assert [await bank.balance("eve", "alice") for _ in range(3)] == [30, 30, 30]
        assert counted.asked == ["alice"]
    async with running(tmp_path) as bank:  # a new bank: alice was never in its sessions
        counted = CountedReads(bank.node)
        monkeypatch.setattr(bank.node, "read", counted)
        assert await bank.balance("eve", "alice") == 30
        assert counted.asked == []


async def test_balance_of_an_account_back_in_a_session_is_asked_of_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account read at rest and then taken into a session again is read from its active
    copy again."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice"], amount=30)
        await bank.logout("ann")
        assert await bank.balance("eve", "alice") == 30
        await bank.insert("ann", "alice", 5)
        counted = CountedReads(bank.node)
        monkeypatch.setattr(bank.node, "read", counted)
        assert await bank.balance("eve", "alice") == 35
        assert counted.asked == ["alice"]


async def test_account_taken_in_while_its_balance_is_read_stays_asked_of_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that finds an account at rest after a session took it in again meanwhile
    leaves it known as in a session: the next read asks the node, not the store."""
    async with running(tmp_path) as bank:
        await opened(bank, "ann", ["alice"], amount=30)
        await bank.logout("ann")
        counted = CountedReads(bank.node)
        monkeypatch.setattr(bank.node, "read", counted)

        counted.stale_once = lambda: bank.open("bob", "alice")  # asks the node too
        assert await bank.balance("eve", "alice") == 30  # from the store
        assert await bank.balance("eve", "alice") == 30
        assert counted.asked == ["alice", "alice", "alice"]


def test_account_refuses_bad_opening_balance() -> None:
    """An Account is built with an int balance from 0 to MAX_BALANCE only."""
    assert Account().balance == 0
    bads: tuple[Any, ...] = (-1, MAX_BALANCE + 1, 1.0, True)  # the wrong ones on purpose
    for bad in bads:
        with pytest.raises(InvalidRequest):
            Account(bad)


def run_example(cwd: Path) -> str:
    return run_python(EXAMPLE, cwd)


@pytest.mark.subprocess
def test_example_runs_twice(tmp_path: Path) -> None:
    """examples/bank.py runs as a script, twice in a row on the same wes.db."""
    first = run_example(tmp_path)
    assert "refused" in first and "undone: yes" in first
    assert (tmp_path / "wes.db").exists()
    second = run_example(tmp_path)
    assert "balances persisted" in second and "undone: yes" in second
