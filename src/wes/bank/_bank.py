"""`Bank`: the bank's operations on a node, one session channel per user, and `build_node`.

How a session locks accounts: every operation names the accounts it touches, and before its
command runs the session loads each of them (`wes.load`, with `ensure_channel`): an account
already in the session stays, one open in another session fails the operation with
`AccountLocked`, an unknown one with `AccountNotFound`. An account stays locked to the
session until the session ends: after `idle_timeout` seconds without a request, at
`logout`, when the node stops, or when a command fails (an overdraft), which ends it unsaved.
Reading a balance takes no lock: it reads the account's active copy where this bank put it
in a session (on this node, or on another of its cluster), or else its stored state. Both are
its last acknowledged balance: under `durability="command"` every command is in the store
before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Sequence
from typing import Any

from wes import (
    ActorAlreadyExists,
    ActorAlreadyLocked,
    ActorNotActive,
    ActorNotFound,
    ChannelAlreadyStarted,
    ChannelNotStarted,
    ChannelRef,
    Node,
    Spec,
    create,
    load,
)
from wes.abc import Registry, Stats, Store, Transport

from ._account import (
    ACCOUNT,
    SESSION,
    Account,
    AccountExists,
    AccountLocked,
    AccountNotFound,
    BankError,
    InvalidRequest,
    SessionElsewhere,
    account,
    check_amount,
    check_name,
    check_user,
    session,
)

ATTEMPTS = 5
"""How often an operation starts over when its session stopped under it (an idle timeout or
a lost lease between loading the accounts and running the command). It never ran then."""


class SessionUnavailable(BankError):
    """The session kept stopping under the operation, which never ran; try again."""


def build_node(
    store: Store | str | os.PathLike[str] | None = None,
    registry: Registry | None = None,
    stats: Stats | None = None,
    *,
    idle_timeout: float | None = 60.0,
    lease: float = 30.0,
    transport: Transport | None = None,
) -> Node:
    """A node for the bank: accounts persisted after every command, sessions that end after
    `idle_timeout` seconds without a request.

    Args:
        store: a store, or the path of a SQLite file; default `wes.db`.
        registry: default an in-process registry.
        stats: default none.
        idle_timeout: seconds without a request after which a session ends, saving and
            unlocking its accounts.
        lease: seconds a session's registry claims last unless renewed.
        transport: makes the node one of a cluster (with a shared registry and store):
            any node answers any user, and a session runs on the node that started it.
    """
    if store is None or isinstance(store, str | os.PathLike):
        from wes import SqliteStore

        store = SqliteStore(os.fspath(store if store is not None else "wes.db"))
    node = Node(store=store, registry=registry, stats=stats, transport=transport)
    node.actor_type(ACCOUNT, Account)
    for error in Account.expected_errors:  # an account's refusals, from another node
        node.error_type(error)
    # Money wants every acknowledged command on disk before the caller hears "done".
    node.channel_type(SESSION, idle_timeout=idle_timeout, lease=lease, durability="command")
    return node


class Bank:
    """The bank's operations on a node built by `build_node` (or registering `Account` as
    `"account"` and a `"bank_session"` channel type with `durability="command"`).

    The operations of one user run one at a time (a lock per user in this process), so the
    accounts loaded for a command are still in the session when the command runs.

    Raises, besides `InvalidRequest` for a bad user id, name or amount: `AccountNotFound`,
    `AccountExists`, `AccountLocked`, `SessionElsewhere`, `InsufficientFunds`,
    `BalanceLimitExceeded`, `SessionUnavailable`, and wes's `StoreUnavailable`,
    `RegistryUnavailable`, `LeaseLost`, `StaleToken` or `NodeNotRunning` when something
    outside broke or the node is stopping.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self._locks = _KeyedLocks()
        # The accounts this bank put in sessions, which may still be there (name -> when it
        # last saw one there): only their balances are asked of the node first, as asking
        # for an account at rest costs an `ActorNotActive` raised and caught on every read.
        # One leaves when a read finds it at rest; it holds no more names than the store.
        self._in_sessions: dict[str, int] = {}
        self._seen = itertools.count()

    # -- sessions -------------------------------------------------------------------------

    async def login(self, user: str) -> list[str]:
        """Start `user`'s session (if it is not running); return the accounts it holds."""
        user = check_user(user)
        async with self._locks.hold(user):
            ref = await self._ensure(user, [])
            return [str(ident[1]) for ident in ref.actors]

    async def logout(self, user: str) -> bool:
        """End `user`'s session, saving and unlocking its accounts; whether one was running."""
        user = check_user(user)
        async with self._locks.hold(user):
            try:
                await self.node.stop_channel(session(user))
            except ChannelNotStarted:
                return False
            return True

    async def accounts(self, user: str) -> list[str]:
        """The accounts `user`'s session holds now (none when it is not running)."""
        return sorted(await self._members(check_user(user)))

    # -- operations -----------------------------------------------------------------------

    async def open(self, user: str, name: str, opening: int = 0) -> tuple[bool, int]:
        """Bring account `name` into `user`'s session, creating it with `opening` when it does
        not exist; return whether it was created, and its balance.

        A created account is in the store when this returns.
        """
        user, name = check_user(user), check_name(name)
        async with self._locks.hold(user):
            for _ in range(ATTEMPTS):
                if name in await self._members(user):
                    return False, await self._balance(name)
                try:
                    await self._ensure(user, [load(account(name))], name)
                    continue  # it is a member now: answer from the top
                except AccountNotFound:
                    pass
                await self._ensure(user, [create(account(name), opening)], name)
                try:
                    # A new actor is first written at its channel's next save; with
                    # durability="command" a command is that save.
                    await self.node.command(session(user), "open")
                except ChannelNotStarted:
                    continue  # the session stopped before the save: start over
                return True, opening
        raise SessionUnavailable(f"the session of user {user!r} kept stopping; try again")

    async def insert(self, user: str, name: str, amount: int) -> int:
        """Put `amount` into account `name`; return its new balance."""
        user, name, amount = check_user(user), check_name(name), check_amount(amount)
        async with self._locks.hold(user):
            await self._command(user, [name], "insert", name, amount)
            return await self._balance(name)

    async def withdraw(self, user: str, name: str, amount: int) -> int:
        """Take `amount` out of account `name`; return its new balance. Overdrawing raises
        `InsufficientFunds` and ends the session unsaved: it resumes from its last save."""
        user, name, amount = check_user(user), check_name(name), check_amount(amount)
        async with self._locks.hold(user):
            await self._command(user, [name], "withdraw", name, amount)
            return await self._balance(name)

    async def transfer(self, user: str, source: str, target: str, amount: int) -> dict[str, int]:
        """Move `amount` from `source` to `target` atomically; return both new balances."""
        user, source, target = check_user(user), check_name(source), check_name(target)
        amount = check_amount(amount)
        if source == target:
            raise InvalidRequest(f"a transfer needs two different accounts, not {source!r} twice")
        async with self._locks.hold(user):
            await self._command(user, [source, target], "transfer", source, target, amount)
            return {source: await self._balance(source), target: await self._balance(target)}

    async def balance(self, user: str, name: str) -> int:
        """The balance of account `name`, as last acknowledged: its active copy's where this
        bank put it in a session, else its stored one (see the module's docstring). Takes no
        lock, so it works for an account open in any session."""
        check_user(user)
        name = check_name(name)
        if name not in self._in_sessions:  # at rest, unless another bank's session holds it
            return await self._stored_balance(name)
        return await self._balance(name)

    # -- the steps ------------------------------------------------------------------------

    async def _members(self, user: str) -> set[str]:
        ref = await self.node.status(session(user))
        return set() if ref is None else _names(ref)

    async def _ensure(self, user: str, specs: Sequence[Spec], name: str = "") -> ChannelRef:
        """`ensure_channel`, with wes's errors told in the bank's words (`name` is the one
        account the specs are about)."""
        try:
            ref = await self.node.ensure_channel(session(user), list(specs))
        except ActorNotFound:
            raise AccountNotFound(name) from None
        except ActorAlreadyExists:
            raise AccountExists(name) from None
        except ActorAlreadyLocked:
            raise AccountLocked(name) from None
        except ChannelAlreadyStarted:
            raise SessionElsewhere(user) from None
        seen = next(self._seen)
        for ident in ref.actors:
            self._in_sessions[str(ident[1])] = seen
        return ref

    async def _command(self, user: str, names: list[str], command: str, *args: Any) -> None:
        for _ in range(ATTEMPTS):
            # One `status` per attempt: after a load, `ensure_channel`'s answer says who is in.
            members = await self._members(user)
            for name in names:  # one at a time, so an error names the very account
                if name not in members:
                    ref = await self._ensure(user, [load(account(name))], name)
                    members = _names(ref)
            if not all(name in members for name in names):
                continue  # the session stopped while the accounts loaded
            try:
                await self.node.command(session(user), command, *args)
            except ChannelNotStarted:
                continue  # it stopped before the command ran, so the command never ran
            return
        raise SessionUnavailable(f"the session of user {user!r} kept stopping; try again")

    async def _balance(self, name: str) -> int:
        """The balance of `name`: its active copy's, or else its stored one."""
        seen = self._in_sessions.get(name)
        try:
            balance: int = await self.node.read(account(name), "balance")
        except ActorNotActive:
            # In no session now: read it from the store from now on, unless a session took
            # it in again while the node answered.
            if seen is not None and self._in_sessions.get(name) == seen:
                del self._in_sessions[name]
            return await self._stored_balance(name)
        return balance

    async def _stored_balance(self, name: str) -> int:
        stored = await self.node.stored(account(name))
        if stored is None:
            raise AccountNotFound(name)
        assert isinstance(stored, Account), stored  # the node registers Account as "account"
        return stored.balance


def _names(ref: ChannelRef) -> set[str]:
    """The account names of a session's members."""
    return {str(ident[1]) for ident in ref.actors}


class _KeyedLocks:
    """One lock per key, dropped when nobody holds or awaits it: random user ids must not
    grow memory."""

    def __init__(self) -> None:
        self._locks: dict[str, _Entry] = {}

    def hold(self, key: str) -> _Hold:
        """`async with locks.hold(key):` runs its body holding the lock of `key`."""
        return _Hold(self._locks, key)

    def __len__(self) -> int:
        return len(self._locks)


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holding or waiting


class _Hold:
    """A class, not an `asynccontextmanager`: every request takes one, and a generator-based
    context manager costs several times more."""

    __slots__ = ("_entry", "_key", "_locks")

    def __init__(self, locks: dict[str, _Entry], key: str) -> None:
        self._locks, self._key = locks, key

    async def __aenter__(self) -> None:
        entry = self._locks.get(self._key)
        if entry is None:
            entry = self._locks[self._key] = _Entry()
        self._entry = entry
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting: it holds nothing
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._entry.lock.release()
        self._leave()

    def _leave(self) -> None:
        entry = self._entry
        entry.users -= 1
        if not entry.users:
            del self._locks[self._key]
