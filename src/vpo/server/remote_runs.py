"""Runs in progress on remote workers, and the runs of workers that fell silent (issue #14).

A worker sends `vpo.run.heartbeat` spans for each run in progress (vpo.queue.announce):
when it starts, as its phases end, and every couple of seconds. Each keeps a marker in
the server's marker file (`library.db.runs`, as local runs do: vpo.db.interrupted) with
the run's before values and the after values of its completed phases, under a lease
token marked remote, which no local VPO judges. When no heartbeat has come for
`timeout` seconds, by the server's clock, the run is recorded as interrupted with what
it had applied — so a worker that is SIGKILLed, loses power or its network leaves a
failed run on the server, and the redelivered message's attempt on another worker is a
run of its own. The server never touches the file: it is on the worker's disk.

- A server that starts gives every marker a full `timeout` before judging it: the
  heartbeats it missed while it was down prove nothing.
- A heartbeat of a run already recorded (or whose spans were handed to the exporter) is
  ignored, so a late beat never revives a finished run.
- A run recorded as interrupted whose real spans arrive later (a worker cut off for
  longer than the timeout, then back) gets its real row: the exporter replaces an
  `interrupted:` row (vpo.telemetry.exporter).

Everything here runs in the OTLP ingest's thread, one call at a time, so it never races
the ingest's own duplicate checks.
"""

import logging
import sqlite3
import time
import uuid
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from vpo.db.connection import open_database
from vpo.db.interrupted import REMOTE_TOKEN_PREFIX, MarkerStore, RunMarker, record_once
from vpo.telemetry import attributes as attr
from vpo.timefmt import format_ns, parse_utc

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 60.0
MIN_TIMEOUT_SECONDS = 5.0  # several of the workers' 2-second heartbeats
REAP_SECONDS = 1.0  # how often the markers are judged
_SQL_CHUNK = 500


class RemoteRuns:
    """The remote workers' markers of one database, judged by their heartbeats."""

    def __init__(self, db_path: Path, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.db_path = db_path
        self.timeout = timeout
        self.markers = MarkerStore(db_path)
        self._heard: dict[str, float] = {}  # stats id → when its last beat came (monotonic)
        self._started = time.monotonic()
        self._conn: sqlite3.Connection | None = None

    def beat(self, spans: Sequence[ReadableSpan], handed_over: Container[str]) -> list[str]:
        """Keep a marker for each run `spans` (heartbeats) speak of, unless it is recorded
        or in `handed_over` (runs given to the exporter); the problems, in words."""
        latest: dict[str, tuple[ReadableSpan, dict[str, Any]]] = {}
        problems = []
        for span in spans:
            values = dict(span.attributes or {})
            problem = _problem(values)
            if problem is not None:
                problems.append(f"a {attr.RUN_HEARTBEAT} span {problem}")
                continue
            stats_id = values[attr.STATS_ID]
            kept = latest.get(stats_id)
            if kept is None or (span.end_time or 0) >= (kept[0].end_time or 0):
                latest[stats_id] = (span, values)
        if not latest:
            return problems
        recorded = self._recorded(list(latest))
        now = time.monotonic()
        for stats_id, (span, values) in latest.items():
            if stats_id in recorded or stats_id in handed_over:
                continue
            self.markers.write(_marker(span, values))
            self._heard[stats_id] = now
        return problems

    def reap(self, handed_over: Container[str]) -> int:
        """Record the remote runs silent for `timeout` seconds as interrupted; how many."""
        now = time.monotonic()
        recorded = 0
        for marker in self.markers.read():
            token = marker.lease_token or ""
            if not token.startswith(REMOTE_TOKEN_PREFIX):
                continue
            silent = now - self._heard.setdefault(marker.stats_id, self._started)
            if silent < self.timeout:
                continue
            if marker.stats_id not in handed_over and self._record(marker, silent):
                recorded += 1
            self.markers.delete([marker.stats_id])
            self._heard.pop(marker.stats_id, None)
        return recorded

    def close(self) -> None:
        self.markers.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _record(self, marker: RunMarker, silent: float) -> bool:
        cause = (
            f"worker {marker.host} (pid {marker.pid}) fell silent: no heartbeat for {silent:.0f} s"
        )
        done = record_once(self._connection(), marker, cause=cause)
        if done:
            log.warning(
                "run %s of worker %s recorded as interrupted: no heartbeat for %.0f s (%s)",
                marker.stats_id,
                marker.host,
                silent,
                marker.file_path,
            )
        return done

    def _recorded(self, stats_ids: list[str]) -> set[str]:
        found: set[str] = set()
        conn = self._connection()
        for start in range(0, len(stats_ids), _SQL_CHUNK):
            chunk = stats_ids[start : start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT id FROM processing_stats WHERE id IN ({marks})",  # noqa: S608 - placeholders
                chunk,
            )
            found.update(row[0] for row in rows)
        return found

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(self.db_path, shared_between_threads=True)
        return self._conn


def _problem(values: dict[str, Any]) -> str | None:
    """Why a heartbeat's attributes cannot make a marker, or None."""
    stats_id = values.get(attr.STATS_ID)
    try:
        uuid.UUID(str(stats_id))
    except ValueError:
        stats_id = None
    if not isinstance(values.get(attr.STATS_ID), str) or stats_id is None:
        return f"has no {attr.STATS_ID} (a UUID)"
    file_id = values.get(attr.FILE_ID)
    if not isinstance(file_id, int) or isinstance(file_id, bool):
        return f"of run {values[attr.STATS_ID]} has no integer {attr.FILE_ID}"
    started = values.get(attr.RUN_STARTED_AT)
    try:
        aware = parse_utc(str(started)).tzinfo is not None
    except ValueError:
        aware = False
    if not aware:
        return f"of run {values[attr.STATS_ID]} has no valid {attr.RUN_STARTED_AT}"
    return None


def _marker(span: ReadableSpan, values: dict[str, Any]) -> RunMarker:
    host = span.resource.attributes.get(attr.HOST_NAME) if span.resource is not None else None
    host = str(host) if host else "unknown"
    pid = values.get(attr.WORKER_PID)
    context = span.get_span_context()
    return RunMarker(
        stats_id=values[attr.STATS_ID],
        file_id=values[attr.FILE_ID],
        file_path=_text(values.get(attr.FILE_PATH)),
        policy_name=str(values.get(attr.POLICY_NAME, "")),
        started_at=str(values[attr.RUN_STARTED_AT]),
        last_seen_at=format_ns(span.end_time or time.time_ns()),  # the worker's clock
        trace_id=format(context.trace_id, "032x") if context is not None else None,
        host=host,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
        pid_started=None,
        attributes={
            key: values[name] for name, key in attr.MARKER_VALUES.items() if name in values
        },
        lease_token=REMOTE_TOKEN_PREFIX + host,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
