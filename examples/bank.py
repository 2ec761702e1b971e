"""The wes bank as a script: accounts as actors, customer sessions as channels.

`wes.bank` holds the bank itself (the `Account` actor, `Bank` with its operations, the HTTP
API that `make run` serves). This script walks through it without HTTP: open accounts, move
money, watch a session lock its accounts, overdraw and see the session resume from its last
save, then restart the node and find what persisted.

Run it with `python examples/bank.py`; it keeps its state in `wes.db` in the working
directory, so a second run finds the balances the first one left.
"""

from __future__ import annotations

import asyncio
import os

import wes
from wes.bank import AccountLocked, Bank, InsufficientFunds, build_node, session

OPENING_BALANCE = 100
NAMES = ["alice", "bob"]


async def balances(bank: Bank, user: str, names: list[str]) -> dict[str, int]:
    """The balance of each account, as `user` sees it."""
    return {name: await bank.balance(user, name) for name in names}


def show(title: str, found: dict[str, int]) -> None:
    accounts = ", ".join(f"{name} {amount}" for name, amount in found.items())
    print(f"  {title:<34} {accounts}   (total {sum(found.values())})")


async def demo(path: str) -> None:
    """Open accounts, move money, overdraw, restart the node and show what persisted."""
    node = build_node(path)
    async with node:
        bank = Bank(node)
        for name in NAMES:
            created, _ = await bank.open("ann", name)
            if created:
                await bank.insert("ann", name, OPENING_BALANCE)
        show(f"opened (new ones hold {OPENING_BALANCE}):", await balances(bank, "ann", NAMES))

        await bank.insert("ann", "alice", 50)
        show("alice inserted 50:", await balances(bank, "ann", NAMES))
        await bank.transfer("ann", "alice", "bob", 30)
        show("alice sent bob 30:", await balances(bank, "ann", NAMES))

        try:
            await bank.open("eve", "bob")
        except AccountLocked:
            print("  eve cannot open bob: his account is locked by ann's session")

        before = await balances(bank, "ann", NAMES)
        too_much = before["bob"] + 1000
        print(f"  bob tries to send alice {too_much}, more than he holds ...")
        try:
            # alice may well have been credited before bob's withdrawal raised: the failed
            # command ends the session unsaved, so that credit is never persisted.
            await bank.transfer("ann", "bob", "alice", too_much)
        except InsufficientFunds as exc:
            print(f"  ... refused: {exc}")
        state = await node.status(session("ann"))
        print(f"  ann's session after the error: {'ended' if state is None else 'running'}")
        after = await balances(bank, "ann", NAMES)
        show("resumed from the last save:", after)
        print(f"  the whole transfer was undone: {'yes' if after == before else 'NO'}")
    print("  node stopped")

    node = build_node(path)
    async with node:
        print("  a new node opens the same file")
        show("balances persisted:", await balances(Bank(node), "ann", NAMES))


def main(path: str = "wes.db") -> None:
    """Run the demo on the SQLite file at `path`."""
    print(f"wes bank {wes.__version__}, keeping its accounts in {path}")
    if os.path.exists(path):
        print("  (the file exists: accounts carry on with the balances of an earlier run)")
    asyncio.run(demo(path))


if __name__ == "__main__":
    main()
