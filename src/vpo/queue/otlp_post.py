"""One OTLP/HTTP request from a worker to `vpo serve`'s /v1/traces, as the spool, the run
announcer and the reachability check all send it: a protobuf body, the worker's bearer
token, and a problem sentence instead of an exception."""

import gzip
import urllib.error
import urllib.request

PROTOBUF = "application/x-protobuf"


def post_spans(
    endpoint: str, token: str, body: bytes, timeout: float, compress: bool
) -> str | None:
    """POST `body` (an encoded ExportTraceServiceRequest) to `endpoint`, an http(s) URL the
    caller checked; None on a 2xx, else why not, in words."""
    headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {token}"}
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(endpoint, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            if 200 <= response.status < 300:
                return None
            return f"it answered {response.status}"
    except urllib.error.HTTPError as exc:
        reason = f"it answered {exc.code} {exc.reason}"
        if exc.code in (401, 403):
            reason += " (is VPO_WORKER_TOKEN the server's worker token?)"
        return reason
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
