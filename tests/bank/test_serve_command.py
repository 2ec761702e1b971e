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
