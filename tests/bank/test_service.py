"""The bank as an HTTP service: `wes bank serve` runs in a subprocess and every test talks to
it over a real socket with httpx.

Covered: the routes and their JSON answers, every error case (400, 404, 405, 409, 413, never
a 5xx), sessions locking accounts, overdrafts ending a session that then resumes from its
last save, persistence across restarts and SIGKILL, SIGTERM and SIGINT stopping cleanly
(exit 0, nothing acknowledged lost, leases released at once), and a property-based test
throwing random requests at it against a model of the balances.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import wes
from tests.support.servers import redis_server
from tests.support.waiting import wait_until
from wes.bank import (
    ACCOUNT,
    MAX_AMOUNT,
    MAX_BALANCE,
    SESSION,
    Account,
    BalanceLimitExceeded,
    InsufficientFunds,
    build_node,
    create_app,
)

WES = Path(sys.executable).with_name("wes")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


class Service:
    """A `wes bank serve` subprocess on a free port, its log in a file."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.log = workdir / f"serve-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(WES), "bank", "serve", "--port", "0", *args],
                cwd=workdir,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.url = self._wait_for_address()

    def _wait_for_address(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline().decode()
                found = re.search(r"http://[\d.]+:\d+", line)
                if found:
                    return found.group(0)
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        raise AssertionError(f"the service did not start:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit code."""
        self.proc.send_signal(sig)
        return self.proc.wait(STOP_TIMEOUT)

    async def astop(self, sig: int = signal.SIGTERM) -> int:
        """`stop` without blocking the event loop."""
        self.proc.send_signal(sig)
        return await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10.0)


@contextlib.contextmanager
def serving(workdir: Path, *args: str) -> Iterator[Service]:
    service = Service(workdir, *args)
    try:
        yield service
    finally:
        service.kill()


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service shared by the tests that need no restart; each test uses its own names."""
    workdir = tmp_path_factory.mktemp("bank")
    with serving(workdir, "--db", "bank.db", "--idle-timeout", "600") as service:
        yield service


def uniq(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def error_of(response: httpx.Response, status: int) -> str:
    """Assert a JSON error answer with `status`; return its error code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str), body
    return str(body["error"])


async def post(
    client: httpx.AsyncClient, path: str, user: str | None, body: Any = None, **kw: Any
) -> httpx.Response:
    headers = {} if user is None else {"User-Id": user}
    if body is not None:
        kw["content"] = json.dumps(body)
    return await client.post(path, headers=headers, **kw)


async def raw_request(url: str, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Write a request's head byte by byte to the socket (for requests httpx refuses to
    send); return the answer's status, headers and body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + b"\r\n\r\n")
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body
    finally:
        writer.close()


async def balance(client: httpx.AsyncClient, user: str, name: str) -> int:
    response = await client.get(f"/{name}/balance", headers={"User-Id": user})
    assert response.status_code == 200, response.text
    assert response.json() == {"balance": response.json()["balance"]}
    value = response.json()["balance"]
    assert type(value) is int
    return value


async def open_with(client: httpx.AsyncClient, user: str, name: str, amount: int = 0) -> None:
    assert (await post(client, f"/{name}", user)).status_code == 201
    if amount:
        response = await post(client, f"/{name}/insert", user, {"amount": amount})
        assert response.json() == {"account": name, "balance": amount}


# -- the routes -----------------------------------------------------------------------------


async def test_create_then_reopen(bank: Service) -> None:
    """POST /{account} creates an account (201, balance 0); again it just opens it (200)."""
    user, name = uniq("u"), uniq()
    async with bank.client() as client:
        created = await post(client, f"/{name}", user)
        assert created.status_code == 201
        assert created.json() == {"account": name, "balance": 0, "created": True}
        again = await post(client, f"/{name}", user)
        assert again.status_code == 200
        assert again.json() == {"account": name, "balance": 0, "created": False}
        assert await balance(client, user, name) == 0


async def test_insert_withdraw_transfer_balance(bank: Service) -> None:
    """Insert, withdraw and transfer answer the new balances; GET balance agrees."""
    user, a, b = uniq("u"), uniq(), uniq()
    async with bank.client() as client:
        await open_with(client, user, a, 100)
        await open_with(client, user, b)
        drawn = await post(client, f"/{a}/withdraw", user, {"amount": 30})
        assert drawn.status_code == 200 and drawn.json() == {"account": a, "balance": 70}
        moved = await post(client, f"/{a}/transfer", user, {"to": b, "amount": 25})
        assert moved.status_code == 200
        assert moved.json() == {"from": a, "to": b, "amount": 25, "balances": {a: 45, b: 25}}
        assert (await balance(client, user, a), await balance(client, user, b)) == (45, 25)


async def test_login_and_logout(bank: Service) -> None:
    """POST / starts the session and lists its accounts; DELETE / ends it, unlocking them."""
    ann, eve, name = uniq("ann"), uniq("eve"), uniq()
    async with bank.client() as client:
        assert (await post(client, "/", ann)).json() == {"session": ann, "accounts": []}
        await open_with(client, ann, name, 5)
        assert (await post(client, "/", ann)).json() == {"session": ann, "accounts": [name]}
        assert error_of(await post(client, f"/{name}", eve), 409) == "account_locked"
        out = await client.delete("/", headers={"User-Id": ann})
        assert out.status_code == 200 and out.json() == {"session": ann, "stopped": True}
        again = await client.delete("/", headers={"User-Id": ann})
        assert again.json() == {"session": ann, "stopped": False}
        taken = await post(client, f"/{name}", eve)
        assert taken.status_code == 200 and taken.json()["balance"] == 5


async def test_account_of_another_session_is_409(bank: Service) -> None:
    """An account open in one session cannot be opened, changed or transferred to from
    another (409 account_locked); its balance can still be read."""
    ann, eve, name, mine = uniq("ann"), uniq("eve"), uniq(), uniq()
    async with bank.client() as client:
        await open_with(client, ann, name, 10)
        await open_with(client, eve, mine, 10)
        for path, body in [
            (f"/{name}", None),
            (f"/{name}/insert", {"amount": 1}),
            (f"/{name}/withdraw", {"amount": 1}),
            (f"/{name}/transfer", {"to": mine, "amount": 1}),
            (f"/{mine}/transfer", {"to": name, "amount": 1}),
        ]:
            response = await post(client, path, eve, body)
            assert error_of(response, 409) == "account_locked", path
            assert response.json()["account"] == name
        assert await balance(client, eve, name) == 10
        assert await balance(client, ann, mine) == 10


async def test_unknown_account_is_404(bank: Service) -> None:
    """Every route on an account that was never created answers 404 account_not_found."""
    user, known, ghost = uniq("u"), uniq(), uniq("ghost")
    async with bank.client() as client:
        await open_with(client, user, known, 10)
        for path, body in [
            (f"/{ghost}/insert", {"amount": 1}),
            (f"/{ghost}/withdraw", {"amount": 1}),
            (f"/{ghost}/transfer", {"to": known, "amount": 1}),
            (f"/{known}/transfer", {"to": ghost, "amount": 1}),
        ]:
            response = await post(client, path, user, body)
            assert error_of(response, 404) == "account_not_found", path
            assert response.json()["account"] == ghost
        missing = await client.get(f"/{ghost}/balance", headers={"User-Id": user})
        assert error_of(missing, 404) == "account_not_found"
        assert await balance(client, user, known) == 10


async def test_missing_user_id_is_400(bank: Service) -> None:
    """Every bank route without a User-Id header answers 400 missing_user_id."""
    name = uniq()
    async with bank.client() as client:
        for method, path, body in [
            ("POST", "/", None),
            ("DELETE", "/", None),
            ("POST", f"/{name}", None),
            ("POST", f"/{name}/insert", {"amount": 1}),
            ("POST", f"/{name}/withdraw", {"amount": 1}),
            ("POST", f"/{name}/transfer", {"to": "x", "amount": 1}),
            ("GET", f"/{name}/balance", None),
        ]:
            content = None if body is None else json.dumps(body)
            response = await client.request(method, path, content=content)
            assert error_of(response, 400) == "missing_user_id", (method, path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"amount=5",
        b"[5]",
        b'"5"',
        b"null",
        b"{}",
        b'{"amont": 5}',
        b"\xff\xfe\x00{",
        b"[" * 10000,
    ],
)
async def test_bad_json_is_400(bank: Service, content: bytes) -> None:
    """A body that is not a JSON object with an amount answers 400 and changes nothing."""
    user, name = uniq("u"), uniq()
    async with bank.client() as client:
        await open_with(client, user, name, 7)
        for op in ("insert", "withdraw", "transfer"):
            response = await client.post(
                f"/{name}/{op}", content=content, headers={"User-Id": user}
            )
            assert error_of(response, 400) in ("invalid_json", "invalid_request"), op
        assert await balance(client, user, name) == 7


BAD_AMOUNTS: list[Any] = [
    0,
    -1,
    -(10**20),
    1.5,
    2.0,
    True,
    False,
    "5",
    None,
    [5],
    {"n": 5},
    MAX_AMOUNT + 1,
    10**30,
]


async def test_bad_amounts_are_400(bank: Service) -> None:
    """Amounts that are not integers from 1 to MAX_AMOUNT answer 400 on every route."""
    user, a, b = uniq("u"), uniq(), uniq()
    async with bank.client() as client:
        await open_with(client, user, a, 50)
        await open_with(client, user, b)
        for amount in BAD_AMOUNTS:
            for path, body in [
                (f"/{a}/insert", {"amount": amount}),
                (f"/{a}/withdraw", {"amount": amount}),
                (f"/{a}/transfer", {"to": b, "amount": amount}),
            ]:
                response = await post(client, path, user, body)
                assert error_of(response, 400) == "invalid_request", (path, amount)
        for raw in (b'{"amount": NaN}', b'{"amount": Infinity}', b'{"amount": 1e400}'):
            response = await client.post(f"/{a}/insert", content=raw, headers={"User-Id": user})
            assert error_of(response, 400) == "invalid_request", raw
        same = await post(client, f"/{a}/transfer", user, {"to": a, "amount": 1})
        assert error_of(same, 400) == "invalid_request"
        for to in (None, 5, ["x"], "", "é", "metrics"):
            response = await post(client, f"/{a}/transfer", user, {"to": to, "amount": 1})
            assert error_of(response, 400) == "invalid_request", to
        edge = await post(client, f"/{a}/insert", user, {"amount": MAX_AMOUNT})
        assert edge.status_code == 200
        assert await balance(client, user, a) == 50 + MAX_AMOUNT
        assert await balance(client, user, b) == 0


async def test_huge_integers_are_out_of_range_not_invalid_json(bank: Service) -> None:
    """An integer of hundreds or thousands of digits is valid JSON: as an amount it answers
    400 invalid_request saying the amount is out of range, as the transfer's target 400 too;
    in a field the request does not use it is ignored. Nothing changes on a refusal."""
    user, a, b = uniq("u"), uniq(), uniq()
    async with bank.client() as client:
        await open_with(client, user, a, 7)
        await open_with(client, user, b)
        for digits in (640, 641, 4300, 4301, 5001):
            for sign in ("", "-"):
                huge = sign + "1" + "0" * (digits - 1)
                for path, raw in [
                    (f"/{a}/insert", f'{{"amount": {huge}}}'),
                    (f"/{a}/withdraw", f'{{"amount": {huge}}}'),
                    (f"/{a}/transfer", f'{{"to": "{b}", "amount": {huge}}}'),
                ]:
                    response = await client.post(path, content=raw, headers={"User-Id": user})
                    assert error_of(response, 400) == "invalid_request", (path, sign, digits)
                    message = response.json()["message"]
                    assert f"an amount must be from 1 to {MAX_AMOUNT}" in message, message
        huge = "1" + "0" * 5000
        target = await client.post(
            f"/{a}/transfer", content=f'{{"to": {huge}, "amount": 1}}', headers={"User-Id": user}
        )
        assert error_of(target, 400) == "invalid_request"
        assert "'to'" in target.json()["message"]
        padded = await client.post(
            f"/{a}/insert", content=f'{{"amount": 2, "pad": [{huge}]}}', headers={"User-Id": user}
        )
        assert padded.status_code == 200 and padded.json() == {"account": a, "balance": 9}
        assert (await balance(client, user, a), await balance(client, user, b)) == (9, 0)


WEIRD_NAMES = [
    "é",
    "名前",
    "a b",
    "a" * 65,
    "a" * 4000,
    "a%00b",
    "a%09b",
    "%F0%9F%92%B0",
    "%ff",
    "a.b",
    "'; DROP TABLE wes_state; --",
    "metrics",
    "api",
]


async def test_weird_account_names_are_400_or_404(bank: Service) -> None:
    """Unicode, control characters, very long names, reserved names and odd paths answer 400
    or 404 with a JSON body on every route, never a 5xx."""
    user = uniq("u")
    async with bank.client() as client:
        for name in WEIRD_NAMES:
            for method, path, body in [
                ("POST", f"/{name}", None),
                ("POST", f"/{name}/insert", {"amount": 1}),
                ("POST", f"/{name}/transfer", {"to": "x", "amount": 1}),
                ("GET", f"/{name}/balance", None),
            ]:
                content = None if body is None else json.dumps(body)
                response = await client.request(
                    method, path, content=content, headers={"User-Id": user}
                )
                assert response.status_code in (400, 404), (name, path, response.text)
                error_of(response, response.status_code)
        for path in ("/a%2Fb/insert", "/a/b/c", "/x/nothing", "/x/insert/more"):
            response = await post(client, path, user, {"amount": 1})
            assert error_of(response, 404) == "not_found", path
        # Past the server's own limit on a request line (and httpx's): its 400, not a 5xx.
        head = b"GET /" + b"a" * 100_000 + b"/balance HTTP/1.1\r\nHost: x\r\nUser-Id: u"
        status, _, _ = await raw_request(bank.url, head)
        assert 400 <= status < 500


@pytest.mark.parametrize(
    "header",
    [b"", b" ", "é".encode(), "💰".encode(), b"a" * 65, b"a" * 5000, b"a/b", b"a b", b"a\x01"],
)
async def test_weird_user_ids_are_400(bank: Service, header: bytes) -> None:
    """A User-Id that is empty, too long, or not plain ASCII answers 400 (invalid_request,
    unless the HTTP server itself refuses the header first)."""
    head = b"POST /" + uniq().encode() + b" HTTP/1.1\r\nHost: x\r\nUser-Id: " + header
    status, headers, body = await raw_request(bank.url, head)
    assert status == 400, body
    if headers.get("content-type", "").startswith("application/json"):
        assert json.loads(body)["error"] == "invalid_request"
    else:
        assert header == b"a\x01", (headers, body)  # h11 refuses control characters


async def test_unknown_routes_and_methods(bank: Service) -> None:
    """Unknown routes answer 404 and wrong methods 405 (with Allow), both as JSON."""
    user, name = uniq("u"), uniq()
    async with bank.client() as client:
        await open_with(client, user, name)
        assert error_of(await client.get(f"/{name}", headers={"User-Id": user}), 405)
        wrong = await client.put(f"/{name}/insert", headers={"User-Id": user})
        assert error_of(wrong, 405) == "method_not_allowed"
        assert "POST" in wrong.headers["allow"]
        assert error_of(await client.delete(f"/{name}/balance"), 405)
        assert error_of(await client.get("/nothing/here/at/all"), 404) == "not_found"


async def test_too_large_body_is_413(bank: Service) -> None:
    """A body over the limit answers 413, with or without a Content-Length."""
    user, name = uniq("u"), uniq()
    big = json.dumps({"amount": 1, "pad": "x" * 100_000}).encode()

    async def chunks() -> Any:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    async with bank.client() as client:
        await open_with(client, user, name)
        sized = await client.post(f"/{name}/insert", content=big, headers={"User-Id": user})
        assert error_of(sized, 413) == "body_too_large"
        streamed = await client.post(f"/{name}/insert", content=chunks(), headers={"User-Id": user})
        assert error_of(streamed, 413) == "body_too_large"
        assert await balance(client, user, name) == 0


# -- overdrafts -----------------------------------------------------------------------------


async def test_overdraft_is_409_and_session_resumes_from_last_save(bank: Service) -> None:
    """An overdraft answers 409 and ends the session unsaved; the next request resumes it from
    its last save, which holds every request answered with success before."""
    user, eve, a, b = uniq("u"), uniq("eve"), uniq(), uniq()
    async with bank.client() as client:
        await open_with(client, user, a, 100)
        await open_with(client, user, b, 10)
        assert (await post(client, f"/{a}/transfer", user, {"to": b, "amount": 40})).is_success
        refused = await post(client, f"/{a}/withdraw", user, {"amount": 61})
        assert error_of(refused, 409) == "insufficient_funds"
        assert refused.json() | {"message": ""} == {
            "error": "insufficient_funds",
            "message": "",
            "account": a,
            "balance": 60,
            "amount": 61,
            "session_ended": True,
        }
        # The session ended, so its accounts are free; eve reads them as last saved.
        assert (await balance(client, eve, a), await balance(client, eve, b)) == (60, 50)
        again = await post(client, f"/{a}/withdraw", user, {"amount": 60})
        assert again.json() == {"account": a, "balance": 0}
        assert (await post(client, "/", user)).json()["accounts"] == [a]


async def test_failed_transfer_credits_nobody(bank: Service) -> None:
    """A transfer from an account that cannot cover it changes neither account, even the
    target that joined the session first and handled the command before the source."""
    user, a, b = uniq("u"), uniq(), uniq()
    async with bank.client() as client:
        await open_with(client, user, a, 5)
        await open_with(client, user, b, 10)
        refused = await post(client, f"/{b}/transfer", user, {"to": a, "amount": 11})
        assert error_of(refused, 409) == "insufficient_funds"
        assert (await balance(client, user, a), await balance(client, user, b)) == (5, 10)


async def test_balance_limit_is_409(bank: Service) -> None:
    """An insert that would take a balance above MAX_BALANCE answers 409 and changes nothing."""
    user, name = uniq("u"), uniq()
    async with bank.client() as client:
        await open_with(client, user, name)
        total = 0
        while total + MAX_AMOUNT <= MAX_BALANCE:
            assert (await post(client, f"/{name}/insert", user, {"amount": MAX_AMOUNT})).is_success
            total += MAX_AMOUNT
        over = await post(client, f"/{name}/insert", user, {"amount": MAX_AMOUNT})
        assert error_of(over, 409) == "balance_limit_exceeded"
        assert await balance(client, user, name) == total


async def test_concurrent_requests_conserve_money(bank: Service) -> None:
    """Many concurrent transfers in one session and across sessions: each account ends at its
    start plus the transfers acknowledged, and money is conserved."""
    rng = random.Random(3)
    users = [uniq("u") for _ in range(3)]
    names = {user: [uniq() for _ in range(3)] for user in users}
    expected: dict[str, int] = {}
    async with bank.client() as client:
        for user in users:
            for name in names[user]:
                await open_with(client, user, name, 100)
                expected[name] = 100

        async def transfer(user: str) -> None:
            source, target = rng.sample(names[user], 2)
            amount = rng.randint(1, 80)
            response = await post(
                client, f"/{source}/transfer", user, {"to": target, "amount": amount}
            )
            if response.status_code == 200:
                expected[source] -= amount
                expected[target] += amount
            else:
                assert error_of(response, 409) == "insufficient_funds"

        await asyncio.gather(*(transfer(rng.choice(users)) for _ in range(150)))
        for user in users:
            found = {name: await balance(client, user, name) for name in names[user]}
            assert found == {name: expected[name] for name in names[user]}
            assert sum(found.values()) == 300


async def test_metrics_health_and_live_page(bank: Service) -> None:
    """GET /metrics is Prometheus text counting the bank's commands, GET /healthz a constant
    answer, GET / the live page; their names are no account names."""
    user, name = uniq("u"), uniq()
    async with bank.client() as client:
        await open_with(client, user, name, 3)
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert re.search(r'^wes_commands_total\{command="insert"\} [1-9]', text, re.M), text
        assert re.search(r"^wes_live_channels [1-9]", text, re.M)
        assert re.search(r"^wes_live_actors [1-9]", text, re.M)
        assert "wes_command_duration_seconds_bucket" in text
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert error_of(await post(client, "/healthz", user), 400) == "invalid_request"
        live = await client.get("/api/live")
        assert live.status_code == 200 and live.json()["channels"] >= 1


async def test_create_app_in_process_without_sinks(tmp_path: Path) -> None:
    """`create_app` on a node without PrometheusStats or LiveStats serves the bank, a JSON
    line at / and a JSON 404 at /metrics; the caller runs the node around the server."""
    node = build_node(wes.MemoryStore())
    config = uvicorn.Config(create_app(node), port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    async with node:
        task = asyncio.create_task(server.serve())
        await wait_until(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/")).json()["service"] == "wes bank"
                assert error_of(await client.get("/metrics"), 404) == "not_found"
                await open_with(client, "ann", "a", 3)
                assert await balance(client, "ann", "a") == 3
        finally:
            server.should_exit = True
            await task


class FaultyAccount(Account):
    """An account with a bug: inserting 13 raises an exception it does not expect."""

    def _insert(self, amount: int) -> None:
        if amount == 13:
            raise RuntimeError("unlucky")
        super()._insert(amount)


async def test_refusals_log_at_info_crashes_at_error_with_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the HTTP app, an overdraft (a refusal `Account.expected_errors` declares) is
    logged at INFO without a traceback; an exception the account does not expect is still
    logged at ERROR, with exactly one traceback. Both end the session unsaved."""
    assert {InsufficientFunds, BalanceLimitExceeded} <= set(Account.expected_errors)
    node = wes.Node(store=wes.MemoryStore(), stats=wes.LoggingStats())
    node.actor_type(ACCOUNT, FaultyAccount)
    node.channel_type(SESSION, durability="command")
    transport = httpx.ASGITransport(app=create_app(node), raise_app_exceptions=False)
    caplog.set_level(logging.INFO, logger="wes")
    async with node, httpx.AsyncClient(transport=transport, base_url="http://bank") as client:
        await open_with(client, "ann", "a", 5)

        refused = await post(client, "/a/withdraw", "ann", {"amount": 6})
        assert error_of(refused, 409) == "insufficient_funds"
        [overdraft] = [r for r in caplog.records if _logged_error(r) == "InsufficientFunds"]
        assert overdraft.levelno == logging.INFO and overdraft.exc_info is None
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]

        await open_with(client, "ann", "b")
        for _ in range(MAX_BALANCE // MAX_AMOUNT):
            assert (await post(client, "/b/insert", "ann", {"amount": MAX_AMOUNT})).is_success
        refused = await post(client, "/b/insert", "ann", {"amount": MAX_AMOUNT})
        assert error_of(refused, 409) == "balance_limit_exceeded"
        [limit] = [r for r in caplog.records if _logged_error(r) == "BalanceLimitExceeded"]
        assert limit.levelno == logging.INFO and limit.exc_info is None

        crashed = await post(client, "/a/insert", "ann", {"amount": 13})
        assert error_of(crashed, 500) == "internal_error"
        [crash] = [r for r in caplog.records if _logged_error(r) == "RuntimeError"]
        assert crash.levelno == logging.ERROR and crash.exc_info is not None
        assert crash.exc_info[1] is not None and str(crash.exc_info[1]) == "unlucky"
        assert [r for r in caplog.records if r.exc_info] == [crash]
        assert await balance(client, "ann", "a") == 5


def _logged_error(record: logging.LogRecord) -> str | None:
    """The exception type a `LoggingStats` stop record names, if any."""
    fields = getattr(record, "wes", {})
    return fields.get("error") if fields.get("kind") == "stop" else None


def test_create_app_without_starlette_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Starlette, `wes.bank.create_app` raises ImportError naming the extra."""
    monkeypatch.delitem(sys.modules, "wes.bank._app", raising=False)
    monkeypatch.setitem(sys.modules, "starlette.applications", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'wes-actors[service]'")):
        create_app(build_node(wes.MemoryStore()))


# -- sessions over time, restarts and signals -----------------------------------------------


@pytest.mark.subprocess
async def test_idle_session_ends_and_unlocks(tmp_path: Path) -> None:
    """A session without requests for --idle-timeout seconds ends, saving and unlocking its
    accounts for other sessions."""
    with serving(tmp_path, "--idle-timeout", "0.3") as service:
        async with service.client() as client:
            await open_with(client, "ann", "acct", 9)
            assert error_of(await post(client, "/acct", "eve"), 409) == "account_locked"
            started = time.monotonic()
            while (taken := await post(client, "/acct", "eve")).status_code == 409:
                assert time.monotonic() - started < 5, "ann's session never ended"
                await asyncio.sleep(0.05)
            assert taken.status_code == 200 and taken.json()["balance"] == 9


@pytest.mark.subprocess
async def test_balances_persist_across_restart(tmp_path: Path) -> None:
    """What one service run acknowledged, the next run on the same --db finds."""
    with serving(tmp_path, "--db", "bank.db") as service:
        async with service.client() as client:
            await open_with(client, "ann", "a", 100)
            await open_with(client, "ann", "b")
            assert (await post(client, "/a/transfer", "ann", {"to": "b", "amount": 35})).is_success
        assert await service.astop() == 0
    assert (tmp_path / "bank.db").exists()
    with serving(tmp_path, "--db", "bank.db") as service:
        async with service.client() as client:
            assert (await balance(client, "eve", "a"), await balance(client, "eve", "b")) == (
                65,
                35,
            )
            assert (await post(client, "/a", "eve")).json()["created"] is False


@pytest.mark.subprocess
async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Every request answered with success survives a SIGKILL of the service (durability
    "command"), and an overdraft before the kill takes none of them back."""
    with serving(tmp_path, "--db", "bank.db") as service:
        async with service.client() as client:
            await open_with(client, "ann", "a", 10)
            await open_with(client, "ann", "b")
            for amount in range(1, 21):
                assert (await post(client, "/a/insert", "ann", {"amount": amount})).is_success
            assert (await post(client, "/a/transfer", "ann", {"to": "b", "amount": 7})).is_success
            refused = await post(client, "/b/withdraw", "ann", {"amount": 1000})
            assert refused.status_code == 409
        service.proc.kill()
        service.proc.wait()
    with serving(tmp_path, "--db", "bank.db") as service:
        async with service.client() as client:
            assert await balance(client, "ann", "a") == 10 + 210 - 7
            assert await balance(client, "ann", "b") == 7


@pytest.mark.subprocess
async def test_sigterm_saves_releases_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM while requests stream in: the service stops accepting, finishes, exits 0; no
    acknowledged insert is lost, and a second process sharing the registry takes the
    session's account at once (its lease was released, not left to expire)."""
    shared = ("--db", "bank.db", "--registry", f"sqlite:///{tmp_path / 'registry.db'}")
    with serving(tmp_path, *shared) as one, serving(tmp_path, *shared) as two:
        async with one.client() as c1, two.client() as c2:
            await open_with(c1, "ann", "acct", 1)
            # The registry is shared: the other process sees the account and the session held.
            assert error_of(await post(c2, "/acct", "eve"), 409) == "account_locked"
            assert error_of(await post(c2, "/", "ann"), 409) == "session_elsewhere"

            acked = [1]
            unknown: list[int] = []
            amounts = itertools.count(1)

            async def insert_until_refused() -> None:
                while True:
                    amount = next(amounts)
                    try:
                        response = await post(c1, "/acct/insert", "ann", {"amount": amount})
                    except httpx.ConnectError:
                        return  # refused: it never reached the service
                    except httpx.TransportError:
                        unknown.append(amount)
                        return
                    if response.status_code != 200:
                        assert response.status_code == 503, response.text
                        return
                    acked.append(amount)

            workers = [asyncio.create_task(insert_until_refused()) for _ in range(4)]
            await wait_until(lambda: len(acked) > 30)
            assert await one.astop(signal.SIGTERM) == 0
            await asyncio.gather(*workers)

            taken = await post(c2, "/acct", "eve")
            assert taken.status_code == 200, taken.text
            stored = taken.json()["balance"]
            assert sum(acked) <= stored <= sum(acked) + sum(unknown)
            assert await balance(c2, "eve", "acct") == stored
    log = one.log.read_text()
    assert "SIGTERM: stopping" in log and "every lease released" in log, log


@pytest.mark.redis
@pytest.mark.subprocess
async def test_store_down_is_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the store goes away, requests answer 503 with Retry-After (not acknowledged,
    never a 500), and the service still stops with exit 0."""
    monkeypatch.delenv("WES_REDIS_URL", raising=False)  # a private server: this one dies
    with redis_server() as url, serving(tmp_path, "--store", url) as service:
        async with service.client() as client:
            await open_with(client, "ann", "a", 8)
            await asyncio.to_thread(_stop_redis, url)
            down = await post(client, "/a/insert", "ann", {"amount": 1})
            assert error_of(down, 503) == "store_unavailable"
            assert down.headers["retry-after"] == "1"
            read = await client.get("/a/balance", headers={"User-Id": "ann"})
            assert error_of(read, 503) == "store_unavailable"
        assert await service.astop() == 0


def _stop_redis(url: str) -> None:
    import redis

    with contextlib.suppress(redis.ConnectionError):
        redis.Redis.from_url(url).shutdown(nosave=True)


@pytest.mark.subprocess
async def test_sigint_exits_0_and_logs_json(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) stops the service like SIGTERM: exit 0, sessions saved; with
    --log-json every log line is one JSON object, an overdraft's at INFO without a
    traceback (a refusal, not a crash)."""
    with serving(tmp_path, "--db", "bank.db", "--log-json") as service:
        async with service.client() as client:
            await open_with(client, "ann", "a", 4)
            assert (await post(client, "/a/withdraw", "ann", {"amount": 5})).status_code == 409
        assert await service.astop(signal.SIGINT) == 0
    records = [json.loads(line) for line in service.log.read_text().splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert not any("color_message" in r for r in records)
    [overdraft] = [r for r in records if r.get("error") == "InsufficientFunds"]
    assert overdraft["level"] == "INFO" and "traceback" not in overdraft, overdraft
    assert any(r["msg"] == "SIGINT: stopping" for r in records)
    with serving(tmp_path, "--db", "bank.db") as service:
        async with service.client() as client:
            assert await balance(client, "x", "a") == 4


# -- random requests against a model ----------------------------------------------------------

USERS = ["ann", "ann", "bob", "eve"]  # ann, the main customer, most often
NAMES = ["a", "b", "c", "d"]
_runs = itertools.count()


AMOUNTS = st.integers(1, 150) | st.sampled_from([1, MAX_AMOUNT])
NOT_AMOUNTS = st.sampled_from(BAD_AMOUNTS) | st.floats() | st.text(max_size=3)


def _refused_by_server(response: httpx.Response) -> bool:
    """A 400 the HTTP server answers itself, before the app sees the request: a header value
    with control characters, which httptools refuses (h11 lets some through)."""
    return response.status_code == 400 and response.text == "Invalid HTTP request received."


class BankModel(RuleBasedStateMachine):
    """Random bank requests from a few users over a few accounts, each answer checked
    against a model of balances and of which session holds which account."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.client = httpx.Client(base_url=url, timeout=10.0)
        run = next(_runs)
        self.prefix = f"p{os.getpid()}r{run}"  # a fresh world per run on the shared service
        self.balances: dict[str, int] = {}
        self.holder: dict[str, str] = {}

    def teardown(self) -> None:
        self.client.close()

    def _user(self, user: str) -> str:
        return f"{self.prefix}-{user}"

    def _name(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _call(self, method: str, path: str, user: str, body: Any = None) -> httpx.Response:
        content = None if body is None else json.dumps(body)
        response = self.client.request(
            method, path, content=content, headers={"User-Id": self._user(user)}
        )
        assert response.status_code < 500, response.text
        return response

    def _end_session(self, user: str) -> None:
        self.holder = {n: u for n, u in self.holder.items() if u != user}

    def _join(self, user: str, name: str) -> int | None:
        """The model's answer to loading `name` into `user`'s session: None if it loads."""
        if name not in self.balances:
            return 404
        if self.holder.get(name, user) != user:
            return 409
        self.holder[name] = user
        return None

    @initialize(
        owners=st.lists(st.sampled_from(["ann", "ann", "bob"]), min_size=3, max_size=3),
        start=st.integers(0, 200),
    )
    def start(self, owners: list[str], start: int) -> None:
        """Accounts a, b and c exist from the start; d only if a rule opens it."""
        for name, user in zip(["a", "b", "c"], owners, strict=True):
            assert self._call("POST", f"/{self._name(name)}", user).status_code == 201
            if start:
                body = {"amount": start}
                assert self._call("POST", f"/{self._name(name)}/insert", user, body).is_success
            self.balances[name] = start
            self.holder[name] = user

    @rule(user=st.sampled_from(USERS), name=st.sampled_from(NAMES))
    def open(self, user: str, name: str) -> None:
        response = self._call("POST", f"/{self._name(name)}", user)
        if self.holder.get(name, user) != user:
            assert error_of(response, 409) == "account_locked"
        elif name in self.balances:
            assert response.status_code == 200, response.text
            assert response.json()["balance"] == self.balances[name]
            self.holder[name] = user
        else:
            assert response.status_code == 201, response.text
            self.balances[name] = 0
            self.holder[name] = user

    @rule(
        user=st.sampled_from(USERS),
        name=st.sampled_from(NAMES),
        op=st.sampled_from(["insert", "withdraw"]),
        amount=AMOUNTS,
    )
    def change(self, user: str, name: str, op: str, amount: int) -> None:
        response = self._call("POST", f"/{self._name(name)}/{op}", user, {"amount": amount})
        refused = self._join(user, name)
        if refused is not None:
            error_of(response, refused)
            return
        new = self.balances[name] + (amount if op == "insert" else -amount)
        if not 0 <= new <= MAX_BALANCE:
            assert error_of(response, 409) in ("insufficient_funds", "balance_limit_exceeded")
            self._end_session(user)
            return
        assert response.status_code == 200, response.text
        assert response.json() == {"account": self._name(name), "balance": new}
        self.balances[name] = new

    @rule(
        user=st.sampled_from(USERS),
        source=st.sampled_from(NAMES),
        dest=st.sampled_from(NAMES),
        amount=AMOUNTS,
    )
    def transfer(self, user: str, source: str, dest: str, amount: int) -> None:
        target = dest  # `target` is a keyword of `rule`
        body = {"to": self._name(target), "amount": amount}
        response = self._call("POST", f"/{self._name(source)}/transfer", user, body)
        if source == target:
            assert error_of(response, 400) == "invalid_request"
            return
        for name in (source, target):  # loaded one at a time: the source may stay
            refused = self._join(user, name)
            if refused is not None:
                error_of(response, refused)
                return
        if amount > self.balances[source] or self.balances[target] + amount > MAX_BALANCE:
            assert error_of(response, 409) in ("insufficient_funds", "balance_limit_exceeded")
            self._end_session(user)
            return
        assert response.status_code == 200, response.text
        self.balances[source] -= amount
        self.balances[target] += amount
        expected = {self._name(n): self.balances[n] for n in (source, target)}
        assert response.json()["balances"] == expected

    @rule(
        user=st.sampled_from(USERS),
        name=st.sampled_from(NAMES),
        op=st.sampled_from(["insert", "withdraw", "transfer"]),
        amount=NOT_AMOUNTS,
    )
    def bad_amount(self, user: str, name: str, op: str, amount: Any) -> None:
        body = {"to": self._name("a" if name != "a" else "b"), "amount": amount}
        response = self._call("POST", f"/{self._name(name)}/{op}", user, body)
        assert error_of(response, 400) == "invalid_request"

    @rule(user=st.sampled_from(USERS))
    def login(self, user: str) -> None:
        response = self._call("POST", "/", user)
        held = sorted(self._name(n) for n, u in self.holder.items() if u == user)
        assert response.status_code == 200 and response.json()["accounts"] == held

    @rule(user=st.sampled_from(USERS))
    def logout(self, user: str) -> None:
        assert self._call("DELETE", "/", user).status_code == 200
        self._end_session(user)

    @rule(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        segments=st.lists(st.text(max_size=12), max_size=4),
        user=st.none() | st.binary(max_size=20),
        body=st.none()
        | st.binary(max_size=40)
        | st.dictionaries(
            st.sampled_from(["amount", "to", "x"]),
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        ).map(lambda d: json.dumps(d).encode()),
    )
    def anything(
        self, method: str, segments: list[str], user: bytes | None, body: bytes | None
    ) -> None:
        """A random request: no 5xx, and (by the invariant) no model balance changed."""
        path = "/" + "/".join(quote(segment, safe="") for segment in segments)
        assume(self.prefix not in path)
        headers: dict[bytes, bytes] = {} if user is None else {b"User-Id": user}
        try:
            response = self.client.request(method, path, content=body, headers=headers)
        except (httpx.LocalProtocolError, httpx.InvalidURL):
            # httpx itself refuses to send it: a header it cannot encode, or a path of empty
            # segments ("//...") it reads as a relative URL with a host.
            assume(False)
            return
        assert response.status_code < 500, (method, path, response.text)
        if method != "HEAD" and response.status_code >= 400 and not _refused_by_server(response):
            assert response.json()["error"]

    @invariant()
    def balances_match(self) -> None:
        for name, expected in self.balances.items():
            response = self._call("GET", f"/{self._name(name)}/balance", "bob")
            assert response.json() == {"balance": expected}, name


def test_random_requests_match_the_model(bank: Service) -> None:
    """Random requests, valid and not, from several users: never a 5xx, every answer is the
    model's, and no balance is ever corrupted."""
    run_state_machine_as_test(
        lambda: BankModel(bank.url),  # type: ignore[arg-type]  # hypothesis takes any factory
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
