"""`NatsTransport`: calls between nodes over NATS request-reply (core NATS, no JetStream).

Each node listens on `<cluster>.node.<address>`; announcements go to `<cluster>.presence`.
nats-py runs one subscription's callbacks one at a time, so the callback only hands each
message to the node, which serves it at once when it cannot wait for anything (a free
channel's synchronous handlers) or makes a task of it: channel work is never awaited there.

Requests are published with a reply subject under one inbox subscription per connection
(`_Replies`), as nats-py's own `request` does, but each with a counter's token where
`request` draws random bytes from the OS, and one timer where it runs `wait_for`: that is
most of what a call costs its caller.

Failures are told apart as the node needs them: "no responders" (nobody listens at that
address) and "not connected" mean the request certainly reached no node
(`NodeUnreachable`); a request that was sent and got no answer in time, or whose
connection broke or closed before the answer came, is `OutcomeUnknown`. A request is never
handed to nats-py while it is disconnected: nats-py would buffer it and send it after
reconnecting, long after its caller gave up.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
from typing import TYPE_CHECKING, Any

from .._abc import OnAnnounce, OnRequest, Transport
from .._errors import InvalidArguments, InvalidConfig, NodeUnreachable, OutcomeUnknown

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

log = logging.getLogger("wes")

# A stalled server or link is noticed within PING_INTERVAL * (MAX_PINGS_OUT + 1) seconds,
# not nats-py's two minutes; then nats-py reconnects every RECONNECT_WAIT seconds, forever.
PING_INTERVAL = 1.0
MAX_PINGS_OUT = 2
RECONNECT_WAIT = 0.25
CONNECT_TIMEOUT = 2.0
FIRST_CONNECT_TRIES = 3
MAX_SUBJECTS = 10_000  # node addresses whose subjects are kept; past it they start over
_CLUSTER = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE = re.compile(rb"[^A-Za-z0-9_:\-]")
_STATUS = "Status"  # the header of an answer the server sent itself
_NO_RESPONDERS = "503"


def subject_token(address: str) -> str:
    """`address` as one NATS subject token (no dot, space or wildcard), reversibly."""
    return _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], address.encode()).decode()


class NatsTransport(Transport):
    """Carries a cluster's calls over a NATS server.

    Args:
        url: the server, e.g. `"nats://127.0.0.1:4222"` (several, comma-separated).
        cluster: the cluster's name; nodes on one server with different names never meet.
    """

    def __init__(self, url: str, *, cluster: str = "wes") -> None:
        try:
            import nats.errors
        except ImportError:
            raise ImportError("NatsTransport needs: pip install 'wes-actors[nats]'") from None
        if not isinstance(cluster, str) or not _CLUSTER.fullmatch(cluster):
            raise InvalidConfig(
                f"cluster must be a non-empty name of letters, digits, '_' and '-', not {cluster!r}"
            )
        self.url = url
        self.cluster = cluster
        self._nc: Client | None = None
        self._connecting = asyncio.Lock()
        self._requests: dict[str, Subscription] = {}
        self._announcements: dict[str, OnAnnounce] = {}
        self._presence: Subscription | None = None
        self._subjects: dict[str, str] = {}  # address -> subject, built once per address
        self._replies: _Replies | None = None  # set together with `_nc`
        self._errors: Any = nats.errors  # read only when a request fails

    def __repr__(self) -> str:
        return f"NatsTransport({self.url!r}, cluster={self.cluster!r})"

    @property
    def max_payload(self) -> int:
        return self._nc.max_payload if self._nc is not None else 1024 * 1024

    def _subject(self, address: str) -> str:
        subject = self._subjects.get(address)
        if subject is None:
            if len(self._subjects) >= MAX_SUBJECTS:
                self._subjects.clear()
            subject = self._subjects[address] = f"{self.cluster}.node.{subject_token(address)}"
        return subject

    # -- the connection -------------------------------------------------------------------

    async def _client(self) -> Client:
        async with self._connecting:
            if self._nc is None or self._nc.is_closed:
                nc = await self._connect()
                replies = _Replies(nc.new_inbox() + ".", asyncio.get_running_loop())
                try:
                    await nc.subscribe(replies.prefix + "*", cb=replies.take)
                except BaseException:
                    await nc.close()
                    raise
                self._nc, self._replies = nc, replies
            return self._nc

    async def _connect(self) -> Client:
        import nats

        try:
            nc = await nats.connect(
                self.url.split(","),
                name=f"wes {self.cluster}",
                ping_interval=PING_INTERVAL,
                max_outstanding_pings=MAX_PINGS_OUT,
                reconnect_time_wait=RECONNECT_WAIT,
                connect_timeout=CONNECT_TIMEOUT,
                # The first connection fails after a few tries; once up, it reconnects
                # forever (set below): a node outlives an outage of its server.
                max_reconnect_attempts=FIRST_CONNECT_TRIES,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except Exception as exc:
            raise NodeUnreachable(f"cannot reach NATS at {self.url}: {exc!r}") from exc
        nc.options["max_reconnect_attempts"] = -1  # read by nats-py at each reconnect
        return nc

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS %s: %r", self.url, exc)

    async def _on_disconnected(self) -> None:
        if self._replies is not None:
            # Their answers, sent or not, are lost with the connection.
            self._replies.fail_all(f"the connection to NATS at {self.url} broke")
        if self._nc is not None:  # not when closing
            log.warning("NATS %s: disconnected; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        log.info("NATS %s: reconnected", self.url)

    # -- listening ------------------------------------------------------------------------

    async def listen(self, address: str, on_request: OnRequest, on_announce: OnAnnounce) -> None:
        nc = await self._client()

        async def take(msg: Msg) -> None:
            reply_to = msg.reply
            if not reply_to:
                return  # a publish, not a request: nobody waits for an answer

            on_request(msg.data, functools.partial(nc.publish, reply_to))

        self._requests[address] = await nc.subscribe(self._subject(address), cb=take)
        self._announcements[address] = on_announce
        if self._presence is None:
            self._presence = await nc.subscribe(f"{self.cluster}.presence", cb=self._heard)
        await nc.flush()  # subscribed at the server before the node says it is up

    async def _heard(self, msg: Msg) -> None:
        for on_announce in list(self._announcements.values()):
            on_announce(msg.data)

    async def unlisten(self, address: str) -> None:
        sub = self._requests.pop(address, None)
        if sub is not None and self._nc is not None and not self._nc.is_closed:
            await sub.unsubscribe()
            await self._flush()

    async def leave(self, address: str) -> None:
        await self.unlisten(address)
        self._announcements.pop(address, None)
        if not self._announcements:
            await self.aclose()

    async def aclose(self) -> None:
        nc, self._nc = self._nc, None
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.fail_all(f"the transport to NATS at {self.url} closed")
        self._requests.clear()
        self._announcements.clear()
        self._presence = None
        if nc is not None and not nc.is_closed:
            await nc.close()

    async def _flush(self) -> None:
        if self._nc is not None and self._nc.is_connected:
            try:
                await self._nc.flush(timeout=CONNECT_TIMEOUT)  # type: ignore[arg-type]
            except Exception as exc:
                log.debug("NATS flush failed: %r", exc)

    # -- calling --------------------------------------------------------------------------

    async def request(self, address: str, data: bytes, within: float) -> bytes:
        nc, replies = self._nc, self._replies  # once connected, a request takes no lock
        if nc is None or replies is None or nc.is_closed:
            nc = await self._client()
            replies = self._replies
            assert replies is not None
        if not nc.is_connected:
            raise NodeUnreachable(f"not connected to NATS at {self.url}")
        token, answer = replies.expect()
        timer = replies.loop.call_later(within, _time_out, answer)
        errors = self._errors
        try:
            await nc.publish(self._subject(address), data, replies.prefix + token)
            msg = await answer
        except errors.MaxPayloadError:
            raise InvalidArguments(
                f"a request of {len(data)} bytes is over NATS's limit of {nc.max_payload}"
            ) from None
        except (errors.ConnectionClosedError, errors.ConnectionDrainingError):
            raise NodeUnreachable(f"the connection to NATS at {self.url} is closing") from None
        except errors.OutboundBufferLimitError:
            raise NodeUnreachable(f"NATS at {self.url}: the outbound buffer is full") from None
        except TimeoutError:
            raise OutcomeUnknown(
                f"no answer from {address!r} within {within:.3g}s: the call may have run"
            ) from None
        except errors.Error as exc:
            raise OutcomeUnknown(f"NATS at {self.url} failed midway: {exc!r}") from exc
        finally:
            timer.cancel()
            replies.waiting.pop(token, None)
        headers = msg.headers
        if headers and headers.get(_STATUS) == _NO_RESPONDERS:
            raise NodeUnreachable(f"no node listens at {address!r}")
        return msg.data  # type: ignore[no-any-return]

    async def announce(self, data: bytes) -> None:
        nc = self._nc
        if nc is not None and nc.is_connected:
            await nc.publish(f"{self.cluster}.presence", data)


class _Replies:
    """The answers awaited on one connection: futures by token, the token being the last
    part of the reply subject under `prefix` (one wildcard subscription takes them all)."""

    def __init__(self, prefix: str, loop: asyncio.AbstractEventLoop) -> None:
        self.prefix = prefix
        self.loop = loop
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self._cut = len(prefix)
        self._tokens = map(str, itertools.count())  # unique per connection: prefix is random

    def expect(self) -> tuple[str, asyncio.Future[Any]]:
        """A new token and the future its answer will be set on."""
        token = next(self._tokens)
        answer = self.waiting[token] = self.loop.create_future()
        return token, answer

    async def take(self, msg: Msg) -> None:
        """The inbox subscription's callback."""
        answer = self.waiting.pop(msg.subject[self._cut :], None)
        if answer is not None and not answer.done():
            answer.set_result(msg)

    def fail_all(self, why: str) -> None:
        """Every answer awaited is `OutcomeUnknown`: the requests may have run."""
        waiting, self.waiting = self.waiting, {}
        for answer in waiting.values():
            if not answer.done():
                answer.set_exception(OutcomeUnknown(f"{why} before the answer came"))


def _time_out(answer: asyncio.Future[Any]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())
