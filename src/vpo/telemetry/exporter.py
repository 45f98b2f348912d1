"""`StatsSpanExporter`: finished spans → statistics rows in SQLite.

Children end before their parents and a batch may cut a run anywhere, so non-root
`vpo.*` spans wait here until their root arrives; then the whole run is written in one
transaction (a savepoint per run inside one transaction per write: all of a run's rows
or none, one commit per write for throughput).

Failures stay where they belong (docs/statistics.md):

- a run that cannot be built or written — it breaks the data model, an integer that
  SQLite cannot hold, a file id the library does not know — is refused alone, logged
  and reported; the others are written;
- a database that cannot be written (locked, read-only, full) keeps the runs for the
  next try: a short attempt at a time, the writer lock released between attempts so a
  flushing command never waits long behind another thread, retried in the background
  while runs wait. Only runs still unwritten at shutdown are reported as lost; a lock
  that went away in time is no problem. `recording_problem()` says when writing has
  been failing for long, so a batch can stop before it touches another file.

All bookkeeping is bounded: spans whose run never ends, the problems list, the runs
waiting for a database that never comes back.
"""

import logging
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from vpo.db.connection import BUSY_TIMEOUT_SECONDS, open_database
from vpo.db.interrupted import MarkerStore
from vpo.db.stats import ProcessingStatsRecord, insert_checked_runs, insert_run
from vpo.errors import DatabaseError
from vpo.telemetry import attributes as attr
from vpo.telemetry.rows import BuiltRun, build_run

log = logging.getLogger(__name__)

MAX_WAITING_SPANS = 50_000  # children whose root never comes (a bug) are dropped past this
MAX_PENDING_RUNS = 20_000  # runs kept for a database that cannot be written, at most
MAX_PROBLEMS = 100  # problems kept word for word; the rest are counted
ATTEMPT_SECONDS = 0.5  # SQLite busy timeout of one write attempt
RETRY_PAUSE_SECONDS = 0.25  # between attempts, with the writer lock released


@dataclass(frozen=True)
class PrebuiltRun:
    """A whole run someone already built from these spans with `build_run` (the OTLP
    ingest does, to check the contract): the exporter takes the record as it is, rather
    than assemble the spans and build the same record again — unless some of the run's
    spans came earlier and wait here, when it assembles them all."""

    root: ReadableSpan
    phases: tuple[ReadableSpan, ...]
    actions: tuple[ReadableSpan, ...]
    built: BuiltRun

    def matches(
        self, root: ReadableSpan, phases: list[ReadableSpan], actions: list[ReadableSpan]
    ) -> bool:
        """The same span objects; `build_run` only sees them sorted by start time (a
        stable sort), so equal sorted sequences make equal records."""
        return (
            root is self.root
            and _same_in_order(phases, self.phases)
            and _same_in_order(actions, self.actions)
        )


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
        # The worker of runs whose spans name no host (docs/statistics.md, "Workers").
        self.host = socket.gethostname()
        # How long a flush keeps trying a locked database, and how long writes may fail
        # on a lock before recording counts as failing.
        self.patience = BUSY_TIMEOUT_SECONDS if busy_timeout is None else busy_timeout
        self.attempt_seconds = min(ATTEMPT_SECONDS, self.patience)
        self.runs_written = 0
        self._state = threading.RLock()  # bookkeeping only: never held across SQLite
        self._writer = threading.Lock()  # one write attempt at a time
        self._conn: sqlite3.Connection | None = None
        self._waiting: OrderedDict[int, ReadableSpan] = OrderedDict()  # span id → child span
        self._parent_of: dict[int, int] = {}  # waiting span id → its parent's id
        self._children: dict[int, list[int]] = {}  # parent id → waiting child ids
        self._pending: list[ProcessingStatsRecord] = []
        self._problems: list[str] = []
        self._more_problems = 0
        self._failure: str | None = None  # why the last write failed (None: it worked)
        self._failure_transient = False
        self._failing_since: float | None = None
        self._retrier: threading.Thread | None = None
        self._stop = threading.Event()
        self._shut_down = False

    # --- SpanExporter ----------------------------------------------------------------

    def export(
        self, spans: Sequence[ReadableSpan], runs: Sequence[PrebuiltRun] = ()
    ) -> SpanExportResult:
        """Record the runs that `spans` complete, and `runs`: whole runs the caller has
        already built, whose spans are not in `spans` (so they are not built twice)."""
        if self._shut_down:
            return SpanExportResult.FAILURE
        refused: list[str] = []
        with self._state:
            for run in runs:
                try:
                    self._take_built(run, refused)
                except Exception as exc:  # one odd run never blocks the others
                    self._report(
                        f"refused run of span {run.root.name}: {type(exc).__name__}: {exc}"
                    )
            for span in spans:
                try:
                    if span.name == attr.PROCESS_FILE:
                        self._complete_run(span, refused)
                    elif span.name in (attr.PHASE, attr.ACTION) and span.context is not None:
                        self._wait(span)
                except Exception as exc:  # one odd span never blocks the others
                    self._report(f"refused span {span.name}: {type(exc).__name__}: {exc}")
        self._clear_markers(refused)
        done = self._write_pending(patience=0.0)
        if not done:
            self._start_retrying()
        return SpanExportResult.SUCCESS if done else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Write every pending run, trying a locked database for up to `timeout_millis`
        (default: the busy timeout) in short attempts."""
        patience = self.patience if timeout_millis is None else timeout_millis / 1000
        return self._write_pending(patience)

    def shutdown(self) -> None:
        with self._state:
            if self._shut_down:
                return
            self._shut_down = True
        self._stop.set()
        retrier = self._retrier
        if retrier is not None:
            retrier.join(timeout=self.attempt_seconds + 5)
        self._write_pending(self.patience)
        with self._state:
            unwritten = len(self._pending)
            waiting = len(self._waiting)
            failure = self._failure
        if unwritten:
            self._report(
                f"{unwritten} run(s) could not be recorded in {self.db_path}"
                + (f": {failure}" if failure else "")
            )
        if waiting:
            log.warning("%d span(s) ended without their vpo.process_file root", waiting)
        self.markers.close()
        with self._writer:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- what the owner asks -----------------------------------------------------------

    @property
    def pending_runs(self) -> int:
        return len(self._pending)

    @property
    def problems(self) -> list[str]:
        """Refused runs and spans, and (after shutdown) runs that could not be written;
        never a write that failed and later succeeded."""
        with self._state:
            found = list(self._problems)
            if self._more_problems:
                found.append(f"… and {self._more_problems} more problem(s); see the log")
        return found

    def recording_problem(self) -> str | None:
        """None while runs get written; a sentence when finished runs wait unwritten because
        writes keep failing (at once for a read-only or full database, after the busy
        timeout for a lock)."""
        with self._state:
            if not self._pending or self._failure is None or self._failing_since is None:
                return None
            if self._failure_transient and time.monotonic() - self._failing_since < self.patience:
                return None
            return f"{len(self._pending)} finished run(s) are waiting unwritten: {self._failure}"

    # --- assembling runs (under self._state) ------------------------------------------

    def _wait(self, span: ReadableSpan) -> None:
        span_id = span.context.span_id  # type: ignore[union-attr]
        self._waiting[span_id] = span
        if span.parent is not None:
            self._parent_of[span_id] = span.parent.span_id
            self._children.setdefault(span.parent.span_id, []).append(span_id)
        dropped = 0
        while len(self._waiting) > MAX_WAITING_SPANS:
            dropped += self._evict(next(iter(self._waiting)))
        if dropped:
            self._report(f"dropped {dropped} span(s) whose run never ended")

    def _evict(self, span_id: int) -> int:
        """Forget a waiting span and its waiting descendants; return how many."""
        if self._waiting.pop(span_id, None) is None:
            return 0
        parent = self._parent_of.pop(span_id, None)
        siblings = self._children.get(parent) if parent is not None else None
        if siblings is not None:
            if span_id in siblings:
                siblings.remove(span_id)
            if not siblings:
                del self._children[parent]  # type: ignore[arg-type]
        return 1 + sum(self._evict(child) for child in self._children.pop(span_id, []))

    def _take_children(self, span_id: int) -> list[ReadableSpan]:
        taken = []
        for child in self._children.pop(span_id, []):
            span = self._waiting.pop(child, None)
            self._parent_of.pop(child, None)
            if span is not None:
                taken.append(span)
        return taken

    def _take_built(self, run: PrebuiltRun, refused: list[str]) -> None:
        spans = (run.root, *run.phases, *run.actions)
        if self._children and any(s.context.span_id in self._children for s in spans):  # type: ignore[union-attr]
            # Some of its spans came before and wait: the run is all of them (built again).
            for span in spans[1:]:
                self._wait(span)
            self._complete_run(run.root, refused, run)
        else:
            self._accept(run.built)

    def _complete_run(
        self, root: ReadableSpan, refused: list[str], ready: PrebuiltRun | None = None
    ) -> None:
        phases: list[ReadableSpan] = []
        actions: list[ReadableSpan] = []
        for child in self._take_children(root.context.span_id):  # type: ignore[union-attr]
            if child.name == attr.PHASE:
                phases.append(child)
                actions += self._take_children(child.context.span_id)  # type: ignore[union-attr]
            else:
                actions.append(child)  # an action outside any phase still belongs to the run
        stats_id = (root.attributes or {}).get(attr.STATS_ID)
        try:
            if ready is not None and ready.matches(root, phases, actions):
                built = ready.built
            else:
                built = build_run(root, phases, actions, default_worker=self.host)
        except Exception as exc:  # a bug in whoever described the run: this run alone
            self._report(f"refused a run that breaks the data model (a bug): {exc}")
            if isinstance(stats_id, str):
                refused.append(stats_id)
            return
        self._accept(built)

    def _accept(self, built: BuiltRun) -> None:
        """Keep a built run for the next write (bounded), reporting its refused children."""
        for problem in built.refused:
            self._report(f"run {built.record.id}: {problem}")
        self._pending.append(built.record)
        if len(self._pending) > MAX_PENDING_RUNS:
            lost = self._pending.pop(0)
            self._report(
                f"run {lost.id} was dropped: {MAX_PENDING_RUNS} runs were already waiting "
                f"for {self.db_path} ({self._failure or 'it cannot be written'})"
            )

    # --- writing ------------------------------------------------------------------------

    def _write_pending(self, patience: float) -> bool:
        """Try to write every pending run, in attempts of a short busy timeout with the
        writer lock released in between, for up to `patience` seconds; True when none
        is left pending."""
        deadline = time.monotonic() + patience
        while True:
            if self._writer.acquire(timeout=self.attempt_seconds + 1):
                try:
                    permanent = self._attempt()
                finally:
                    self._writer.release()
            else:
                permanent = False  # another thread is writing; look again
            if not self._pending:
                return True
            remaining = deadline - time.monotonic()
            if permanent or remaining <= 0:
                return False
            time.sleep(min(RETRY_PAUSE_SECONDS, remaining))

    def _attempt(self) -> bool:
        """One transaction writing what is pending; True when the database failed in a
        way that waiting will not cure (read-only, full, corrupt)."""
        with self._state:
            batch = list(self._pending)
        if not batch:
            return False
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._write_all(conn, batch):
                    outcomes = [(run, True) for run in batch]
                else:  # a run at fault: again, one savepoint per run, to refuse it alone
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    outcomes = [(run, self._write_one(conn, run)) for run in batch]
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise
        except (sqlite3.Error, DatabaseError) as exc:
            return self._note_failure(exc, len(batch))
        written = [run.id for run, ok in outcomes if ok]
        refused = [run.id for run, ok in outcomes if not ok]
        done = {id(run) for run in batch}
        with self._state:
            self._pending = [run for run in self._pending if id(run) not in done]
            self.runs_written += len(written)
            self._failure = None
            self._failing_since = None
        self._clear_markers(written + refused)
        return False

    def _write_all(self, conn: sqlite3.Connection, batch: list[ProcessingStatsRecord]) -> bool:
        """The fast path: every run of `batch` in a few statements, without a savepoint
        per run (about a third of SQLite's cost of a run, docs/benchmarks.md). False,
        with some runs maybe written, when a run is at fault: the caller rolls back and
        writes run by run. A fault of the database is raised for the whole write."""
        try:
            insert_checked_runs(conn, batch)  # built by build_run: already checked
        except Exception as exc:
            if _database_wide(exc):
                raise
            return False
        return True

    def _write_one(self, conn: sqlite3.Connection, run: ProcessingStatsRecord) -> bool:
        """Insert one run inside its savepoint; False (refused, reported) when the run
        itself is at fault. A fault of the database is raised for the whole write."""
        conn.execute("SAVEPOINT run")
        try:
            insert_run(conn, run, checked=True)  # built by build_run: already checked
        except Exception as exc:
            if _database_wide(exc):
                raise
            conn.execute("ROLLBACK TO run")
            if isinstance(exc, sqlite3.IntegrityError) and self._replace_interrupted(conn, run):
                conn.execute("RELEASE run")
                return True
            conn.execute("RELEASE run")
            self._report(f"refused run {run.id}: {type(exc).__name__}: {exc}")
            return False
        conn.execute("RELEASE run")
        return True

    def _replace_interrupted(self, conn: sqlite3.Connection, run: ProcessingStatsRecord) -> bool:
        """The real row of a run that was wrongly reconciled as interrupted (its process
        was alive) replaces that guess."""
        row = conn.execute(
            "SELECT error_message FROM processing_stats WHERE id = ? AND success = 0", (run.id,)
        ).fetchone()
        if row is None or not str(row[0] or "").startswith("interrupted:"):
            return False
        try:
            conn.execute("DELETE FROM processing_stats WHERE id = ?", (run.id,))
            insert_run(conn, run, checked=True)
        except Exception as exc:
            if _database_wide(exc):
                raise
            conn.execute("ROLLBACK TO run")
            return False
        log.warning(
            "run %s was recorded as interrupted while alive; its real row replaces it", run.id
        )
        return True

    def _note_failure(self, exc: BaseException, runs: int) -> bool:
        message = str(exc)
        transient = _busy(exc)
        if not transient and self._conn is not None:  # reopen next time (maybe fixed)
            self._conn.close()
            self._conn = None
        failure = f"cannot write {runs} run(s) to {self.db_path}: {message}"
        with self._state:
            first = self._failing_since is None or self._failure != failure
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self._failure = failure
            self._failure_transient = transient
        if first:
            log.warning("statistics exporter: %s (kept for the next try)", failure)
        return not transient

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("statistics exporter: rollback failed: %s", exc)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Used by one thread at a time, under self._writer.
            self._conn = open_database(
                self.db_path, shared_between_threads=True, busy_timeout=self.attempt_seconds
            )
        return self._conn

    def _start_retrying(self) -> None:
        """Keep trying in the background while runs wait (no new span may come soon)."""
        with self._state:
            if self._retrier is not None or self._shut_down or not self._pending:
                return
            self._retrier = threading.Thread(
                target=self._retry, name="vpo-stats-retry", daemon=True
            )
            self._retrier.start()

    def _retry(self) -> None:
        while not self._stop.wait(RETRY_PAUSE_SECONDS):
            self._write_pending(patience=0.0)
            with self._state:
                if not self._pending:
                    self._retrier = None
                    return
        with self._state:
            self._retrier = None

    def _clear_markers(self, stats_ids: Iterable[str]) -> None:
        try:
            self.markers.delete(stats_ids)
        except sqlite3.Error as exc:  # harmless: reconciling finds the run already recorded
            log.warning("cannot clear the in-progress markers of recorded runs: %s", exc)

    def _report(self, problem: str) -> None:
        log.error("statistics exporter: %s", problem)
        with self._state:
            if len(self._problems) < MAX_PROBLEMS:
                self._problems.append(problem)
            else:
                self._more_problems += 1


def _same_in_order(spans: list[ReadableSpan], built_from: tuple[ReadableSpan, ...]) -> bool:
    if len(spans) != len(built_from):
        return False
    ordered = sorted(spans, key=_start)
    return all(a is b for a, b in zip(ordered, sorted(built_from, key=_start), strict=True))


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def _busy(exc: BaseException) -> bool:
    """Another connection holds the lock (raw, or wrapped by open_database): waiting may
    cure it, unlike a read-only, full or corrupt database."""
    cause = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    name = getattr(cause, "sqlite_errorname", None)
    if isinstance(name, str):
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    return "database is locked" in str(exc)


def _database_wide(exc: BaseException) -> bool:
    """A fault of the database (locked, read-only, full, corrupt), not of one run."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError
