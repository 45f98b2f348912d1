"""`RunMarkerProcessor`: a span processor that marks runs in progress.

At a root's start it writes a marker (stats id, file, policy, the before values known
so far, this process's identity); at a phase's start it refreshes the marker when the
root's before values changed (they are measured after the root starts) or a while has
passed. The exporter deletes the marker once the run's rows are committed. If the
process dies, the next `open_database` turns the marker into a failed, interrupted run.
"""

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from vpo.db.interrupted import MarkerStore, RunMarker, this_process
from vpo.telemetry import attributes as attr
from vpo.timefmt import format_ns

log = logging.getLogger(__name__)

REFRESH_AFTER_NS = 5 * 1_000_000_000  # how stale `last_seen_at` may get between phases


class RunMarkerProcessor(SpanProcessor):
    """Keeps the marker store in step with the live `vpo.process_file` spans."""

    def __init__(self, store: MarkerStore) -> None:
        self.store = store
        self._live: dict[int, tuple[Span, dict[str, Any], int]] = {}  # root id → (span, known, ns)
        self._identity = this_process()

    @classmethod
    def for_database(cls, db_path: str | Path) -> "RunMarkerProcessor":
        return cls(MarkerStore(db_path))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        now = span.start_time or time.time_ns()
        if span.name == attr.PROCESS_FILE:
            known = _before_values(span.attributes or {})
            self._live[span.context.span_id] = (span, known, now)
            self._mark(span, known, now)
        elif span.name == attr.PHASE and span.parent is not None:
            entry = self._live.get(span.parent.span_id)
            if entry is None:
                return
            root, known, touched = entry
            current = _before_values(root.attributes or {})
            if current != known or now - touched >= REFRESH_AFTER_NS:
                self._live[span.parent.span_id] = (root, current, now)
                self._touch(root, current, now)

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == attr.PROCESS_FILE and span.context is not None:
            self._live.pop(span.context.span_id, None)

    def shutdown(self) -> None:
        self.store.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def _mark(self, root: Span, known: dict[str, Any], now_ns: int) -> None:
        a = root.attributes or {}
        stats_id = a.get(attr.STATS_ID)
        if not isinstance(stats_id, str):
            return
        host, pid, started = self._identity
        marker = RunMarker(
            stats_id=stats_id,
            file_id=_opt_int(a.get(attr.FILE_ID)),
            file_path=_opt_str(a.get(attr.FILE_PATH)),
            policy_name=str(a.get(attr.POLICY_NAME, "")),
            started_at=format_ns(root.start_time or now_ns),
            last_seen_at=format_ns(now_ns),
            trace_id=format(root.context.trace_id, "032x"),
            host=host,
            pid=pid,
            pid_started=started,
            attributes=known,
        )
        self._guarded(stats_id, self.store.write, marker)

    def _touch(self, root: Span, known: dict[str, Any], now_ns: int) -> None:
        stats_id = (root.attributes or {}).get(attr.STATS_ID)
        if isinstance(stats_id, str):
            self._guarded(stats_id, self.store.touch, stats_id, format_ns(now_ns), known)

    @staticmethod
    def _guarded(stats_id: str, write: Any, *args: Any) -> None:
        try:
            write(*args)
        except sqlite3.Error as exc:
            # The run itself is still exported at its end; only crash-safety is lost.
            log.warning("cannot mark run %s as in progress: %s", stats_id, exc)


def _before_values(attributes: Any) -> dict[str, Any]:
    return {key: attributes[name] for name, key in attr.BEFORE_VALUES.items() if name in attributes}


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
