"""`RedisRegistry` and `RedisStore`: leases and actor states on a Redis server.

Every operation that reads and then writes is one Lua script, so it runs atomically on the
server; the client never decides on data it read in an earlier round trip. Fencing tokens
are compared as decimal strings inside the scripts, because Lua's numbers are doubles and
clock-derived tokens are bigger than 2**53.

Keys (all under the configurable prefix, default `"wes:"`):

- `claim:<json [kind, type, name]>`: a string `"<token> <nonce> <json holder>"`, `PX` expiry;
- `token`: the last fencing token handed out, for every name (one key, no per-name growth);
- `store:<key>`: a hash with fields `t` (token), `v` (version) and `d` (data);
- `store-index`: a sorted set of every stored key (all scores 0), for `scan` in key order.

Redis Cluster: the scripts touch several keys at once, so all of them must live in one hash
slot; a prefix with a hash tag such as `"{wes}:"` does that.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from .._abc import AsyncResource, Claim, ClaimKind, Ident, NameTaken, Record, Registry, Store, Write
from .._errors import (
    InvalidConfig,
    InvalidId,
    RegistryUnavailable,
    StaleToken,
    StoreUnavailable,
    WesError,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

# Redis 3.2-4.x replicate scripts verbatim unless told otherwise, and then refuse a write after
# the non-deterministic TIME; from Redis 5 on this is the default and the call a no-op.
_EFFECTS = "if redis.replicate_commands then redis.replicate_commands() end\n"

# Tokens are nanosecond-scale like the in-process registry's: the server's TIME in
# microseconds (exact in a double until the year 2255) times 1000 plus a 3-digit counter,
# kept as two numbers and printed as one decimal string. The last token handed out lives in
# one key, so a token is max(now, last + 1) for every name: strictly increasing per name
# across expiry, registry instances and client processes, even if the server clock steps back.
_NEXT_TOKEN = """
local last = redis.call('GET', KEYS[1])
local last_us, last_sub = 0, 0
if last then
    last_us, last_sub = tonumber(string.sub(last, 1, -4)), tonumber(string.sub(last, -3))
end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local function next_token()
    if now_us > last_us then
        last_us, last_sub = now_us, 0
    elseif last_sub < 999 then
        last_sub = last_sub + 1
    else
        last_us, last_sub = last_us + 1, 0
    end
    return string.format('%.0f%03d', last_us, last_sub)
end
"""

# KEYS[1] token key, KEYS[2..] claim keys; ARGV[1] lease ms, ARGV[2] encoded holder, ARGV[3]
# a nonce of this claim call. A claim is stored as "<token> <nonce> <holder>". A name held under
# the same nonce is this very call's, executed before its reply was lost and now retried: it is
# kept, so a retry never finds its own names taken. Returns {i, value} for the first name held
# by another call (i counts from 1 over the names), else {0, seconds, microseconds, tokens}.
_CLAIM = (
    _EFFECTS
    + """
local mine = {}
for i = 2, #KEYS do
    local held = redis.call('GET', KEYS[i])
    if held then
        local token, nonce = string.match(held, '^(%d+) (%x+) ')
        if nonce ~= ARGV[3] then return {i - 1, held} end
        mine[i] = token
    end
end
"""
    + _NEXT_TOKEN
    + """
local out = {0, time[1], time[2]}
local issued = false
for i = 2, #KEYS do
    local token = mine[i]
    if token then
        redis.call('PEXPIRE', KEYS[i], ARGV[1])
    else
        token = next_token()
        issued = true
        redis.call('SET', KEYS[i], token .. ' ' .. ARGV[3] .. ' ' .. ARGV[2], 'PX', ARGV[1])
    end
    out[#out + 1] = token
end
if issued then redis.call('SET', KEYS[1], string.format('%.0f%03d', last_us, last_sub)) end
return out
"""
)

# KEYS claim keys; ARGV token and lease ms per key. Returns {seconds, microseconds, 0/1 per key}.
_RENEW = (
    _EFFECTS
    + """
local time = redis.call('TIME')
local out = {time[1], time[2]}
for i = 1, #KEYS do
    local mine = ARGV[2 * i - 1] .. ' '
    local held = redis.call('GET', KEYS[i])
    if held and string.sub(held, 1, #mine) == mine then
        redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
        out[#out + 1] = 1
    else
        out[#out + 1] = 0
    end
end
return out
"""
)

# KEYS claim keys; ARGV one token per key.
_RELEASE = """
for i = 1, #KEYS do
    local mine = ARGV[i] .. ' '
    local held = redis.call('GET', KEYS[i])
    if held and string.sub(held, 1, #mine) == mine then redis.call('DEL', KEYS[i]) end
end
return 0
"""

# KEYS[1] index, KEYS[2..] the data keys of every batch in order. ARGV[1] prefix length; ARGV[2]
# the batch sizes, decimals separated by spaces ("" when every batch holds one key); ARGV[3]
# token, version and data length of every key, also decimals separated by spaces; ARGV[4] the
# data of every key, concatenated. Packing the per-key values into three arguments spares the
# client the cost of one protocol argument per value. Returns batch number, position of the
# stale key in its batch (both from 1) and stored token for every refused batch: nothing when
# every batch was written. Per key the script runs one HGET and one HSET; the key joins the
# index only when HSET created its hash. An owner saves again and again with the token it
# holds, so an equal stored token is accepted before the exact comparison.
_WRITE = """
local function greater(a, b)  -- a > b for canonical decimal integers, any size
    local neg_a, neg_b = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
    if neg_a ~= neg_b then return neg_b end
    if neg_a then a, b = string.sub(b, 2), string.sub(a, 2) end
    if #a ~= #b then return #a > #b end
    for i = 1, #a do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then return x > y end
    end
    return false
end
local call, sub, index, skip = redis.call, string.sub, KEYS[1], tonumber(ARGV[1]) + 1
local sizes  -- iterator over the batch sizes
if ARGV[2] == '' then
    local left = #KEYS - 1
    sizes = function()
        if left > 0 then
            left = left - 1
            return 1
        end
    end
else
    local each = string.gmatch(ARGV[2], '%d+')
    sizes = function()
        local n = each()
        return n and tonumber(n)
    end
end
local fields, blob, at = string.gmatch(ARGV[3], '([^ ]+) ([^ ]+) (%d+)'), ARGV[4], 1
local tokens, versions, data, out = {}, {}, {}, {}
local b, k = 0, 1  -- batch number; KEYS position before the batch's first key
for n in sizes do
    b = b + 1
    local stale = false
    for i = 1, n do
        local token, version, length = fields()
        local stop = at + tonumber(length)
        tokens[i], versions[i], data[i], at = token, version, sub(blob, at, stop - 1), stop
        if not stale then
            local stored = call('HGET', KEYS[k + i], 't')
            if stored and stored ~= token and greater(stored, token) then
                out[#out + 1], out[#out + 2], out[#out + 3] = b, i, stored
                stale = true
            end
        end
    end
    if not stale then
        for i = 1, n do
            local key = KEYS[k + i]
            if call('HSET', key, 't', tokens[i], 'v', versions[i], 'd', data[i]) > 0 then
                call('ZADD', index, 0, sub(key, skip))
            end
        end
    end
    k = k + n
end
return out
"""

# KEYS data keys. Returns data, version, token per key (nil for a missing key): one snapshot.
_READ = """
local out = {}
for i = 1, #KEYS do
    local r = redis.call('HMGET', KEYS[i], 'd', 'v', 't')
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = r[1], r[2], r[3]
end
return out
"""

# KEYS[1] index; ARGV lex min, lex max, page size, data key prefix. Returns key, data,
# version, token per stored key in the range, in key order.
_SCAN = """
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for _, key in ipairs(keys) do
    local r = redis.call('HMGET', ARGV[4] .. key, 'd', 'v', 't')
    out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = key, r[1], r[2], r[3]
end
return out
"""

_SCAN_PAGE = 256  # keys per scan round trip
_CALL_BYTES = 64 << 20  # state bytes beyond which a write is split into several script calls


def _utf8(text: str) -> bytes:
    # surrogatepass keeps any str a key (lone surrogates included) and still sorts by code point
    return text.encode("utf-8", "surrogatepass")


def _redacted(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def _with_fast_packing(base: type[Any]) -> type[Any]:
    """A subclass of the connection class `base` that packs commands into the wire protocol
    faster than redis-py does (about 0.4 instead of 1.3 us per argument): a store's write sends
    one argument per key, thousands per call. Arguments of other types than str (UTF-8), int
    and bytes, and command names holding a space, are left to redis-py."""

    class FastPacking(base):  # type: ignore[misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            name = args[0]
            if type(name) is not str or " " in name:
                return super().pack_command(*args)  # type: ignore[no-any-return]
            out = [b"*%d\r\n" % len(args)]
            for arg in args:
                kind = type(arg)
                if kind is str:
                    arg = arg.encode()
                elif kind is int:
                    arg = b"%d" % arg
                elif kind is not bytes:
                    return super().pack_command(*args)  # type: ignore[no-any-return]
                out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
            return [b"".join(out)]

    FastPacking.__name__ = FastPacking.__qualname__ = f"FastPacking{base.__name__}"
    return FastPacking


def _lease_ms(lease: float) -> int:
    return max(1, math.ceil(lease * 1000))


def _server_time(seconds: bytes, micros: bytes) -> float:
    return int(seconds) + int(micros) / 1e6


def _encode_holder(holder: Hashable) -> bytes:
    """JSON, where a tuple becomes an array: holders are hashable, so never lists themselves."""
    try:
        return json.dumps(holder, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidId(
            f"a registry holder must be a str, an int or a tuple of them, not {holder!r}"
        ) from exc


def _as_tuples(value: Any) -> Hashable:
    if isinstance(value, list):
        return tuple(_as_tuples(item) for item in value)
    result: Hashable = value
    return result


def _decode_holder(claim: bytes) -> Hashable:
    """The holder of a stored claim, `b"<token> <nonce> <holder>"`."""
    return _as_tuples(json.loads(claim.split(b" ", 2)[2]))


class _RedisBackend(AsyncResource):
    """Connects lazily on first use; turns every driver error into `unavailable`."""

    unavailable: ClassVar[type[WesError]]
    _scripts: ClassVar[dict[str, str]]

    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        try:
            import redis.asyncio  # noqa: F401 - only to fail early, naming the extra
        except ImportError:
            raise ImportError(
                f"{type(self).__name__} needs: pip install 'wes-actors[redis]'"
            ) from None
        if not timeout > 0:
            raise InvalidConfig(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.url = url
        self.prefix = prefix
        self._timeout = timeout
        self._prefix = _utf8(prefix)
        self._redis: Redis | None = None
        self._compiled: dict[str, AsyncScript] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_redacted(self.url)!r}, prefix={self.prefix!r})"

    def _client(self) -> Redis:
        if self._closed:
            raise self.unavailable(f"{self!r} is closed")
        if self._redis is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError

            # One immediate retry on a broken connection (such as a pooled one the server
            # closed when it restarted); every script is safe to run twice. None on a timeout:
            # the server is slow or away, and the node has its own retries, with backoff.
            self._redis = Redis.from_url(
                self.url,
                decode_responses=False,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
            pool = self._redis.connection_pool  # no connection is made before first use
            pool.connection_class = _with_fast_packing(pool.connection_class)
            self._compiled = {
                name: self._redis.register_script(text) for name, text in self._scripts.items()
            }
        return self._redis

    async def _eval(self, script: str, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        from redis.exceptions import RedisError

        client = self._client()
        run = self._compiled[script]
        try:
            return await run(keys=keys, args=args, client=client)
        except (RedisError, OSError) as exc:
            raise self.unavailable(f"{self!r}: {exc!r}") from exc

    async def aclose(self) -> None:
        """Close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()


class RedisRegistry(_RedisBackend, Registry):
    """A registry on a Redis server, shared by nodes on several hosts.

    Claims, renewals and releases are each one Lua script: atomic on the server. A claim
    expires by the server's clock (`PX`). Fencing tokens derive from the server's clock and
    strictly increase per name, also across expiry and registry instances. Redis keeps the
    last token in memory: with persistence off, a server restart forgets it, and tokens then
    rest on the server clock alone.

    Args:
        url: a redis-py URL such as `"redis://localhost:6379/0"`.
        prefix: prepended to every key, so several registries can share a database.
        timeout: seconds to wait for a connection or a reply before raising
            `wes.RegistryUnavailable`.
    """

    unavailable = RegistryUnavailable
    _scripts = {"claim": _CLAIM, "renew": _RENEW, "release": _RELEASE}

    def __init__(self, url: str, *, prefix: str = "wes:", timeout: float = 5.0) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
        self._token_key = self._prefix + b"token"

    def _key(self, kind: ClaimKind, ident: Ident) -> bytes:
        name = json.dumps([kind, *ident], ensure_ascii=False, separators=(",", ":"))
        return self._prefix + b"claim:" + _utf8(name)

    async def claim(
        self, names: Sequence[tuple[ClaimKind, Ident]], holder: Hashable, lease: float
    ) -> list[Claim]:
        keys = [self._token_key, *(self._key(kind, ident) for kind, ident in names)]
        args = [_lease_ms(lease), _encode_holder(holder), os.urandom(8).hex()]
        reply = await self._eval("claim", keys, args)
        if reply[0] != 0:
            kind, ident = names[reply[0] - 1]
            raise NameTaken(kind, ident, _decode_holder(reply[1]))
        expires = _server_time(reply[1], reply[2]) + lease
        return [
            Claim(kind, ident, holder, int(token), lease, expires)
            for (kind, ident), token in zip(names, reply[3:], strict=True)
        ]

    async def renew(self, claims: Sequence[Claim]) -> list[bool]:
        if not claims:
            return []
        args: list[int] = []
        for claim in claims:
            args += (claim.token, _lease_ms(claim.lease))
        keys = [self._key(c.kind, c.ident) for c in claims]
        reply = await self._eval("renew", keys, args)
        now = _server_time(reply[0], reply[1])
        renewed = [flag == 1 for flag in reply[2:]]
        for claim, ok in zip(claims, renewed, strict=True):
            if ok:
                claim.expires = now + claim.lease
        return renewed

    async def release(self, claims: Sequence[Claim]) -> None:
        if claims:
            keys = [self._key(c.kind, c.ident) for c in claims]
            await self._eval("release", keys, [c.token for c in claims])

    async def holder(self, kind: ClaimKind, ident: Ident) -> Hashable | None:
        from redis.exceptions import RedisError

        try:
            held: Any = await self._client().get(  # bytes or None: decode_responses=False
                self._key(kind, ident)
            )
        except (RedisError, OSError) as exc:
            raise RegistryUnavailable(f"{self!r}: {exc!r}") from exc
        return None if held is None else _decode_holder(held)


class RedisStore(_RedisBackend, Store):
    """Actor states on a Redis server, shared by nodes on several hosts.

    Each `write` call is one Lua script: every batch is checked against the stored fencing
    tokens and written whole or refused whole, all batches in one round trip, and only the
    refusals travel back. A key joins the sorted index when its hash is first written; a read
    is one snapshot; `scan` pages through the index.

    Durability is the server's configuration: with Redis's defaults (RDB snapshots) a crash of
    the Redis server itself loses the writes since the last snapshot, even acknowledged ones.
    For `durability="command"` to survive that too, run Redis with `appendonly yes` and
    `appendfsync always`. A crash of the wes process loses nothing that was acknowledged.

    Args:
        url: a redis-py URL such as `"redis://localhost:6379/0"`.
        prefix: prepended to every key, so several stores can share a database.
        timeout: seconds to wait for a connection or a reply before raising
            `wes.StoreUnavailable`.
    """

    unavailable = StoreUnavailable
    _scripts = {"read": _READ, "write": _WRITE, "scan": _SCAN}

    def __init__(self, url: str, *, prefix: str = "wes:", timeout: float = 5.0) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
        self._data_prefix = self._prefix + b"store:"
        self._index_key = self._prefix + b"store-index"

    async def read(self, keys: Sequence[str]) -> dict[str, Record]:
        if not keys:
            return {}
        reply = await self._eval("read", [self._data_prefix + _utf8(k) for k in keys], [])
        out: dict[str, Record] = {}
        for i, key in enumerate(keys):
            data, version, token = reply[3 * i : 3 * i + 3]
            if data is not None:
                out[key] = Record(data, int(version), int(token))
        return out

    async def write(self, batches: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        if not batches:
            return []
        # The per-key work is a few comprehensions: a save writes thousands of keys at once.
        prefix = self._data_prefix
        rows = [w for batch in batches for w in batch]
        keys = [self._index_key]
        keys += [prefix + key.encode("utf-8", "surrogatepass") for key, _, _, _ in rows]
        one_each = len(rows) == len(batches) and all(batches)
        blob = b"".join([d for _, d, _, _ in rows])
        if len(blob) > _CALL_BYTES and len(batches) > 1:
            # Redis takes at most 512 MB in one argument: split the call (a batch stays whole).
            half = len(batches) // 2
            return [*await self.write(batches[:half]), *await self.write(batches[half:])]
        args = [
            len(prefix),
            "" if one_each else " ".join(map(str, map(len, batches))),
            # %d writes any int as its decimal number, an int subclass such as an IntEnum too
            " ".join(["%d %d %d" % (t, v, len(d)) for _, d, v, t in rows]),  # noqa: UP031
            blob,
        ]
        refused = await self._eval("write", keys, args)
        out: list[BaseException | None] = [None] * len(batches)
        for i in range(0, len(refused), 3):
            b, at, stored = refused[i : i + 3]
            w = batches[b - 1][at - 1]
            out[b - 1] = StaleToken(
                f"write of {w.key!r} with fencing token {w.token} refused: "
                f"the store holds token {int(stored)}"
            )
        return out

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Record]]:
        # UTF-8 sorts like code points and never holds a 0xff byte, so the keys starting with
        # the prefix are exactly those from `[prefix` up to `(prefix + 0xff`.
        low, high = (
            (b"[" + _utf8(prefix), b"(" + _utf8(prefix) + b"\xff") if prefix else (b"-", b"+")
        )
        while True:
            args = [low, high, _SCAN_PAGE, self._data_prefix]
            reply = await self._eval("scan", [self._index_key], args)
            for i in range(0, len(reply), 4):
                key, data, version, token = reply[i : i + 4]
                if data is not None:
                    yield (
                        key.decode("utf-8", "surrogatepass"),
                        Record(data, int(version), int(token)),
                    )
            if len(reply) < 4 * _SCAN_PAGE:
                return
            low = b"(" + reply[-4]
