"""Bearer tokens of the endpoints that change things (the purge: `VPO_API_TOKEN`; runs
sent by workers: `VPO_WORKER_TOKEN`): compared in constant time, never logged."""

import hmac

from aiohttp import web


def carries(request: web.Request, token: str) -> bool:
    """Whether the request says `Authorization: Bearer <token>`. Header bytes that are
    not UTF-8 arrive as surrogates: they are a mismatch, never an error."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    offered = given.strip().encode("utf-8", "surrogateescape")
    expected = token.encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered, expected)


CHALLENGE = {"WWW-Authenticate": "Bearer"}  # the headers of a 401


def needed(variable: str) -> str:
    """The 401's sentence: what the request lacks."""
    return f"This endpoint needs 'Authorization: Bearer <token>' with the server's {variable}."


def refusal(
    request: web.Request, token: str | None, variable: str, disabled: str
) -> tuple[int, str, dict[str, str] | None] | None:
    """(status, sentence, headers) of a request the token guard refuses, or None: 403
    saying `disabled` when no token is configured, 401 unless the request carries it."""
    if token is None:
        return 403, disabled, None
    if not carries(request, token):
        return 401, needed(variable), CHALLENGE
    return None
