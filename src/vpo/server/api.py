"""GET /api/stats/…: the answers of `vpo stats … --format json`, from the same view
functions (vpo.db.aggregates, vpo.db.history), over HTTP; GET /api/library/composition
from the library totals of vpo.db.library; and GET /api/library/files, the dashboard's
search of files by a piece of their path (vpo.server.file_search) (docs/cli.md, `vpo serve`).

Parameters are checked before any database work; each view runs in the read pool. The
aggregate answers (summary, policies, trends, composition, recent runs) are kept, encoded,
while nothing is committed to the database (ReadPool.cached); the window-less summary's
rolling totals are those of the current whole second, which its answer states.
"""

import json
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from vpo.db import aggregates, history, library, workers
from vpo.server import file_search
from vpo.server.db import ReadPool
from vpo.server.errors import ApiError
from vpo.timefmt import parse_when

POOL: web.AppKey[ReadPool] = web.AppKey("pool", ReadPool)

MAX_LIMIT = 100
MAX_RUN_ID = 64  # characters; longer is no id (and is not quoted back)
MAX_WORKER = 255  # characters of a worker (host) name
POLICY_SORTS = ("policy_name", "files_processed", "total_size_saved", "last_used")
ORDERS = {"asc": False, "desc": True}
TRUE = ("1", "true", "yes")
FALSE = ("0", "false", "no")

routes = web.RouteTableDef()


# -- parameters ---------------------------------------------------------------------------


def _params(request: web.Request, allowed: Iterable[str]) -> dict[str, str]:
    """The query's parameters (first value of each), refusing names the route lacks so a
    typo is not silently ignored; empty values count as not given."""
    names = tuple(allowed)
    for name in request.query:
        if name not in names:
            takes = ", ".join(names) if names else "no parameters"
            raise ApiError(400, f"Unknown parameter {name[:40]!r}; this endpoint takes {takes}.")
    return {name: request.query[name] for name in names if request.query.get(name, "") != ""}


def _window(params: dict[str, str]) -> tuple[datetime | None, datetime | None]:
    """`since` and `until` parsed as `--since` and `--until` are (a bare `until` date
    includes its day)."""
    since = _date(params, "since", end_of_day=False)
    until = _date(params, "until", end_of_day=True)
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "since must be earlier than until.")
    return since, until


def _date(params: dict[str, str], name: str, *, end_of_day: bool) -> datetime | None:
    if name not in params:
        return None
    # An age (`since=30d`) counts back from the current whole second, so every request
    # within that second asks the same question and shares one cached answer.
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        return parse_when(params[name], now=now, end_of_day=end_of_day)
    except ValueError as exc:
        raise ApiError(400, f"{name}: {exc}.") from None


def _limit(params: dict[str, str], default: int) -> int:
    text = params.get("limit")
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return int(text)


def _choice(params: dict[str, str], name: str, choices: Iterable[str], default: str) -> str:
    value = params.get(name, default)
    options = tuple(choices)
    if value not in options:
        raise ApiError(400, f"{name} must be one of {', '.join(options)}.")
    return value


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in TRUE + FALSE:
        raise ApiError(400, f"{name} must be true or false.")
    return value in TRUE


async def _read(request: web.Request, fn: Any, *args: object) -> Any:
    return await request.app[POOL].read(fn, *args)


async def _cached_json(request: web.Request, view: Callable[..., Any], *args: Any) -> str | None:
    """The JSON text of `view(conn, *args)` (None for None), computed and encoded in the
    pool, or kept from an identical request if the database has not changed since."""
    return await request.app[POOL].cached(_encoded, view, *args)


def _encoded(conn: sqlite3.Connection, view: Callable[..., Any], *args: Any) -> str | None:
    answer = view(conn, *args)
    return None if answer is None else json.dumps(answer)


# -- views (each runs in a pool thread with that thread's connection) -----------------------


def _summary(
    conn: sqlite3.Connection,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None,
    worker: str | None = None,
) -> Any:
    return aggregates.summary(conn, since, until, now, worker=worker).to_dict()


def _workers(conn: sqlite3.Connection, since: datetime | None, until: datetime | None) -> Any:
    return workers.workers_answer(workers.worker_stats(conn, since, until))


def _policies(
    conn: sqlite3.Connection,
    since: datetime | None,
    until: datetime | None,
    sort: str,
    descending: bool | None,
) -> Any:
    rows = aggregates.policy_stats(conn, since, until, sort=sort, descending=descending)
    return aggregates.policies_answer(rows)


def _policy(
    conn: sqlite3.Connection, name: str, since: datetime | None, until: datetime | None
) -> Any:
    rows = aggregates.policy_stats(conn, since, until, policy=name)
    return rows[0].to_dict() if rows else None


def _file(conn: sqlite3.Connection, file_id: str, limit: int) -> Any:
    found = history.file_runs(conn, file_id, limit)
    return None if found is None else found.to_dict()


def _recent(
    conn: sqlite3.Connection,
    limit: int,
    success: bool | None,
    since: datetime | None,
    until: datetime | None,
) -> Any:
    return history.runs_answer(history.recent_runs(conn, limit, success, since, until))


def _files(conn: sqlite3.Connection, text: str, limit: int) -> Any:
    return file_search.files_answer(file_search.search_files(conn, text, limit))


def _trends(
    conn: sqlite3.Connection, since: datetime | None, until: datetime | None, bucket: str
) -> Any:
    return aggregates.trends_answer(aggregates.trends(conn, since, until, bucket), bucket)


def _detail(conn: sqlite3.Connection, reference: str) -> Any:
    """The run `reference` names (full id or unique prefix), as `vpo stats detail`."""
    try:
        run = history.run_detail(conn, history.resolve_run_id(conn, reference))
    except history.AmbiguousRunIdError as exc:
        raise ApiError(
            409,
            f"The run id {exc.reference[:40]!r} is ambiguous: several runs start with it "
            "(see candidates).",
            candidates=[run.to_dict() for run in exc.candidates],
        ) from None
    if run is None:  # purged between the two reads
        raise ApiError(404, f"No run with id {reference!r} is recorded.")
    return run


# -- routes (fixed paths before /api/stats/{stats_id}) ----------------------------------------


@routes.get("/api/library/composition")
async def composition(request: web.Request) -> web.Response:
    _params(request, ())
    return web.json_response(text=await _cached_json(request, library.composition))


@routes.get("/api/library/files")
async def files(request: web.Request) -> web.Response:
    params = _params(request, ("path", "limit"))
    limit = _limit(params, 20)
    text = params.get("path")
    if text is None or not text.strip():
        raise ApiError(400, "path must be some text to look for in the files' paths.")
    if len(text) > file_search.MAX_PATH_TEXT:
        raise ApiError(400, f"path must be at most {file_search.MAX_PATH_TEXT} characters.")
    return web.json_response(await _read(request, _files, text, limit))


@routes.get("/api/stats/summary")
async def summary(request: web.Request) -> web.Response:
    params = _params(request, ("since", "until", "worker"))
    since, until = _window(params)
    worker = params.get("worker")
    if worker is not None and len(worker) > MAX_WORKER:
        raise ApiError(400, f"worker must be a host name of at most {MAX_WORKER} characters.")
    # Without a window the rolling totals depend on the clock: they are those of this
    # whole second, so one answer serves the second (and says so in its `since` values).
    now = datetime.now(UTC).replace(microsecond=0) if since is None and until is None else None
    answer = await _cached_json(request, _summary, since, until, now, worker)
    return web.json_response(text=answer)


@routes.get("/api/stats/workers")
async def worker_list(request: web.Request) -> web.Response:
    since, until = _window(_params(request, ("since", "until")))
    return web.json_response(text=await _cached_json(request, _workers, since, until))


@routes.get("/api/stats/policies")
async def policies(request: web.Request) -> web.Response:
    params = _params(request, ("since", "until", "sort", "order"))
    since, until = _window(params)
    sort = _choice(params, "sort", POLICY_SORTS, "files_processed")
    order = params.get("order")
    descending = None if order is None else ORDERS[_choice(params, "order", ORDERS, "desc")]
    answer = await _cached_json(request, _policies, since, until, sort, descending)
    return web.json_response(text=answer)


@routes.get("/api/stats/policies/{name}")
async def policy(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    since, until = _window(_params(request, ("since", "until")))
    found = await _cached_json(request, _policy, name, since, until)
    if found is None:
        raise ApiError(404, f"No runs recorded for the policy {name[:80]!r} in this window.")
    return web.json_response(text=found)


@routes.get("/api/stats/files/{file_id}")
async def file(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    limit = _limit(_params(request, ("limit",)), 20)
    if not (file_id.isascii() and file_id.isdigit()):
        raise ApiError(400, "A file id is a whole number (the files.id of the library).")
    found = await _read(request, _file, file_id, limit)
    if found is None:
        raise ApiError(404, f"No file with id {file_id[:40]} in the library.")
    return web.json_response(found)


@routes.get("/api/stats/recent")
async def recent(request: web.Request) -> web.Response:
    params = _params(request, ("limit", "success_only", "failed_only", "since", "until"))
    limit = _limit(params, 10)
    since, until = _window(params)
    success_only, failed_only = _flag(params, "success_only"), _flag(params, "failed_only")
    if success_only and failed_only:
        raise ApiError(400, "success_only and failed_only cannot both be true.")
    success = True if success_only else False if failed_only else None
    answer = await _cached_json(request, _recent, limit, success, since, until)
    return web.json_response(text=answer)


@routes.get("/api/stats/trends")
async def trends(request: web.Request) -> web.Response:
    params = _params(request, ("since", "until", "bucket"))
    since, until = _window(params)
    bucket = _choice(params, "bucket", aggregates.TREND_BUCKETS, "day")
    return web.json_response(text=await _cached_json(request, _trends, since, until, bucket))


@routes.get("/api/stats/{stats_id}")
async def detail(request: web.Request) -> web.Response:
    reference = request.match_info["stats_id"]
    if reference == "purge":  # never a run id: the purge's own path, asked with GET
        raise web.HTTPMethodNotAllowed(request.method, ["DELETE"])
    _params(request, ())
    if len(reference) > MAX_RUN_ID:
        raise ApiError(400, "That is not a run id: a run id has 32 hex digits and 4 dashes.")
    history.run_id_prefix(reference)  # a malformed id is a 400 before any database work
    return web.json_response(await _read(request, _detail, reference))
