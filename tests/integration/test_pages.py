"""The dashboard's page module on its own: which trace-link templates it takes (vpo.telemetry.trace_link), that only
the files under static/ are served and with which types, and that the page it renders
escapes what it is given and loads nothing from another host (vpo.server.pages)."""

import asyncio
import logging
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.helpers import database_with_files
from vpo.server import make_app, pages
from vpo.telemetry import trace_link


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("http://localhost:16686/trace/{trace_id}", True),
        ("https://tempo.example/explore?trace={trace_id}&x=1", True),
        ("http://localhost:16686/trace/", False),  # no placeholder
        ("javascript:alert('{trace_id}')", False),
        ("ftp://host/{trace_id}", False),
        ("", False),
        (None, False),
    ],
)
def test_trace_template(value: str | None, taken: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert trace_link.checked_template(value) == (value if taken else None)
    assert bool(caplog.records) is (not taken and bool(value))


def test_only_the_static_files_are_served_with_their_types(tmp_path: Path) -> None:
    app = make_app(database_with_files(tmp_path / "vpo.db"), trace_url="http://h/{trace_id}")
    names = set(app[pages.PAGES].assets)
    assert names == {"dashboard.js", "dashboard.css", "vendor/chart.umd.min.js"}

    async def scenario() -> None:
        async with TestClient(TestServer(app)) as client:
            script = await client.get("/static/dashboard.js")
            assert script.status == 200
            assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
            etag = script.headers["ETag"]
            again = await client.get("/static/dashboard.js", headers={"If-None-Match": etag})
            assert again.status == 304
            source = (pages.STATIC / "vendor" / "chart.umd.min.js").read_bytes()
            chart = "/static/vendor/chart.umd.min.js"
            plain = await client.get(chart, headers={"Accept-Encoding": "identity"})
            assert "Content-Encoding" not in plain.headers and await plain.read() == source
            packed = await client.get(chart, headers={"Accept-Encoding": "gzip, br"})
            assert packed.headers["Content-Encoding"] == "gzip"
            assert packed.headers["Vary"] == "Accept-Encoding"
            assert int(packed.headers["Content-Length"]) < len(source) // 2
            assert await packed.read() == source  # the client unpacks it
            assert packed.headers["ETag"] != plain.headers["ETag"]
            cached = {"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]}
            assert (await client.get(chart, headers=cached)).status == 304
            for missing in ("/static/vendor/chart.js.LICENSE.md", "/static/../app.py"):
                answer = await client.get(missing)
                assert answer.status == 404 and "error" in await answer.json()
            page = await client.get("/stats?range=%22%3E%3Cscript%3Ex")
            html = await page.text()
            assert page.status == 200 and "<script>x" not in html
            assert "&#34;&gt;&lt;script&gt;x" in html
            assert 'data-trace-url="http://h/{trace_id}"' in html
            hosts = re.findall(r'(?:src|href)="(?!/|data:|#)([^"]*)"', html)
            assert hosts == [], hosts

    asyncio.run(scenario())
