"""The `backend` fixture: runs a behaviour test over every store, and over the registries too
where the registry matters.

A test taking `backend` runs once per store, each with a `MemoryRegistry`:

    memory-memory, sqlite-memory, redis-memory, postgres-memory

A test marked `@pytest.mark.registries` (its outcome depends on claims, releases, leases or
restarts) also runs over the combinations several processes or hosts would deploy:

    sqlite-sqlite    SqliteStore and SqliteRegistry (several processes on one host)
    postgres-redis   PostgresStore and RedisRegistry (several hosts)
    redis-redis      RedisStore and RedisRegistry under one key prefix (one Redis for both)

`backend.store()` and `backend.registry()` hand out a new instance each call, all on the same
data (one file, one Redis prefix, one PostgreSQL table, unique to the test), the way nodes of
several processes would open their own. A node closes the store and registry it was given, so
a test that looks at the data after a node closed opens a new instance (`async with
backend.store() as store:`). The memory kinds hand out one shared instance, which closing
leaves usable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import wes
from wes.abc import Registry, Store

STORE_KINDS = ("memory", "sqlite", "redis", "postgres")
SHARED_REGISTRY_COMBOS = (("sqlite", "sqlite"), ("postgres", "redis"), ("redis", "redis"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `backend` by (store, registry): every store with a MemoryRegistry, plus the
    shared-registry combinations for tests marked `registries`."""
    if "backend" not in metafunc.fixturenames:
        return
    combos = [(kind, "memory") for kind in STORE_KINDS]
    if metafunc.definition.get_closest_marker("registries") is not None:
        combos += SHARED_REGISTRY_COMBOS
    ids = [f"{store}-{registry}" for store, registry in combos]
    metafunc.parametrize("backend", combos, indirect=True, ids=ids)


@dataclass
class Backend:
    """Hands out stores and registries that all see the same data."""

    store_kind: str
    registry_kind: str
    tmp: Path
    redis_url: str | None = None
    postgres_dsn: str | None = None
    place: str = field(default_factory=lambda: uuid.uuid4().hex)
    memory_store: wes.MemoryStore = field(default_factory=wes.MemoryStore)
    memory_registry: wes.MemoryRegistry = field(default_factory=wes.MemoryRegistry)

    def store(self) -> Store:
        """A store instance on this backend's data."""
        kind = self.store_kind
        if kind == "memory":
            return self.memory_store
        if kind == "sqlite":
            return wes.SqliteStore(self.tmp / f"{self.place}.db")
        if kind == "redis":
            assert self.redis_url is not None
            return wes.RedisStore(self.redis_url, prefix=f"wes-test:{self.place}:")
        assert kind == "postgres" and self.postgres_dsn is not None
        return wes.PostgresStore(self.postgres_dsn, table=f"wes_test_{self.place}")

    def registry(self) -> Registry:
        """A registry instance on this backend's claims."""
        kind = self.registry_kind
        if kind == "memory":
            return self.memory_registry
        if kind == "sqlite":
            return wes.SqliteRegistry(self.tmp / f"{self.place}-registry.db")
        assert kind == "redis" and self.redis_url is not None
        return wes.RedisRegistry(self.redis_url, prefix=f"wes-test:{self.place}:")

    def sibling(self) -> Backend:
        """A backend of the same kinds on separate data: another file, prefix or table."""
        return Backend(
            self.store_kind, self.registry_kind, self.tmp, self.redis_url, self.postgres_dsn
        )


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A store and registry combination; see the module docstring."""
    store_kind, registry_kind = request.param
    kinds = {store_kind, registry_kind}
    # Only the tests that need a server start it (once per session).
    redis_url = request.getfixturevalue("redis_url") if "redis" in kinds else None
    postgres_dsn = request.getfixturevalue("postgres_dsn") if "postgres" in kinds else None
    return Backend(store_kind, registry_kind, tmp_path, redis_url, postgres_dsn)


async def stored(store: Store, key: str) -> dict[str, Any] | None:
    """The state stored under `key`, decoded with the default codec, or None."""
    record = (await store.read([key])).get(key)
    return None if record is None else wes.JsonCodec().decode(record.data)
