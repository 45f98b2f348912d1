"""DELETE /api/stats/purge: the one destructive endpoint, behind a bearer token
(docs/cli.md, `vpo serve`).

The token is `VPO_API_TOKEN` of the server's environment; without one the endpoint is
disabled (403 saying how to enable it), so a server on a network address cannot be made
to delete anything by default. The token is compared in constant time and never logged.
The purge is the function of `vpo stats purge`, run in a single writer thread with a
read-write connection of its own: writes are one at a time and never on the loop.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from aiohttp import web

from vpo.db.connection import open_database
from vpo.db.purge import PurgeCounts, PurgeFilter, purge
from vpo.server import tokens
from vpo.server.errors import ApiError
from vpo.timefmt import format_utc, parse_when

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "VPO_API_TOKEN"  # noqa: S105 - the variable's name, not a token
ENABLE_HINT = (
    f"Destructive endpoints are disabled: set {TOKEN_VARIABLE} in the server's environment "
    "and send it as 'Authorization: Bearer <token>'."
)


class Writer:
    """Runs database writes one at a time in a thread of their own, each on a fresh
    read-write connection (the read pool's connections are read-only)."""

    def __init__(self, db_path: Path, token: str | None) -> None:
        self.db_path = db_path
        self.token = token or None  # an empty variable configures nothing
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vpo-writer")

    async def purge(self, which: PurgeFilter) -> PurgeCounts:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._purge, which)

    def _purge(self, which: PurgeFilter) -> PurgeCounts:
        conn = open_database(self.db_path)
        try:
            return purge(conn, which)
        finally:
            conn.close()

    def close(self) -> None:
        """Let a running write finish; refuse new ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)


WRITER: web.AppKey[Writer] = web.AppKey("writer", Writer)

routes = web.RouteTableDef()


def authorize(request: web.Request) -> None:
    """403 when no token is configured, 401 unless the request carries it."""
    refused = tokens.refusal(request, request.app[WRITER].token, TOKEN_VARIABLE, ENABLE_HINT)
    if refused is not None:
        raise ApiError(*refused)


def _purge_filter(request: web.Request) -> PurgeFilter:
    for name in request.query:
        if name not in ("before", "policy"):
            raise ApiError(
                400, f"Unknown parameter {name[:40]!r}; this endpoint takes before, policy."
            )
    before_text = request.query.get("before", "")
    policy = request.query.get("policy", "") or None
    before: datetime | None = None
    if before_text:
        try:
            before = parse_when(before_text)
        except ValueError as exc:
            raise ApiError(400, f"before: {exc}.") from None
    if before is None and policy is None:
        raise ApiError(400, "Say which runs to delete: before, policy, or both.")
    return PurgeFilter(before=before, policy=policy)


def _described(which: PurgeFilter) -> str:
    parts = []
    if which.before is not None:
        parts.append(f"started before {format_utc(which.before)}")
    if which.policy is not None:
        parts.append(f"of the policy {which.policy!r}")
    return ", ".join(parts)


@routes.delete("/api/stats/purge")
async def purge_runs(request: web.Request) -> web.Response:
    authorize(request)
    which = _purge_filter(request)
    counts = await request.app[WRITER].purge(which)
    if counts.runs == 0:
        message = f"No runs match ({_described(which)}); nothing deleted."
    else:
        message = (
            f"Deleted {counts.runs:,} runs, {counts.action_results:,} action rows and "
            f"{counts.performance_metrics:,} phase rows ({_described(which)})."
        )
    log.info("purge: %s", message)
    return web.json_response({"deleted_count": counts.runs, "message": message})
