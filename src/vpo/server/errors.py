"""Every answer that is not a success is JSON `{"error": "<one sentence>"}` with the
status that says why: 400 bad parameter, 401 / 403 no or wrong token for the purge,
404 unknown, 405 wrong method, 409 ambiguous run id, 414 query too long, 503 database
unreadable. Never a stack trace, never a 500 for bad input (docs/cli.md, `vpo serve`)."""

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vpo.errors import DatabaseError, InvalidInputError, NoStatisticsError, PathNotFoundError

log = logging.getLogger(__name__)

MAX_QUERY_BYTES = 4096
# The HTTP parser's own bound on the request line; beyond it aiohttp answers 400 itself.
MAX_REQUEST_LINE = 65536
_SHOWN = 80  # characters of a request path quoted back in a message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success: its status, its sentence and any further fields."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    """`{"error": message}` (plus `extra` fields) with `status`."""
    return web.json_response({"error": message, **(extra or {})}, status=status, headers=headers)


def _shown(path: str) -> str:
    return path if len(path) <= _SHOWN else path[:_SHOWN] + "…"


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (unknown route, wrong method, body too large) as JSON."""
    headers = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        message = f"{request.method} is not allowed on {_shown(request.path)}; use {allowed}."
    elif isinstance(exc, web.HTTPNotFound):
        message = f"There is nothing at {_shown(request.path)}."
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        message = "The request body is too large."
    else:
        message = f"{exc.reason}."
    return error_response(exc.status, message, headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error with its status."""
    if len(request.query_string.encode()) > MAX_QUERY_BYTES:
        return error_response(414, f"The query string is longer than {MAX_QUERY_BYTES} bytes.")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers, exc.extra)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect is an answer, not an error
            raise
        return _http_error(request, exc)
    except InvalidInputError as exc:
        return error_response(400, exc.message)
    except (NoStatisticsError, PathNotFoundError) as exc:
        return error_response(404, exc.message)
    except (DatabaseError, sqlite3.Error) as exc:
        log.error("%s %s: cannot read the database: %s", request.method, request.path, exc)
        return error_response(503, f"The database cannot be read now: {exc}.")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "Internal error; the server's log has the details.")
