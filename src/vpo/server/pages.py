"""The dashboard page of `vpo serve`: GET `/stats` (and `/` redirecting there) and the
files it loads from GET `/static/{name}` (docs/cli.md, "The dashboard").

The page is server-rendered HTML (Jinja2, autoescaped) holding the chosen time range and
the trace-link template in data- attributes; a small script (static/dashboard.js) fills it
from the JSON API and draws the charts with the vendored Chart.js (static/vendor/,
re-vendored by scripts/vendor-chart.sh). Nothing comes from another host, so it works with
no network, and the Content-Security-Policy allows only the server's own scripts, styles
and connections: a file path or policy name that looks like markup stays text.

Everything served here is read into memory at start (a few hundred KiB): a broken
template or a missing static file fails the start, not a request, and no request path
ever reaches the file system.
"""

import gzip
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

import vpo
from vpo.telemetry import trace_link

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}  # what /static/ serves
HTML = "text/html"

# Time ranges of the page: each is also the API's `since` (an age), except "all".
RANGES = {
    "24h": "24 h",
    "7d": "7 d",
    "30d": "30 d",
    "90d": "90 d",
    "365d": "365 d",
    "all": "all",
}
DEFAULT_RANGE = "30d"
_SHOWN = 40  # characters of an unknown range quoted back on the page

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    """One static file as served, and gzipped once at start for the browsers that take it
    (Chart.js goes from 210 KB to 71 KB: it matters on a phone over the LAN)."""

    body: bytes
    content_type: str
    etag: str
    gzipped: bytes


@dataclass(frozen=True)
class Pages:
    """What the page routes serve, prepared at start."""

    template: "jinja2.Template"
    pages: dict[str, bytes]  # range → the rendered page
    assets: dict[str, Asset]  # name under /static/ → file
    trace_url: str | None


PAGES: web.AppKey[Pages] = web.AppKey("pages", Pages)


def _assets() -> dict[str, Asset]:
    assets = {}
    for path in sorted(STATIC.rglob("*")):
        content_type = STATIC_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        assets[path.relative_to(STATIC).as_posix()] = Asset(body, content_type, etag, gzipped)
    return assets


def _template() -> "jinja2.Template":
    import jinja2  # only `vpo serve` needs it: kept out of the CLI's start-up

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # paths and policy names are user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("stats.html")


def _page(
    template: "jinja2.Template", chosen: str, trace_url: str | None, unknown: str | None = None
) -> bytes:
    return template.render(
        range=chosen,
        ranges=RANGES,
        trace_url=trace_url or "",
        version=vpo.__version__,
        unknown_range=unknown,
    ).encode()


def setup(app: web.Application, trace_url: str | None = None) -> None:
    """Add the page routes to `app`; the trace-link template is `trace_url` or, without
    one, `VPO_TRACE_URL` from the environment."""
    checked = (
        trace_link.checked_template(trace_url)
        if trace_url is not None
        else trace_link.trace_url_template()
    )
    assets = _assets()
    missing = {"dashboard.js", "dashboard.css", "vendor/chart.umd.min.js"} - set(assets)
    if missing:
        raise RuntimeError(f"the dashboard's static files are missing: {sorted(missing)}")
    template = _template()
    pages = {name: _page(template, name, checked) for name in RANGES}
    app[PAGES] = Pages(template, pages, assets, checked)
    app.router.add_get("/", index)
    app.router.add_get("/stats", stats)
    app.router.add_get("/static/{name:.+}", static)


async def index(request: web.Request) -> web.Response:
    """`/` is the dashboard's address too."""
    raise web.HTTPFound("/stats")


async def stats(request: web.Request) -> web.Response:
    """The dashboard for `?range=` (default 30 d). An unknown range shows the default
    with a note saying so, rather than an error page: it came from a link or a bookmark.
    Other parameters are left to the script."""
    pages = request.app[PAGES]
    chosen = request.query.get("range") or DEFAULT_RANGE
    body = pages.pages.get(chosen)
    if body is None:
        shown = chosen if len(chosen) <= _SHOWN else chosen[:_SHOWN] + "…"
        body = _page(pages.template, DEFAULT_RANGE, pages.trace_url, unknown=shown)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return web.Response(body=body, content_type=HTML, charset="utf-8", headers=headers)


async def static(request: web.Request) -> web.Response:
    """One of the page's scripts or stylesheets, revalidated by ETag; only names found
    under static/ at start exist."""
    name = request.match_info["name"]
    asset = request.app[PAGES].assets.get(name)
    if asset is None:
        raise web.HTTPNotFound()
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    etag = asset.etag[:-1] + '-gz"' if gzipped else asset.etag  # one tag per encoding
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(
        body=asset.gzipped if gzipped else asset.body,
        content_type=asset.content_type,
        charset="utf-8",
        headers=headers,
    )
