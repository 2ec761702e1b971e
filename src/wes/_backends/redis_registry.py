"""`RedisRegistry`: leases on a Redis server (see `_redis_client` for the keys). Fencing
tokens are compared as decimal strings inside the scripts, because Lua's numbers are doubles
and clock-derived tokens are bigger than 2**53."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Sequence
from typing import Any

from .._abc import Claim, ClaimKind, Ident, NameTaken, Registry
from .._errors import InvalidId, RegistryUnavailable
from ._redis_client import EFFECTS, RedisBackend, utf8

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
    EFFECTS
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
    EFFECTS
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


class RedisRegistry(RedisBackend, Registry):
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
        return self._prefix + b"claim:" + utf8(name)

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
