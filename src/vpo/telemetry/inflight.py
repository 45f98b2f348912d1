"""`RunMarkerProcessor`: a span processor that marks runs in progress in the database.

At a root's start it writes a marker (stats id, file, policy, the before values known
so far, this process's identity); at each phase's start it refreshes the marker with
the root's current attributes (the before values are set by then) and the time. The
exporter deletes the marker with the run's rows. If the process dies, the next
`open_database` turns the marker into a failed, interrupted run.
"""

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from vpo.db.connection import open_database
from vpo.db.interrupted import RunMarker, this_process, touch_marker, write_marker
from vpo.errors import DatabaseError
from vpo.telemetry import attributes as attr
from vpo.timefmt import format_ns

log = logging.getLogger(__name__)

# Markers are written in the workflow's thread before work starts: never stall a run for
# long on a busy database (a missed marker costs only crash-safety for that one run).
MARKER_BUSY_TIMEOUT_SECONDS = 2.0


class RunMarkerProcessor(SpanProcessor):
    """Keeps `runs_in_progress` in step with the live `vpo.process_file` spans."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._live: dict[int, Span] = {}  # root span id → root span
        self._identity = this_process()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.name == attr.PROCESS_FILE:
            self._live[span.context.span_id] = span
            self._write(span, span.start_time or time.time_ns(), new=True)
        elif span.name == attr.PHASE and span.parent is not None:
            root = self._live.get(span.parent.span_id)
            if root is not None:
                self._write(root, span.start_time or time.time_ns(), new=False)

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == attr.PROCESS_FILE and span.context is not None:
            self._live.pop(span.context.span_id, None)

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def _write(self, root: Span, now_ns: int, *, new: bool) -> None:
        attributes = dict(root.attributes or {})
        stats_id = attributes.get(attr.STATS_ID)
        if not isinstance(stats_id, str):
            return
        known = _before_values(attributes)
        try:
            with self._lock:
                conn = self._connection()
                if new:
                    host, pid, started = self._identity
                    write_marker(
                        conn,
                        RunMarker(
                            stats_id=stats_id,
                            file_id=_opt_int(attributes.get(attr.FILE_ID)),
                            file_path=_opt_str(attributes.get(attr.FILE_PATH)),
                            policy_name=str(attributes.get(attr.POLICY_NAME, "")),
                            started_at=format_ns(root.start_time or now_ns),
                            last_seen_at=format_ns(now_ns),
                            trace_id=format(root.context.trace_id, "032x"),
                            host=host,
                            pid=pid,
                            pid_started=started,
                            attributes=known,
                        ),
                    )
                else:
                    touch_marker(conn, stats_id, format_ns(now_ns), known)
        except (sqlite3.Error, DatabaseError) as exc:
            # The run itself is still exported at its end; only crash-safety is lost.
            log.warning("cannot mark run %s as in progress: %s", stats_id, exc)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(
                self.db_path, shared_between_threads=True, busy_timeout=MARKER_BUSY_TIMEOUT_SECONDS
            )
        return self._conn


def _before_values(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: attributes[name] for name, key in attr.BEFORE_VALUES.items() if name in attributes}


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
