"""The wes bank: bank accounts as actors, customer sessions as channels.

A port of wes_bank, the demo of the Erlang original. Each account is an actor holding its
balance. A customer works in a session channel `("bank_session", user)`; the accounts a session
touches are locked to it, so no other session can change them meanwhile. A command is broadcast
to every account of the session, so each command names the accounts it is meant for and every
account checks its own id. A transfer is one command: the source withdraws and the target
inserts within the same atomic step, so it happens whole or not at all.

Run it with `make run` (or `python examples/bank.py`); it keeps its state in `wes.db` in the
working directory, so a second run finds the balances the first one left.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable

import wes

ACCOUNT = "account"
SESSION = "bank_session"
OPENING_BALANCE = 100


class InsufficientFunds(Exception):
    """A withdrawal or transfer would overdraw an account."""

    def __init__(self, account: str, balance: int, amount: int) -> None:
        super().__init__(f"account {account!r} holds {balance}, cannot withdraw {amount}")
        self.account = account
        self.balance = balance
        self.amount = amount


class Account(wes.Actor):
    """A bank account: its balance, never below zero."""

    def __init__(self, balance: int = 0) -> None:
        self.balance = balance

    @wes.command
    def insert(self, account: str, amount: int) -> None:
        """Put `amount` into `account`."""
        if self._is(account):
            self._insert(amount)

    @wes.command
    def withdraw(self, account: str, amount: int) -> None:
        """Take `amount` out of `account`; overdrawing raises `InsufficientFunds`."""
        if self._is(account):
            self._withdraw(amount)

    @wes.command
    def transfer(self, source: str, target: str, amount: int) -> None:
        """Move `amount` from `source` to `target`, both accounts of this session."""
        if self._is(source):
            self._withdraw(amount)
        if self._is(target):
            self._insert(amount)

    @wes.read("balance")
    def current_balance(self) -> int:
        """The balance now."""
        return self.balance

    def _is(self, account: str) -> bool:
        return self.id[1] == account

    def _insert(self, amount: int) -> None:
        _check_amount(amount)
        self.balance += amount

    def _withdraw(self, amount: int) -> None:
        _check_amount(amount)
        if amount > self.balance:
            # Raising kills the session without saving: nothing of this command persists.
            raise InsufficientFunds(str(self.id[1]), self.balance, amount)
        self.balance -= amount


def _check_amount(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"an amount must be a positive int, not {amount!r}")


def build_node(path: str | os.PathLike[str] = "wes.db") -> wes.Node:
    """A node for the bank, keeping its accounts in the SQLite file at `path`."""
    node = wes.Node(store=wes.SqliteStore(os.fspath(path)))
    node.actor_type(ACCOUNT, Account)
    # Money wants every acknowledged command on disk before the caller hears "done".
    node.channel_type(SESSION, idle_timeout=60.0, durability="command")
    return node


def session(user: str) -> tuple[str, str]:
    """The id of `user`'s session channel."""
    return (SESSION, user)


def account(name: str) -> tuple[str, str]:
    """The id of the account actor `name`."""
    return (ACCOUNT, name)


async def open_accounts(
    node: wes.Node, user: str, names: Iterable[str], opening: int = OPENING_BALANCE
) -> None:
    """Bring the accounts into `user`'s session: existing ones as stored, new ones with
    `opening`.

    A new account reaches the store with the session's first save, which under
    `durability="command"` follows its first successful command: a session that fails
    before that leaves no trace of the accounts it opened.
    """
    specs = [wes.load_or_create(account(name), opening) for name in names]
    await node.ensure_channel(session(user), specs)


async def _join(node: wes.Node, user: str, names: Iterable[str]) -> None:
    # Every account a command names must be in the session, or a transfer would only half run.
    await node.ensure_channel(session(user), [wes.load(account(name)) for name in names])


async def insert(node: wes.Node, user: str, name: str, amount: int) -> None:
    """Put `amount` into account `name` within `user`'s session."""
    await _join(node, user, [name])
    await node.command(session(user), "insert", name, amount)


async def withdraw(node: wes.Node, user: str, name: str, amount: int) -> None:
    """Take `amount` out of account `name` within `user`'s session."""
    await _join(node, user, [name])
    await node.command(session(user), "withdraw", name, amount)


async def transfer(node: wes.Node, user: str, source: str, target: str, amount: int) -> None:
    """Move `amount` from `source` to `target` within `user`'s session, atomically."""
    await _join(node, user, [source, target])
    await node.command(session(user), "transfer", source, target, amount)


async def balances(node: wes.Node, user: str, names: Iterable[str]) -> dict[str, int]:
    """The balance of each account, read within `user`'s session."""
    names = list(names)
    await _join(node, user, names)
    return {name: await node.read(account(name), "balance") for name in names}


def _show(title: str, found: dict[str, int]) -> None:
    accounts = ", ".join(f"{name} {amount}" for name, amount in found.items())
    print(f"  {title:<34} {accounts}   (total {sum(found.values())})")


def main(path: str = "wes.db") -> None:
    """Run the demo on the SQLite file at `path`."""
    print(f"wes bank, keeping its accounts in {path}")
    if os.path.exists(path):
        print("  (the file exists: accounts carry on with the balances of an earlier run)")
    asyncio.run(demo(path))


async def demo(path: str) -> None:
    """Open accounts, move money, overdraw, restart the node and show what persisted."""
    names = ["alice", "bob"]

    node = build_node(path)
    async with node:
        await open_accounts(node, "ann", names)
        _show(f"opened (new ones hold {OPENING_BALANCE}):", await balances(node, "ann", names))

        await insert(node, "ann", "alice", 50)
        _show("alice inserted 50:", await balances(node, "ann", names))
        await transfer(node, "ann", "alice", "bob", 30)
        _show("alice sent bob 30:", await balances(node, "ann", names))

        try:
            await open_accounts(node, "eve", ["bob"])
        except wes.ActorAlreadyLocked:
            print("  eve cannot open bob: his account is locked by ann's session")

        before = await balances(node, "ann", names)
        too_much = before["bob"] + 1000
        print(f"  bob tries to send alice {too_much}, more than he holds ...")
        try:
            # alice may well have been credited before bob's withdrawal raised: the failed
            # command kills the session unsaved, so that credit is never persisted.
            await transfer(node, "ann", "bob", "alice", too_much)
        except InsufficientFunds as exc:
            print(f"  ... refused: {exc}")
        state = await node.status(session("ann"))
        print(f"  ann's session after the error: {'stopped' if state is None else 'running'}")
        after = await balances(node, "ann", names)
        _show("resumed from the last save:", after)
        print(f"  the whole transfer was undone: {'yes' if after == before else 'NO'}")
    print("  node stopped")

    node = build_node(path)
    async with node:
        print("  a new node opens the same file")
        _show("balances persisted:", await balances(node, "ann", names))


if __name__ == "__main__":
    main()
