"""GET /v1/files/{file_id}/last-run: what the server last recorded a file to be, for workers.

A worker killed just after announcing a phase (the server holds its after values) and
just before dropping that phase's edit journal leaves a file whose edit is complete and
recorded, beside a journal that would undo it. The next worker asks here before it
touches the file: when the file is exactly what the last run recorded, the edit is kept
(and the redelivered message runs on the file as it now is); otherwise it is undone.
Either way the file and the statistics agree (docs/workers.md).

Bearer `VPO_WORKER_TOKEN`, as POST /v1/traces; asked in the OTLP ingest's thread
(vpo.server.otlp_ingest), so the answer never races a heartbeat being stored.
"""

import sqlite3

from aiohttp import web

from vpo.errors import DatabaseError
from vpo.server import tokens
from vpo.server.errors import ApiError
from vpo.server.otlp_ingest import INGEST, RETRY_AFTER_SECONDS, TOKEN_VARIABLE

PATH = "/v1/files/{file_id}/last-run"
DISABLED = f"Worker endpoints are disabled: set {TOKEN_VARIABLE} in the server's environment."
MAX_FILE_ID = 2**63 - 1  # SQLite's largest integer


async def last_run(request: web.Request) -> web.Response:
    """`{"file_id", "last_run": LastRun or null}`; 404 for a file the library lacks."""
    ingest = request.app[INGEST]
    refused = tokens.refusal(request, ingest.token, TOKEN_VARIABLE, DISABLED)
    if refused is not None:
        raise ApiError(*refused)
    text = request.match_info["file_id"]
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(MAX_FILE_ID))
    if not digits or not 0 < int(text) <= MAX_FILE_ID:
        raise ApiError(400, f"The file id must be a positive integer, not {text[:40]!r}.")
    file_id = int(text)
    try:
        known, run = await ingest.last_run(file_id)
    except (sqlite3.Error, DatabaseError) as exc:
        raise ApiError(
            503,
            f"The database cannot be read now: {exc}.",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    if not known:
        raise ApiError(404, f"There is no file {file_id} in the library.")
    return web.json_response(
        {"file_id": file_id, "last_run": run.to_dict() if run is not None else None}
    )


def setup(app: web.Application) -> None:
    """Route GET PATH (after otlp_ingest.setup, whose `Ingest` answers it)."""
    app.router.add_get(PATH, last_run)
