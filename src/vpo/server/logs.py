"""The service's log: one line per event. aiohttp logs a request it cannot even parse (not
HTTP, a header with a NUL, a request line over the limit) with a traceback; for a service
that is one event, so it becomes one warning line naming the peer and the parser's reason.
"""

import logging

from aiohttp.http_exceptions import HttpProcessingError

REASON_CHARACTERS = 120  # the parser quotes the offending bytes; a line stays a line


class OneLineProtocolErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            lines = str(exc.message or "").strip().splitlines() or [type(exc).__name__]
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "refused a request that is not valid HTTP from %s: %s (status %d)"
            record.args = (peer, lines[0].rstrip(":")[:REASON_CHARACTERS], exc.code)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install() -> None:
    logging.getLogger("aiohttp.server").addFilter(OneLineProtocolErrors())
