"""`RunMarkerProcessor`: a span processor that marks runs in progress.

At a root's start it writes a marker (stats id, file, policy, the before values, this
process's lease token); when a `vpo.phase` span ends it writes the root's after values
so far (the workflow sets them on the root before ending a phase that changed the
file), so an interrupted run is recorded with what it actually applied; a heartbeat
thread refreshes `last_seen_at` of every live marker about once a second, so the
duration of an interrupted run reaches its last sign of life. The exporter deletes a
marker once the run's rows are committed (docs/statistics.md).
"""

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from vpo.db.interrupted import MarkerStore, RunMarker, this_process
from vpo.telemetry import attributes as attr
from vpo.timefmt import format_ns

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0  # how stale `last_seen_at` of a live run may get
# Set by whoever ends a phase span (the workflow), to learn whether the phase's after
# values reached the run's marker: an in-place edit whose record could not be marked is
# undone rather than left on disk without a trace (docs/statistics.md).
UNMARKED_PHASES: ContextVar[list[str] | None] = ContextVar("vpo_unmarked_phases", default=None)


def note_unmarked(phase: str) -> None:
    """Tell the workflow ending `phase` that its after values reached no marker (a span
    processor calls this from the phase span's `on_end`, in the workflow's thread)."""
    unmarked = UNMARKED_PHASES.get()
    if unmarked is not None:
        unmarked.append(phase)


class RunMarkerProcessor(SpanProcessor):
    """Keeps the marker store in step with the live `vpo.process_file` spans."""

    def __init__(
        self,
        store: MarkerStore,
        lease_token: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.store = store
        self.lease_token = lease_token
        self.heartbeat_seconds = heartbeat_seconds
        self._lock = threading.Lock()
        # root span id → (root span, stats id, the values last written to its marker)
        self._live: dict[int, tuple[Span, str, dict[str, Any]]] = {}
        self._identity = this_process()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @classmethod
    def for_database(
        cls, db_path: str | Path, lease_token: str | None = None
    ) -> "RunMarkerProcessor":
        return cls(MarkerStore(db_path), lease_token)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.name == attr.PROCESS_FILE:
            self._start_run(span)
        elif span.name == attr.PHASE and span.parent is not None:
            # Before values a workflow set after the root started reach the marker here.
            self._refresh(span.parent.span_id, span.start_time or time.time_ns())

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == attr.PHASE and span.parent is not None:
            # The root now holds the after values of the phases completed so far.
            if not self._refresh(span.parent.span_id, span.end_time or time.time_ns()):
                note_unmarked(span.name)
        elif span.name == attr.PROCESS_FILE and span.context is not None:
            with self._lock:
                self._live.pop(span.context.span_id, None)

    def shutdown(self) -> None:
        self._stop.set()
        beat = self._beat
        if beat is not None and beat is not threading.current_thread():
            beat.join(timeout=5)
        self.store.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def _start_run(self, root: Span) -> None:
        a = root.attributes or {}
        stats_id = a.get(attr.STATS_ID)
        if not isinstance(stats_id, str):
            return
        now_ns = time.time_ns()
        known = _known_values(a)
        with self._lock:
            self._live[root.context.span_id] = (root, stats_id, known)
        self._ensure_heartbeat()
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
            lease_token=self.lease_token,
        )
        _guarded(stats_id, self.store.write, marker)

    def _refresh(self, root_id: int, now_ns: int) -> bool:
        """Write the root's before and after values to its marker if they changed;
        False when they could not be written (they are tried again next time)."""
        with self._lock:
            entry = self._live.get(root_id)
        if entry is None:
            return True
        root, stats_id, written = entry
        current = _known_values(root.attributes or {})
        if current == written:
            return True
        if not _guarded(stats_id, self.store.touch, stats_id, format_ns(now_ns), current):
            return False
        with self._lock:
            if root_id in self._live:
                self._live[root_id] = (root, stats_id, current)
        return True

    def _ensure_heartbeat(self) -> None:
        if self._beat is not None or self._stop.is_set():
            return
        with self._lock:
            if self._beat is None:
                self._beat = threading.Thread(
                    target=self._heartbeat, name="vpo-run-heartbeat", daemon=True
                )
                self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            with self._lock:
                ids = [stats_id for _root, stats_id, _known in self._live.values()]
            if not ids:
                continue
            try:
                self.store.heartbeat(ids, format_ns(time.time_ns()))
            except sqlite3.Error as exc:  # the next beat tries again
                log.debug("cannot refresh the markers of runs in progress: %s", exc)


def _known_values(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The root's values a marker keeps, read key by key (the span may be changing in the
    workflow's thread)."""
    known = {}
    for name, key in attr.MARKER_VALUES.items():
        value = attributes.get(name)
        if value is not None:
            known[key] = value
    return known


def _guarded(stats_id: str, write: Callable[..., None], *args: Any) -> bool:
    try:
        write(*args)
    except sqlite3.Error as exc:
        # The run itself is still exported at its end; only crash-safety is lost.
        log.warning("cannot mark run %s as in progress: %s", stats_id, exc)
        return False
    return True


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
