"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.programs import ROOT, run_python

pytestmark = pytest.mark.subprocess  # every test runs the README's code as a program

README = ROOT / "README.md"


def quickstart() -> str:
    """The first ```python block of the README."""
    found = re.search(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    assert found, "README.md has no ```python block"
    return found.group(1)


def run_script(path: Path) -> str:
    return run_python(path.name, path.parent)


def test_quickstart_runs_and_persists(tmp_path: Path) -> None:
    """The quickstart runs in a fresh directory and a second run finds the counter it saved."""
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart(), encoding="utf-8")
    assert run_script(script) == "a = 2\n"
    assert run_script(script) == "a = 4\n"
