"""A worker asks `vpo serve` what a file's last run left it as (GET
/v1/files/{file_id}/last-run, vpo.server.last_run), before it undoes an edit a killed
worker left or refuses a file that changed since it was enqueued."""

import json
import urllib.error
import urllib.request
from urllib.parse import quote

from vpo.db.last_run import LastRun
from vpo.errors import VpoError

QUERY_TIMEOUT_SECONDS = 10.0


class LastRunUnknown(VpoError):
    """The server did not say; the message says why."""


def fetch_last_run(
    server_url: str, token: str, file_id: int, timeout: float = QUERY_TIMEOUT_SECONDS
) -> LastRun | None:
    """The last run of the server's file `file_id`; None when it has none or the server's
    library does not know the file. `server_url` is the http(s) URL the worker checked."""
    url = f"{server_url.rstrip('/')}/v1/files/{quote(str(file_id))}/last-run"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise LastRunUnknown(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LastRunUnknown(f"{url}: {getattr(exc, 'reason', exc)}") from None
    except ValueError as exc:
        raise LastRunUnknown(f"{url} answered no JSON: {exc}") from None
    last = answer.get("last_run") if isinstance(answer, dict) else None
    if last is None:
        return None
    if not isinstance(last, dict) or not isinstance(last.get("stats_id"), str):
        raise LastRunUnknown(f"{url} answered no run: {str(answer)[:80]}")
    return LastRun.from_dict(last)
