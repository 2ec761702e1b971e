"""The bank's domain: accounts as actors, customer sessions as channels, and its rules.

A port of wes_bank, the demo of the Erlang original. Each account is an actor holding its
balance, an `int`. A command is broadcast to every account of a session, so each command
names the accounts it is meant for and every account checks its own id. A transfer is one
command: the source withdraws and the target inserts within the same atomic step, so it
happens whole or not at all.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from wes import Actor, command, read

ACCOUNT = "account"
"""The actor type of accounts: an account named `a` is the actor `("account", "a")`."""

SESSION = "bank_session"
"""The channel type of sessions: user `u` works in the channel `("bank_session", "u")`."""

MAX_AMOUNT = 10**15
"""The largest amount one insert, withdrawal or transfer may move."""

MAX_BALANCE = 2**53 - 1
"""The largest balance an account may hold: every balance stays exact as a JavaScript number,
which is what the live page and most JSON clients parse it into."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What an account name must fully match: 1 to 64 ASCII letters, digits, `_` or `-`."""

USER_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
"""What a user id must fully match: 1 to 64 ASCII letters, digits, `_`, `.`, `@` or `-`."""


class BankError(Exception):
    """Root of the bank's own errors (they are an actor's or the caller's, never wes's).

    Each keeps its constructor's arguments as its `args` (and builds its message in
    `__str__`), so a cluster node rebuilds it from them when it comes from another node
    (`Node.error_type`), as pickle would."""


class InvalidRequest(BankError, ValueError):
    """A user id, account name or amount that can never be valid; nothing was done."""


class AccountNotFound(BankError):
    """The account was never created (or its creation was never acknowledged)."""

    def __init__(self, account: str) -> None:
        super().__init__(account)
        self.account = account

    def __str__(self) -> str:
        return f"account {self.account!r} does not exist"


class AccountExists(BankError):
    """An account of that name was created meanwhile by another session."""

    def __init__(self, account: str) -> None:
        super().__init__(account)
        self.account = account

    def __str__(self) -> str:
        return f"account {self.account!r} already exists"


class AccountLocked(BankError):
    """The account is open in another user's session, which locks it until it ends."""

    def __init__(self, account: str) -> None:
        super().__init__(account)
        self.account = account

    def __str__(self) -> str:
        return (
            f"account {self.account!r} is open in another session; it is free again once "
            f"that session ends"
        )


class SessionElsewhere(BankError):
    """The user's session runs on another node that shares this node's registry."""

    def __init__(self, user: str) -> None:
        super().__init__(user)
        self.user = user

    def __str__(self) -> str:
        return f"the session of user {self.user!r} is open on another node"


class InsufficientFunds(BankError):
    """A withdrawal or transfer would overdraw an account."""

    def __init__(self, account: str, balance: int, amount: int) -> None:
        super().__init__(account, balance, amount)
        self.account = account
        self.balance = balance
        self.amount = amount

    def __str__(self) -> str:
        return f"account {self.account!r} holds {self.balance}, cannot withdraw {self.amount}"


class BalanceLimitExceeded(BankError):
    """An insert or transfer would take a balance above `MAX_BALANCE`."""

    def __init__(self, account: str, balance: int, amount: int) -> None:
        super().__init__(account, balance, amount)
        self.account = account
        self.balance = balance
        self.amount = amount

    def __str__(self) -> str:
        return (
            f"account {self.account!r} holds {self.balance}; adding {self.amount} would "
            f"exceed the largest balance, {MAX_BALANCE}"
        )


AMOUNT_RULE = f"an amount must be from 1 to {MAX_AMOUNT}"
"""What `check_amount` says of an amount out of range (the HTTP app says it of huge ones)."""


def check_amount(amount: Any) -> int:
    """`amount` if it is an `int` (not a `bool`) from 1 to `MAX_AMOUNT`, else `InvalidRequest`."""
    if type(amount) is not int:
        raise InvalidRequest(f"an amount must be an integer, not {_short(amount)}")
    if not 1 <= amount <= MAX_AMOUNT:
        raise InvalidRequest(f"{AMOUNT_RULE}, not {_short(amount)}")
    return amount


def check_name(name: Any) -> str:
    """`name` if it is a valid account name (`NAME_PATTERN`), else `InvalidRequest`."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            f"an account name is 1 to 64 ASCII letters, digits, '_' or '-', not {_short(name)}"
        )
    return name


def check_user(user: Any) -> str:
    """`user` if it is a valid user id (`USER_PATTERN`), else `InvalidRequest`."""
    if not isinstance(user, str) or not USER_PATTERN.fullmatch(user):
        raise InvalidRequest(
            f"a user id is 1 to 64 ASCII letters, digits, '_', '.', '@' or '-', not {_short(user)}"
        )
    return user


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "a huge int"
    return text if len(text) <= 80 else text[:77] + "..."


def session(user: str) -> tuple[str, str]:
    """The id of `user`'s session channel."""
    return (SESSION, user)


def account(name: str) -> tuple[str, str]:
    """The id of the account actor `name`."""
    return (ACCOUNT, name)


class Account(Actor):
    """A bank account: its balance, never below zero nor above `MAX_BALANCE`."""

    # The bank's refusals: the session still ends unsaved and the caller gets the exception,
    # but logs report them as refusals (INFO, no traceback), not as crashes. `InvalidRequest`
    # only reaches a handler from a caller that skipped `Bank`'s checks.
    expected_errors: ClassVar[tuple[type[BaseException], ...]] = (
        InsufficientFunds,
        BalanceLimitExceeded,
        InvalidRequest,
    )

    def __init__(self, balance: int = 0) -> None:
        if type(balance) is not int or not 0 <= balance <= MAX_BALANCE:
            raise InvalidRequest(f"an opening balance must be from 0 to {MAX_BALANCE}")
        self.balance = balance

    @command("open")
    def opened(self) -> None:
        """Change nothing; a session sends it after adding a new account, so that the account
        reaches the store before the caller hears it was created."""

    @command
    def insert(self, account: str, amount: int) -> None:
        """Put `amount` into `account`."""
        if self._is(account):
            self._insert(amount)

    @command
    def withdraw(self, account: str, amount: int) -> None:
        """Take `amount` out of `account`; overdrawing raises `InsufficientFunds`."""
        if self._is(account):
            self._withdraw(amount)

    @command
    def transfer(self, source: str, target: str, amount: int) -> None:
        """Move `amount` from `source` to `target`, both accounts of this session."""
        if self._is(source):
            self._withdraw(amount)
        if self._is(target):
            self._insert(amount)

    @read("balance")
    def current_balance(self) -> int:
        """The balance now."""
        return self.balance

    def _is(self, account: str) -> bool:
        return self.id[1] == account

    def _insert(self, amount: int) -> None:
        check_amount(amount)
        if self.balance + amount > MAX_BALANCE:
            raise BalanceLimitExceeded(str(self.id[1]), self.balance, amount)
        self.balance += amount

    def _withdraw(self, amount: int) -> None:
        check_amount(amount)
        if amount > self.balance:
            # Raising kills the session without saving: nothing of this command persists.
            raise InsufficientFunds(str(self.id[1]), self.balance, amount)
        self.balance -= amount
