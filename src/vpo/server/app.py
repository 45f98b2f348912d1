"""The aiohttp application of `vpo serve`: the statistics API, `/healthz`, `/metrics`, the
API's OpenAPI document at `/api/openapi.json` and the dashboard page at `/stats`
(docs/cli.md, `vpo serve`; the metric names are those of docs/metrics.md)."""

import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from vpo.server import api, last_run, openapi, otlp_ingest, pages, remote_runs, writes
from vpo.server.db import ReadPool, check_readable
from vpo.server.errors import error_response, json_errors
from vpo.telemetry.collector import LibraryCollector
from vpo.telemetry.serving import render_metrics

if TYPE_CHECKING:
    from vpo.telemetry.setup import Telemetry

log = logging.getLogger(__name__)

REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
DB_PATH: web.AppKey[Path] = web.AppKey("db_path", Path)
MAX_BODY_BYTES = 64 * 1024  # no endpoint takes a body; bounded all the same


def make_app(
    db_path: str | Path,
    telemetry: "Telemetry | None" = None,
    read_threads: int = 4,
    api_token: str | None = None,
    trace_url: str | None = None,
    worker_timeout: float = remote_runs.DEFAULT_TIMEOUT_SECONDS,
) -> web.Application:
    """The application reading `db_path` (which must exist: `vpo serve` creates and
    upgrades it first). `/metrics` serves `telemetry`'s registry — its live instruments
    and library collector — or, without one, a library collector alone. The purge is
    enabled only with an `api_token` (`VPO_API_TOKEN`); workers' runs not heard from for
    `worker_timeout` seconds are recorded as interrupted. The dashboard links runs to their
    traces with `trace_url`, or `VPO_TRACE_URL` without one (vpo.server.pages)."""
    path = Path(db_path)
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY_BYTES)
    pool = ReadPool(path, read_threads)
    app[api.POOL] = pool
    app[DB_PATH] = path
    writer = writes.Writer(path, api_token)
    app[writes.WRITER] = writer
    if telemetry is not None:
        app[REGISTRY] = telemetry.registry
    else:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(LibraryCollector(path))
        app[REGISTRY] = registry
    app.add_routes(writes.routes)
    app.add_routes(api.routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app[openapi.DOCUMENT] = openapi.encoded()
    app.router.add_get("/api/openapi.json", openapi.serve)
    pages.setup(app, trace_url)
    otlp_ingest.setup(app, path, telemetry, worker_timeout)  # POST /v1/traces
    last_run.setup(app)  # GET /v1/files/{file_id}/last-run, for workers

    async def close_pool(_app: web.Application) -> None:
        writer.close()
        pool.close()

    app.on_cleanup.append(close_pool)
    return app


async def healthz(request: web.Request) -> web.Response:
    """200 `{"status": "ok", "db": "ok"}` while the statistics can be read, else 503."""
    try:
        await request.app[api.POOL].run(check_readable, request.app[DB_PATH])
    except sqlite3.Error as exc:
        log.warning("health check: the database cannot be read: %s", exc)
        return error_response(
            503,
            f"The database cannot be read: {exc}.",
            extra={"status": "error", "db": "unreadable"},
        )
    return web.json_response({"status": "ok", "db": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition (OpenMetrics when the scraper asks for it). Collecting
    reads the database, so it runs in the pool, never on the loop."""
    registry = request.app[REGISTRY]
    accept = request.headers.get("Accept")
    body, content_type = await request.app[api.POOL].run(render_metrics, registry, accept)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
