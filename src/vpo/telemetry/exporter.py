"""`StatsSpanExporter`: finished spans → statistics rows in SQLite.

Children end before their parents and a batch may cut a run anywhere, so non-root
`vpo.*` spans wait here until their root arrives; then the whole run is written in one
transaction (a savepoint per run inside one transaction per batch: all of a run's rows
or none, one commit per batch for throughput). A database that is locked or read-only
fails the export loudly and keeps the runs for the next try — nothing is dropped in
silence. A run that breaks the data model is refused and reported, never stored.
"""

import logging
import sqlite3
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from vpo.db.connection import open_database
from vpo.db.interrupted import MarkerStore
from vpo.db.stats import InvalidRecordError, ProcessingStatsRecord, insert_run
from vpo.errors import DatabaseError
from vpo.telemetry import attributes as attr
from vpo.telemetry.rows import build_run

log = logging.getLogger(__name__)

MAX_WAITING_SPANS = 500_000  # children whose root never comes (a bug) are dropped past this


class StatsSpanExporter(SpanExporter):
    """Writes `processing_stats`, `performance_metrics` and `action_results` rows."""

    def __init__(
        self,
        db_path: str | Path,
        busy_timeout: float | None = None,
        markers: MarkerStore | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.markers = markers or MarkerStore(db_path)
        self.busy_timeout = busy_timeout
        self.runs_written = 0
        self.problems: list[str] = []  # refused rows and failed writes, for the CLI to report
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._waiting: OrderedDict[int, ReadableSpan] = OrderedDict()  # span id → child span
        self._children: defaultdict[int, list[int]] = defaultdict(list)  # parent → child ids
        self._unwritten: list[ProcessingStatsRecord] = []
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._shut_down:
                return SpanExportResult.FAILURE
            for span in spans:
                if span.name == attr.PROCESS_FILE:
                    self._complete_run(span)
                elif span.name in (attr.PHASE, attr.ACTION) and span.context is not None:
                    self._wait(span)
            return self._write_unwritten()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._lock:
            return self._write_unwritten() is SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._shut_down:
                return
            self._write_unwritten()
            if self._unwritten:
                self._report(
                    f"{len(self._unwritten)} run(s) could not be recorded in {self.db_path}"
                )
            if self._waiting:
                log.warning(
                    "%d span(s) ended without their vpo.process_file root", len(self._waiting)
                )
            self._shut_down = True
            self.markers.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def pending_runs(self) -> int:
        return len(self._unwritten)

    def _wait(self, span: ReadableSpan) -> None:
        span_id = span.context.span_id  # type: ignore[union-attr]
        self._waiting[span_id] = span
        if span.parent is not None:
            self._children[span.parent.span_id].append(span_id)
        while len(self._waiting) > MAX_WAITING_SPANS:
            dropped_id, dropped = self._waiting.popitem(last=False)
            self._children.pop(dropped_id, None)
            self._report(f"dropped span {dropped.name} whose run never ended")

    def _take_children(self, span_id: int) -> list[ReadableSpan]:
        return [
            self._waiting.pop(child)
            for child in self._children.pop(span_id, [])
            if child in self._waiting
        ]

    def _complete_run(self, root: ReadableSpan) -> None:
        phases: list[ReadableSpan] = []
        actions: list[ReadableSpan] = []
        for child in self._take_children(root.context.span_id):  # type: ignore[union-attr]
            if child.name == attr.PHASE:
                phases.append(child)
                actions += self._take_children(child.context.span_id)  # type: ignore[union-attr]
            else:
                actions.append(child)  # an action outside any phase still belongs to the run
        try:
            built = build_run(root, phases, actions)
        except InvalidRecordError as exc:
            self._report(f"refused a run that breaks the data model (a bug): {exc}")
            return
        for problem in built.refused:
            self._report(f"run {built.record.id}: {problem}")
        self._unwritten.append(built.record)

    def _write_unwritten(self) -> SpanExportResult:
        if not self._unwritten:
            return SpanExportResult.SUCCESS
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                written = [run for run in self._unwritten if self._write_one(conn, run)]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, DatabaseError) as exc:
            self._report(
                f"cannot write {len(self._unwritten)} run(s) to {self.db_path}: {exc} "
                "(kept for the next try)"
            )
            return SpanExportResult.FAILURE
        self.runs_written += len(written)
        self._unwritten.clear()
        try:
            self.markers.delete(run.id for run in written)
        except sqlite3.Error as exc:  # harmless: reconciling finds the run already recorded
            log.warning("cannot clear the in-progress markers of recorded runs: %s", exc)
        return SpanExportResult.SUCCESS

    def _write_one(self, conn: sqlite3.Connection, run: ProcessingStatsRecord) -> bool:
        conn.execute("SAVEPOINT run")
        try:
            insert_run(conn, run)
        except (sqlite3.IntegrityError, InvalidRecordError) as exc:
            conn.execute("ROLLBACK TO run")
            conn.execute("RELEASE run")
            self._report(f"refused run {run.id}: {exc}")
            return False
        conn.execute("RELEASE run")
        return True

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            kwargs = {} if self.busy_timeout is None else {"busy_timeout": self.busy_timeout}
            # The batch worker and a flushing CLI both export: shared, under self._lock.
            self._conn = open_database(self.db_path, shared_between_threads=True, **kwargs)
        return self._conn

    def _report(self, problem: str) -> None:
        log.error("statistics exporter: %s", problem)
        self.problems.append(problem)
