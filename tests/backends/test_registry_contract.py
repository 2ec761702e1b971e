"""The `wes.abc.Registry` contract, run against every registry implementation.

A new backend joins the suite with one line in `REGISTRIES`. A factory gets the test's
`tmp_path`, so two instances made by it share whatever a shared backend shares (a file, a server).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest

import wes
from wes.abc import Claim, ClaimKind, Ident, NameTaken, Registry

# name -> factory(tmp_path, *fixtures) -> a registry instance. Later backends are one line
# each; a factory's parameters after the first name the fixtures it needs (a server's URL).
REGISTRIES: dict[str, Callable[..., Registry]] = {
    "memory": lambda tmp: wes.MemoryRegistry(),
    "sqlite": lambda tmp: wes.SqliteRegistry(tmp / "registry.db"),
    "redis": lambda tmp, redis_url: wes.RedisRegistry(redis_url, prefix=f"wes-test:{tmp}:"),
}

LEASE = 0.2  # short lease for expiry tests, seconds
LONG = 30.0  # a lease that never runs out during a test

Name = tuple[ClaimKind, Ident]
CH_A: Name = ("channel", ("session", "a"))
CH_B: Name = ("channel", ("session", "b"))
AC_X: Name = ("actor", ("account", "x"))
AC_Y: Name = ("actor", ("account", "y"))
AC_Z: Name = ("actor", ("account", "z"))


@pytest.fixture(params=sorted(REGISTRIES))
def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Registry]:
    """Makes registry instances of one implementation, sharing the test's backing place."""
    factory = REGISTRIES[request.param]
    names = list(inspect.signature(factory).parameters)[1:]
    needs = [request.getfixturevalue(name) for name in names]
    return lambda: factory(tmp_path, *needs)


@pytest.fixture
def registry(make_registry: Callable[[], Registry]) -> Registry:
    """A fresh registry of each implementation; each test closes it with `async with`."""
    return make_registry()


async def expired(registry: Registry, name: Name) -> None:
    """Wait until nobody holds `name` (within 3 s)."""
    timeout = 3.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await registry.holder(*name) is not None:
        assert loop.time() < deadline, f"{name} still held after {timeout}s"
        await asyncio.sleep(0.01)


# --- claim ------------------------------------------------------------------------------------


async def test_claim_returns_one_claim_per_name(registry: Registry) -> None:
    """A claim returns, in order, a `Claim` per name with its kind, ident, holder and lease."""
    async with registry:
        claims = await registry.claim([CH_A, AC_X, AC_Y], "node-1", LONG)
        assert [(c.kind, c.ident) for c in claims] == [CH_A, AC_X, AC_Y]
        assert all(isinstance(c, Claim) for c in claims)
        assert all(c.holder == "node-1" and c.lease == LONG for c in claims)
        assert all(isinstance(c.token, int) for c in claims)


async def test_holder_reports_who_holds_a_name(registry: Registry) -> None:
    """`holder` gives a channel's node address and an actor's channel id; None when free."""
    async with registry:
        assert await registry.holder(*CH_A) is None
        await registry.claim([CH_A], "node-1", LONG)
        await registry.claim([AC_X], ("session", "a"), LONG)
        assert await registry.holder(*CH_A) == "node-1"
        assert await registry.holder(*AC_X) == ("session", "a")
        assert await registry.holder(*AC_Y) is None


async def test_claim_conflict_raises_name_taken_naming_it(registry: Registry) -> None:
    """A claim of a held name raises `NameTaken` with that name's kind, ident and holder."""
    async with registry:
        await registry.claim([AC_X], ("session", "a"), LONG)
        with pytest.raises(NameTaken) as info:
            await registry.claim([AC_Y, AC_X], ("session", "b"), LONG)
        assert info.value.kind == "actor"
        assert info.value.ident == ("account", "x")
        assert info.value.holder == ("session", "a")


async def test_claim_is_all_or_nothing(registry: Registry) -> None:
    """When one name is taken, none of the other names of the claim is held afterwards."""
    async with registry:
        await registry.claim([AC_Y], "other", LONG)
        with pytest.raises(NameTaken):
            await registry.claim([CH_B, AC_X, AC_Y, AC_Z], "node-1", LONG)
        for name in (CH_B, AC_X, AC_Z):
            assert await registry.holder(*name) is None
        claims = await registry.claim([CH_B, AC_X, AC_Z], "node-2", LONG)
        assert len(claims) == 3


async def test_claim_by_same_holder_is_also_taken(registry: Registry) -> None:
    """A claim is never shared: the holder itself cannot claim a name it already holds."""
    async with registry:
        await registry.claim([CH_A], "node-1", LONG)
        with pytest.raises(NameTaken):
            await registry.claim([CH_A], "node-1", LONG)


async def test_kinds_are_separate_namespaces(registry: Registry) -> None:
    """A channel and an actor with the same ident are different names."""
    async with registry:
        await registry.claim([("channel", ("x", "1"))], "node-1", LONG)
        await registry.claim([("actor", ("x", "1"))], ("x", "1"), LONG)
        assert await registry.holder("channel", ("x", "1")) == "node-1"
        assert await registry.holder("actor", ("x", "1")) == ("x", "1")


async def test_int_and_str_names_are_different(registry: Registry) -> None:
    """Idents compare as tuples: `("s", 1)` and `("s", "1")` are different names."""
    async with registry:
        await registry.claim([("channel", ("s", 1))], "node-1", LONG)
        await registry.claim([("channel", ("s", "1"))], "node-2", LONG)
        assert await registry.holder("channel", ("s", 1)) == "node-1"
        assert await registry.holder("channel", ("s", "1")) == "node-2"


# --- leases -----------------------------------------------------------------------------------


async def test_claim_expires_after_lease(registry: Registry) -> None:
    """A claim not renewed is free again once its lease ran out, and can then be claimed."""
    async with registry:
        [old] = await registry.claim([CH_A], "node-1", LEASE)
        assert await registry.holder(*CH_A) == "node-1"
        await expired(registry, CH_A)
        [new] = await registry.claim([CH_A], "node-2", LONG)
        assert await registry.holder(*CH_A) == "node-2"
        assert new.token > old.token


async def test_claim_does_not_expire_early(registry: Registry) -> None:
    """A claim with a long lease is still held after a while."""
    async with registry:
        await registry.claim([CH_A], "node-1", 2.0)
        await asyncio.sleep(0.3)
        assert await registry.holder(*CH_A) == "node-1"
        with pytest.raises(NameTaken):
            await registry.claim([CH_A], "node-2", LONG)


async def test_renew_extends_claim(registry: Registry) -> None:
    """Renewing in time keeps a claim held well past its first lease; then it expires."""
    async with registry:
        lease = 0.5
        claims = await registry.claim([CH_A, AC_X], "node-1", lease)
        loop = asyncio.get_running_loop()
        until = loop.time() + 3 * lease
        while loop.time() < until:
            await asyncio.sleep(lease / 5)
            assert await registry.renew(claims) == [True, True]
            assert await registry.holder(*CH_A) == "node-1"
            assert await registry.holder(*AC_X) == "node-1"
        with pytest.raises(NameTaken):
            await registry.claim([AC_X], "node-2", LONG)
        await expired(registry, CH_A)
        await expired(registry, AC_X)


async def test_renew_of_expired_claim_returns_false(registry: Registry) -> None:
    """A renewal never re-acquires an expired claim, even if nobody took the name since."""
    async with registry:
        [claim] = await registry.claim([CH_A], "node-1", LEASE)
        await expired(registry, CH_A)
        assert await registry.renew([claim]) == [False]
        assert await registry.holder(*CH_A) is None


async def test_renew_of_claim_taken_over_returns_false(registry: Registry) -> None:
    """Renewing an expired claim whose name another holder took fails and leaves it alone."""
    async with registry:
        [old] = await registry.claim([CH_A], "node-1", LEASE)
        await expired(registry, CH_A)
        [new] = await registry.claim([CH_A], "node-2", LONG)
        assert await registry.renew([old]) == [False]
        assert await registry.holder(*CH_A) == "node-2"
        assert await registry.renew([new]) == [True]


async def test_renew_reports_each_claim(registry: Registry) -> None:
    """`renew` returns one boolean per claim: live ones renewed, expired or released ones not."""
    async with registry:
        [short] = await registry.claim([AC_X], "c", LEASE)
        [released] = await registry.claim([AC_Y], "c", LONG)
        [live] = await registry.claim([AC_Z], "c", LONG)
        await registry.release([released])
        await expired(registry, AC_X)
        assert await registry.renew([short, released, live]) == [False, False, True]
        assert await registry.holder(*AC_X) is None
        assert await registry.holder(*AC_Y) is None
        assert await registry.holder(*AC_Z) == "c"


async def test_renew_of_nothing(registry: Registry) -> None:
    """Renewing no claims returns an empty list."""
    async with registry:
        assert await registry.renew([]) == []


# --- release ----------------------------------------------------------------------------------


async def test_release_frees_names(registry: Registry) -> None:
    """Released names are free at once and can be claimed by someone else."""
    async with registry:
        claims = await registry.claim([CH_A, AC_X], "node-1", LONG)
        await registry.release(claims)
        assert await registry.holder(*CH_A) is None
        assert await registry.holder(*AC_X) is None
        await registry.claim([CH_A, AC_X], "node-2", LONG)
        assert await registry.holder(*CH_A) == "node-2"


async def test_release_only_given_claims(registry: Registry) -> None:
    """Releasing some claims of a group leaves the others held."""
    async with registry:
        ch, ac = await registry.claim([CH_A, AC_X], "node-1", LONG)
        await registry.release([ac])
        assert await registry.holder(*CH_A) == "node-1"
        assert await registry.holder(*AC_X) is None
        assert await registry.renew([ch]) == [True]


async def test_release_is_idempotent(registry: Registry) -> None:
    """Releasing twice, or releasing an expired claim, silently succeeds."""
    async with registry:
        [claim] = await registry.claim([CH_A], "node-1", LEASE)
        await registry.release([claim])
        await registry.release([claim])
        [claim] = await registry.claim([CH_A], "node-1", LEASE)
        await expired(registry, CH_A)
        await registry.release([claim])
        await registry.release([])


async def test_release_with_old_token_keeps_newer_claim(registry: Registry) -> None:
    """Releasing a claim that expired and was claimed again does not free the newer claim."""
    async with registry:
        [old] = await registry.claim([CH_A], "node-1", LEASE)
        await expired(registry, CH_A)
        [new] = await registry.claim([CH_A], "node-2", LONG)
        await registry.release([old])
        assert await registry.holder(*CH_A) == "node-2"
        assert await registry.renew([new]) == [True]


async def test_release_with_old_token_keeps_same_holders_newer_claim(registry: Registry) -> None:
    """The token, not the holder, decides: an old claim of the same holder frees nothing."""
    async with registry:
        [old] = await registry.claim([AC_X], ("session", "a"), LEASE)
        await expired(registry, AC_X)
        [new] = await registry.claim([AC_X], ("session", "a"), LONG)
        await registry.release([old])
        assert await registry.holder(*AC_X) == ("session", "a")
        assert await registry.renew([new]) == [True]


# --- fencing tokens ---------------------------------------------------------------------------


async def test_tokens_strictly_increase_per_name(registry: Registry) -> None:
    """Each new claim of a name carries a token greater than every earlier claim's."""
    async with registry:
        tokens = []
        for i in range(200):
            [claim] = await registry.claim([CH_A], f"node-{i % 3}", LONG)
            tokens.append(claim.token)
            await registry.release([claim])
        assert all(a < b for a, b in itertools.pairwise(tokens))


async def test_tokens_increase_after_expiry(registry: Registry) -> None:
    """A claim taken after an expiry outranks the expired one."""
    async with registry:
        [a] = await registry.claim([CH_A], "node-1", LEASE)
        await expired(registry, CH_A)
        [b] = await registry.claim([CH_A], "node-1", LEASE)
        assert b.token > a.token


async def test_renew_keeps_token(registry: Registry) -> None:
    """Renewing does not change a claim's token (writes under it stay valid)."""
    async with registry:
        [claim] = await registry.claim([CH_A], "node-1", LONG)
        token = claim.token
        assert await registry.renew([claim]) == [True]
        assert claim.token == token
        await registry.release([claim])
        assert await registry.holder(*CH_A) is None


async def test_tokens_increase_across_instances(make_registry: Callable[[], Registry]) -> None:
    """Tokens of a name keep rising across registry instances (a restarted process outranks
    the dead one): they derive from the clock, not from a per-instance counter."""
    tokens = []
    for round_ in range(6):
        async with make_registry() as reg:
            for _ in range(3):
                [claim] = await reg.claim([CH_A], f"node-{round_}", LONG)
                tokens.append(claim.token)
                await reg.release([claim])
        await asyncio.sleep(0.002)
    assert all(a < b for a, b in itertools.pairwise(tokens)), tokens


async def test_new_instance_outranks_busy_old_one(make_registry: Callable[[], Registry]) -> None:
    """After a burst of claims on one instance, a later instance still gets a greater token."""
    async with make_registry() as first:
        last = 0
        for _ in range(2000):
            [claim] = await first.claim([CH_A], "node-1", LONG)
            last = claim.token
            await first.release([claim])
    await asyncio.sleep(0.02)
    async with make_registry() as second:
        [claim] = await second.claim([CH_A], "node-2", LONG)
        assert claim.token > last


async def test_tokens_distinct_names_independent(registry: Registry) -> None:
    """Claiming several names at once gives each a usable token, all increasing per name."""
    async with registry:
        first = await registry.claim([CH_A, AC_X], "n", LONG)
        await registry.release(first)
        second = await registry.claim([AC_X, CH_A], "n", LONG)
        assert second[0].token > first[1].token
        assert second[1].token > first[0].token


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_overlapping_claims_never_share_a_name(registry: Registry) -> None:
    """Many tasks claiming overlapping name sets at once never hold one name together."""
    names: list[Name] = [("channel", ("session", i)) for i in range(5)]
    names += [("actor", ("account", i)) for i in range(6)]
    held: dict[Name, str] = {}
    wins = 0
    conflicts = 0

    async def worker(me: str, seed: int) -> None:
        nonlocal wins, conflicts
        rng = random.Random(seed)
        for _ in range(25):
            wanted = rng.sample(names, rng.randint(1, 3))
            try:
                claims = await registry.claim(wanted, me, LONG)
            except NameTaken as exc:
                conflicts += 1
                assert (exc.kind, exc.ident) in wanted
                await asyncio.sleep(0)
                continue
            for name in wanted:
                assert name not in held, f"{name} held by {held[name]} and {me}"
                held[name] = me
            wins += 1
            for name in wanted:
                assert await registry.holder(*name) == me
            await asyncio.sleep(rng.random() * 0.003)
            for name in wanted:
                del held[name]
            await registry.release(claims)

    async with registry:
        await asyncio.gather(*(worker(f"task-{i}", i) for i in range(40)))
        assert wins > 0
        assert conflicts > 0
        for name in names:
            assert await registry.holder(*name) is None


async def test_concurrent_claims_of_one_name_have_one_winner(registry: Registry) -> None:
    """Of many simultaneous claims of one free name exactly one succeeds."""
    results: list[bool] = []

    async def attempt(me: str) -> None:
        try:
            await registry.claim([CH_A, ("actor", ("account", me))], me, LONG)
            results.append(True)
        except NameTaken:
            results.append(False)

    async with registry:
        await asyncio.gather(*(attempt(f"n{i}") for i in range(30)))
        assert results.count(True) == 1
        winner = await registry.holder(*CH_A)
        for i in range(30):
            expected = f"n{i}" if winner == f"n{i}" else None
            assert await registry.holder("actor", ("account", f"n{i}")) == expected


async def test_aclose_is_idempotent(registry: Registry) -> None:
    """Closing a registry twice silently succeeds; `async with` binds the registry itself."""
    async with registry as reg:
        assert reg is registry
        assert isinstance(reg, Registry)
    await registry.aclose()
    await registry.aclose()
