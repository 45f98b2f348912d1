"""`RunAnnouncer`: a worker tells the server which of its runs are alive (issue #14).

A run's spans reach the server only when the run ends (through the spool), so a worker
killed mid-run — SIGKILL, power cut, a crashed machine — would leave no trace there.
This span processor therefore sends a short `vpo.run.heartbeat` span (a child of the
run's root, carrying the root's ids, its before values and the after values of the
phases completed so far) straight to the server:

- when a run starts, before the file is touched (in the workflow's thread);
- when a phase ends (in the workflow's thread), so the after values the server holds
  match what the file went through;
- every `interval` seconds for every live run, from a thread of its own.

The server keeps them as markers of runs in progress and records a run whose heartbeats
stop as interrupted (vpo.server.remote_runs); the run's real spans, if they arrive
later, replace that row. Heartbeats are never spooled: a late one means nothing, and a
failed one is followed by the next. A run is not held up by a server that does not
answer: the worker waits for the server before it takes a message, and a run that ends
meanwhile is spooled.
"""

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from vpo import __version__
from vpo.telemetry import attributes as attr
from vpo.telemetry.inflight import note_unmarked
from vpo.timefmt import format_ns

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0  # the server's --worker-timeout must be several of these
_COPIED = (attr.STATS_ID, attr.FILE_ID, attr.FILE_PATH, attr.POLICY_NAME, *attr.MARKER_VALUES)
_SCOPE = InstrumentationScope("vpo", __version__)


class RunAnnouncer(SpanProcessor):
    """Sends `vpo.run.heartbeat` spans for the live `vpo.process_file` roots through
    `post(body) -> problem or None` (an encoded ExportTraceServiceRequest)."""

    def __init__(
        self,
        post: Callable[[bytes], str | None],
        resource: Resource,
        interval: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.post = post
        self.resource = resource
        self.interval = interval
        self._live: dict[int, Span] = {}  # root span id → root
        self._sent: dict[int, dict[str, Any]] = {}  # root span id → values last sent
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one request at a time, in order
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._beat, name="vpo-heartbeat", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.name == attr.PROCESS_FILE and span.context is not None:
            with self._lock:
                self._live[span.context.span_id] = span
            self._send([span])
        elif span.name == attr.PHASE and span.parent is not None:
            self._send_changed(span.parent.span_id)  # before values set after the start

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == attr.PHASE and span.parent is not None:
            # The after values of this phase. When they cannot reach the server, the
            # workflow undoes the phase's in-place edit and fails the run, as it does when
            # a local run's marker cannot be written (vpo.telemetry.inflight).
            if not self._send_changed(span.parent.span_id):
                note_unmarked(span.name)
        elif span.name == attr.PROCESS_FILE and span.context is not None:
            with self._lock:
                self._live.pop(span.context.span_id, None)
                self._sent.pop(span.context.span_id, None)

    def _send_changed(self, root_id: int) -> bool:
        """Send the root's values if they changed since the last send; False when they
        changed and could not be sent."""
        with self._lock:
            root = self._live.get(root_id)
        if root is None or _copied(root.attributes or {}) == self._sent.get(root_id):
            return True
        return self._send([root])

    def live_runs(self) -> int:
        with self._lock:
            return len(self._live)

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                roots = list(self._live.values())
            if roots:
                try:
                    self._send(roots)
                except Exception:  # the next beat tries again; never let the thread die
                    log.exception("cannot send the heartbeat of the runs in progress")

    def _send(self, roots: list[Span]) -> bool:
        with self._send_lock:  # built under the lock: a newer beat is never overtaken
            beats = [self._heartbeat(root) for root in roots]
            body = encode_spans(beats).SerializeToString()
            problem = self.post(body)
            if problem is not None and not self._failing:
                log.warning("the server does not hear this worker's runs: %s", problem)
            elif problem is None and self._failing:
                log.warning("the server hears this worker's runs again")
            self._failing = problem is not None
        if problem is None:
            with self._lock:
                for root, beat in zip(roots, beats, strict=True):
                    root_id = root.get_span_context().span_id
                    if root_id in self._live:
                        self._sent[root_id] = _copied(beat.attributes or {})
        return problem is None

    def _heartbeat(self, root: Span) -> ReadableSpan:
        now = time.time_ns()
        root_context = root.get_span_context()
        values = _copied(root.attributes or {})
        values[attr.RUN_STARTED_AT] = format_ns(root.start_time or now)
        values[attr.WORKER_PID] = os.getpid()
        return ReadableSpan(
            name=attr.RUN_HEARTBEAT,
            context=SpanContext(
                trace_id=root_context.trace_id,
                span_id=secrets.randbits(64) or 1,
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            ),
            parent=root_context,
            resource=self.resource,
            attributes=values,
            kind=SpanKind.INTERNAL,
            start_time=now,
            end_time=now,
            instrumentation_scope=_SCOPE,
        )


def _copied(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The root's values a heartbeat carries, read key by key (the workflow's thread may
    be setting them)."""
    return {name: attributes[name] for name in _COPIED if attributes.get(name) is not None}
