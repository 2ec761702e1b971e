"""The bank example: accounts, sessions, atomic transfers and persistence."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import wes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import bank  # noqa: E402 - importable only once examples/ is on the path

NAMES = ["alice", "bob", "carol"]


@asynccontextmanager
async def running(path: Path) -> AsyncIterator[wes.Node]:
    node = bank.build_node(path / "bank.db")
    async with node:
        yield node


async def test_insert_and_withdraw(tmp_path: Path) -> None:
    """Inserting and withdrawing change only the named account's balance."""
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice", "bob"])
        await bank.insert(node, "ann", "alice", 50)
        await bank.withdraw(node, "ann", "bob", 30)
        assert await bank.balances(node, "ann", ["alice", "bob"]) == {"alice": 150, "bob": 70}


async def test_transfer_moves_money(tmp_path: Path) -> None:
    """A transfer debits the source and credits the target in one command."""
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice", "bob"])
        await bank.transfer(node, "ann", "alice", "bob", 40)
        assert await bank.balances(node, "ann", ["alice", "bob"]) == {"alice": 60, "bob": 140}


async def test_session_locks_its_accounts(tmp_path: Path) -> None:
    """An account in one user's session cannot be opened in another's."""
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice"])
        with pytest.raises(wes.ActorAlreadyLocked):
            await bank.open_accounts(node, "eve", ["alice"])
        assert await node.status(bank.session("eve")) is None


async def test_overdraft_kills_session_unsaved(tmp_path: Path) -> None:
    """An overdraft raises InsufficientFunds and stops the session, which resumes from its last
    save."""
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice"])
        await bank.insert(node, "ann", "alice", 20)
        with pytest.raises(bank.InsufficientFunds) as caught:
            await bank.withdraw(node, "ann", "alice", 500)
        assert (caught.value.account, caught.value.balance, caught.value.amount) == (
            "alice",
            120,
            500,
        )
        assert await node.status(bank.session("ann")) is None
        assert await bank.balances(node, "ann", ["alice"]) == {"alice": 120}


async def test_failed_transfer_credits_nobody(tmp_path: Path) -> None:
    """A transfer whose source is overdrawn leaves both accounts as last saved, even the target
    that was credited before the source raised."""
    async with running(tmp_path) as node:
        # alice joins the session first, so she handles the broadcast before bob raises.
        await bank.open_accounts(node, "ann", ["alice", "bob"])
        await bank.transfer(node, "ann", "alice", "bob", 10)
        with pytest.raises(bank.InsufficientFunds):
            await bank.transfer(node, "ann", "bob", "alice", 1000)
        assert await bank.balances(node, "ann", ["alice", "bob"]) == {"alice": 90, "bob": 110}


async def test_bad_amount_is_refused(tmp_path: Path) -> None:
    """A non-positive amount raises ValueError and changes nothing."""
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice"])
        await bank.insert(node, "ann", "alice", 5)
        with pytest.raises(ValueError):
            await bank.insert(node, "ann", "alice", -5)
        assert await bank.balances(node, "ann", ["alice"]) == {"alice": 105}


async def test_accounts_of_a_session_that_never_saved_are_gone(tmp_path: Path) -> None:
    """Accounts opened in a session whose first command fails were never stored, so they are
    gone with it."""
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice"])
        with pytest.raises(bank.InsufficientFunds):
            await bank.withdraw(node, "ann", "alice", 500)
        with pytest.raises(wes.ActorNotFound):
            await bank.balances(node, "ann", ["alice"])


async def test_money_is_conserved(tmp_path: Path) -> None:
    """Random transfers, overdrafts among them, never create or destroy money."""
    rng = random.Random(7)
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", NAMES)
        refused = 0
        for _ in range(60):
            source, target = rng.sample(NAMES, 2)
            try:
                await bank.transfer(node, "ann", source, target, rng.randint(1, 120))
            except bank.InsufficientFunds:
                refused += 1
            assert sum((await bank.balances(node, "ann", NAMES)).values()) == 300
        assert refused > 0


async def test_balances_survive_node_restart(tmp_path: Path) -> None:
    """Balances acknowledged by one node are what a new node on the same file loads."""
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice", "bob"])
        await bank.transfer(node, "ann", "alice", "bob", 25)
    async with running(tmp_path) as node:
        assert await bank.balances(node, "ann", ["alice", "bob"]) == {"alice": 75, "bob": 125}


async def test_acknowledged_commands_are_stored(tmp_path: Path) -> None:
    """With durability="command", an acknowledged transfer is in the store before the session
    stops."""
    store = wes.SqliteStore(str(tmp_path / "bank.db"))
    async with running(tmp_path) as node:
        await bank.open_accounts(node, "ann", ["alice", "bob"])
        await bank.transfer(node, "ann", "alice", "bob", 10)
        async with store:
            found = await store.read(["account/alice", "account/bob"])
        assert {key: wes.JsonCodec().decode(r.data) for key, r in found.items()} == {
            "account/alice": {"balance": 90},
            "account/bob": {"balance": 110},
        }


def run_example(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "bank.py")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_example_runs_twice(tmp_path: Path) -> None:
    """examples/bank.py runs as a script, twice in a row on the same wes.db."""
    first = run_example(tmp_path)
    assert "refused" in first
    assert (tmp_path / "wes.db").exists()
    second = run_example(tmp_path)
    assert "balances persisted" in second
