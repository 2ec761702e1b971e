"""The live page's package data: `static/live.html`, `live.css` and `live.js` ship with the
package and make one self-contained page, served at `/` with the style and script inline."""

from __future__ import annotations

import fnmatch
import html
import re
import tomllib
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

import wes
from wes.bank import build_node, create_app
from wes.bank._live import LiveStats, live_page_html

ROOT = Path(__file__).resolve().parents[2]
STATIC = files("wes.bank") / "static"
ASSETS = ("live.html", "live.css", "live.js")


def asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def test_the_assets_are_package_data() -> None:
    """The three files are resources of `wes.bank`, and pyproject.toml ships every file of
    `static/` (so a wheel holds what the page needs)."""
    assert sorted(p.name for p in STATIC.iterdir() if p.is_file()) == sorted(ASSETS)
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["wes.bank"]
    for name in ASSETS:
        assert any(fnmatch.fnmatch(f"static/{name}", pattern) for pattern in patterns), name


def test_the_style_and_script_cannot_end_their_element_early() -> None:
    """Inlined, the CSS holds no `</style` and the script no `</script`; the template has
    one slot for each and the title twice."""
    assert "</style" not in asset("live.css").lower()
    assert "</script" not in asset("live.js").lower()
    slots = re.findall(r"\{\{(\w+)\}\}", asset("live.html"))
    assert sorted(slots) == ["script", "style", "title", "title"]


@pytest.mark.parametrize("title", ["wes bank", "<b>Bank & Co</b>", "{{script}}"])
def test_the_page_is_the_template_with_its_parts_inline(title: str) -> None:
    """The page holds the CSS and the script whole, and the title escaped, as text: a
    title that looks like a slot is not filled."""
    page = live_page_html(title)
    assert asset("live.css").strip() in page and asset("live.js").strip() in page
    assert "{{" not in page.replace(html.escape(title), "")
    assert page.count(f"<title>{html.escape(title)} · live</title>") == 1
    assert page.count(asset("live.js").strip()) == 1


async def test_the_app_serves_the_page_from_the_assets() -> None:
    """`GET /` of the bank app with a `LiveStats` answers the page built from the assets,
    under its title."""
    node = build_node(wes.MemoryStore(), stats=LiveStats())
    app = create_app(node, title="Test <Bank>")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bank") as http:
        response = await http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == live_page_html("Test <Bank>")
    assert "<h1>Test &lt;Bank&gt; <span>" in response.text
