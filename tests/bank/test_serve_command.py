"""`wes bank serve` as the core command hands it over: the `wes` command parses the store and
registry URLs and gives `wes.bank`'s serve the built objects, the URLs and the options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

import wes
from wes._cli import main
from wes.bank import _serve


@pytest.fixture
def handed_over(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `wes bank serve` passes to the bank's `serve`, which here returns 0 at once."""
    calls: list[dict[str, Any]] = []

    def serve(args: argparse.Namespace, store: Any, registry: Any, **urls: str) -> int:
        calls.append({"args": args, "store": store, "registry": registry, **urls})
        return 0

    monkeypatch.setattr(_serve, "serve", serve)
    return calls


def test_the_bank_gets_built_backends_and_the_options(
    handed_over: list[dict[str, Any]],
) -> None:
    """The store and registry arrive built from their URLs, with the URLs to log and the
    bank's own options parsed."""
    argv = ["bank", "serve", "--store", "memory", "--registry", "memory", "--port", "0"]
    assert main([*argv, "--idle-timeout", "2.5", "--log-json"]) == 0
    [call] = handed_over
    assert isinstance(call["store"], wes.MemoryStore)
    assert isinstance(call["registry"], wes.MemoryRegistry)
    assert (call["store_url"], call["registry_url"]) == ("memory", "memory")
    args = call["args"]
    assert (args.host, args.port, args.idle_timeout) == ("127.0.0.1", 0, 2.5)
    assert (args.log_json, args.log_level, args.access_log) == (True, "info", False)


def test_db_is_named_as_a_sqlite_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, handed_over: list[dict[str, Any]]
) -> None:
    """`--db PATH` arrives as a SQLite store, logged as `sqlite:///PATH`."""
    monkeypatch.chdir(tmp_path)
    assert main(["bank", "serve", "--db", "bank.db"]) == 0
    [call] = handed_over
    assert isinstance(call["store"], wes.SqliteStore)
    assert (call["store_url"], call["registry_url"]) == ("sqlite:///bank.db", "memory")


def test_a_missing_extra_is_said_before_a_bad_url(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    handed_over: list[dict[str, Any]],
) -> None:
    """Without the service extra the answer is the extra to install (exit 1), even when a URL
    is bad too, and nothing is handed over."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["bank", "serve", "--store", "mysql://h/db"]) == 1
    assert "wes bank serve needs: pip install 'wes-actors[service]'" in capsys.readouterr().err
    assert handed_over == []


def test_the_server_stack_defaults_to_auto(handed_over: list[dict[str, Any]]) -> None:
    """Without `--loop` and `--http` the server picks uvloop and httptools when installed."""
    assert main(["bank", "serve", "--store", "memory"]) == 0
    [call] = handed_over
    assert (call["args"].loop, call["args"].http) == ("auto", "auto")


def test_auto_runs_on_uvloop_when_installed() -> None:
    """`--loop auto` is uvloop's loop (the service extra installs it); `asyncio` is asyncio's."""
    import uvloop

    assert _serve._loop_factory("auto") is uvloop.new_event_loop
    assert _serve._loop_factory("uvloop") is uvloop.new_event_loop
    assert _serve._loop_factory("asyncio") is None


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvloop, `--loop auto` is asyncio's own loop."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert _serve._loop_factory("auto") is None


@pytest.mark.parametrize(
    ("option", "module"), [(["--loop", "uvloop"], "uvloop"), (["--http", "httptools"], "httptools")]
)
def test_a_missing_server_library_is_said_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: list[str],
    module: str,
) -> None:
    """Asking for uvloop or httptools where it is not installed exits 1 naming the extra."""
    monkeypatch.setitem(sys.modules, module, None)
    assert main(["bank", "serve", "--store", "memory", *option]) == 1
    err = capsys.readouterr().err
    assert f"{option[0]} {module} needs: pip install 'wes-actors[service]'" in err
