"""`RedisStore`: actor states on a Redis server (see `_redis_client` for the keys). Tokens
are compared as decimal strings inside the scripts, because Lua's numbers are doubles and
clock-derived tokens are bigger than 2**53."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from .._abc import Record, Store, Write
from .._errors import StaleToken, StoreUnavailable
from ._redis_client import RedisBackend, utf8

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


class RedisStore(RedisBackend, Store):
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
        reply = await self._eval("read", [self._data_prefix + utf8(k) for k in keys], [])
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
        low, high = (b"[" + utf8(prefix), b"(" + utf8(prefix) + b"\xff") if prefix else (b"-", b"+")
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
