"""The worker's side: one message → one run of the same `FileProcessor` as `vpo process`
(claims, safe replace), its spans exported over OTLP/HTTP to the server.

- The file's path is the message's root mapped by `--path-map`, then its relative path.
- A file whose size, mtime or partial hash differ from the message's is refused: one
  line is logged, nothing is run or recorded, and the message is not retried (it goes
  to the dead-letter list; enqueue it again after a scan).
- The run names the SERVER's file id (`MessageFileStore`): the worker's own database is
  a scratch library for claims and its `files` rows; the statistics that count are the
  server's, written from the spans the worker exports.
- The run's root span is a child of the message's `traceparent`: the enqueue and the
  run share one trace id.
- A run's spans are in the spool (`vpo.queue.spool`) before its message is acknowledged
  or retried; the spool sends them to the server — now, or when it answers again. A run
  that succeeds is acknowledged; a failed run, a run stopped by the worker's shutdown
  and a file claimed by another VPO are retried later (`vpo worker --retries`), then
  dead-lettered (`vpo queue dead`).
- A file an earlier, killed worker left half-edited in place is put back from its edit
  journal before anything else, unless the server's record of that run (interrupted
  once its heartbeats stopped: vpo.queue.announce, vpo.server.remote_runs) counts the
  edit: then it is kept. A file changed since it was enqueued is run as it now is when
  it is exactly what the file's last run recorded (vpo.server.last_run).
- Nothing is run while the server does not answer or the spool is full: a file must
  never change without its run being recorded, so the worker waits before each message
  (its message stays taken, and goes back to the queue if the worker stops meanwhile).
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dramatiq import Retry
from opentelemetry import context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vpo.db.last_run import LastRun
from vpo.errors import VpoError
from vpo.executor.process import Cancellation
from vpo.media import edit_journal
from vpo.media.identity import FileIdentity
from vpo.pathnames import path_text
from vpo.policy.loader import parse_policy
from vpo.queue.message import FileMessage, InvalidMessage, PathMap
from vpo.queue.spool import SpoolExporter
from vpo.queue.telemetry import WorkerTelemetry
from vpo.workflow.library_store import KnownFile, LibraryStore
from vpo.workflow.processor import FileProcessor, RunResult

log = logging.getLogger(__name__)

SERVER_RETRY_SECONDS = 2.0  # how often a worker asks a server that did not answer
WAKE_SECONDS = 0.2  # a stop is noticed within this while waiting


class RetryLater(Retry):
    """The message may run later (claimed elsewhere, stopped, not recorded): retried
    with backoff, logged by the worker's own line rather than as Dramatiq's error."""


class RunFailed(RetryLater):
    """A recorded run that failed (a tool's error, an unreadable file): each retry is a
    run of its own; the last one's sentence (`run ID failed: ERROR`) is what the dead
    letter keeps as its reason."""


class MessageFileStore(LibraryStore):
    """The worker's scratch library, answering the server's file id (from the message)
    for the files being run, so that the run's spans name the server's file."""

    def __init__(self, db_path: str | Path) -> None:
        super().__init__(db_path)
        self._ids: dict[str, int] = {}
        self._ids_lock = threading.Lock()

    @contextmanager
    def file_id_for(self, path: Path, file_id: int) -> Iterator[None]:
        key = path_text(path.resolve())
        with self._ids_lock:
            self._ids[key] = file_id
        try:
            yield
        finally:
            with self._ids_lock:
                self._ids.pop(key, None)

    def _message_id(self, path: Path) -> int | None:
        with self._ids_lock:
            return self._ids.get(path_text(path.resolve()))

    def known(self, path: Path) -> KnownFile | None:
        file_id = self._message_id(path)
        return KnownFile(file_id, None) if file_id is not None else super().known(path)

    def save(self, path: Path, *args: Any, **kwargs: Any) -> int:
        local_id = super().save(path, *args, **kwargs)
        file_id = self._message_id(path)
        return file_id if file_id is not None else local_id


class MessageHandler:
    """Runs messages; one `FileProcessor` per policy, all sharing the store, the
    telemetry and the cancellation (cancelled when the worker stops)."""

    def __init__(
        self,
        store: MessageFileStore,
        telemetry: WorkerTelemetry,
        path_map: PathMap,
        cancellation: Cancellation,
        say: Callable[[str], None],
        server_problem: Callable[[], str | None] = lambda: None,
        spool: SpoolExporter | None = None,
        last_run: Callable[[int], LastRun | None] = lambda _file_id: None,
    ) -> None:
        self.server_problem = server_problem
        self.last_run = last_run  # the server's file id → its last run (vpo.db.last_run)
        self.spool = spool
        self.store = store
        self.telemetry = telemetry
        self.path_map = path_map
        self.cancellation = cancellation
        self.say = say
        self._processors: dict[str, FileProcessor] = {}
        self._lock = threading.Lock()

    def __call__(self, data: dict[str, Any]) -> None:
        try:
            message = FileMessage.from_dict(data)
        except InvalidMessage as exc:
            self.say(f"refused a message: {exc.message}")
            raise
        path = message.local_path(self.path_map)
        self._wait_for_server(path)  # before the file is checked: the wait may be long
        problem = self._settle_dead_runs(message, path)
        if problem is not None:
            self.say(f"refused {path_text(path)}: {problem} (trace {message.trace_id})")
            raise InvalidMessage(f"{path_text(path)}: {problem}")
        try:
            processor = self._processor(message)
        except InvalidMessage as exc:
            self.say(f"refused {path_text(path)}: {exc.message} (trace {message.trace_id})")
            raise
        failures = self.telemetry.export_failures
        parent = TraceContextTextMapPropagator().extract({"traceparent": message.traceparent})
        with self.store.file_id_for(path, message.file_id):
            token = context.attach(parent)
            try:
                result = processor.process(path)
            finally:
                context.detach(token)
        # The run's spans are spooled (on disk) before the message is acknowledged.
        self.telemetry.flush()
        self.say(_line(result))
        if result.stats_id is not None:
            if self.telemetry.export_failures > failures:
                # Not run again: the file is already changed; a new run would not restore
                # the record of this one. (The wait below keeps this rare: a full spool.)
                self.say(f"run {result.stats_id}: spans not spooled (the spool is full)")
            elif self.spool is not None and self.spool.failing:
                self.say(f"run {result.stats_id}: spooled; will be sent when the server answers")
        if result.skipped or result.fatal or (not result.success and self.cancellation.cancelled):
            raise RetryLater(result.error or "not run")
        if not result.success:  # recorded; retried with backoff, then dead-lettered
            run = f"run {result.stats_id}" if result.stats_id is not None else "the run"
            raise RunFailed(f"{run} failed: {result.error or 'no error recorded'}")

    def _settle_dead_runs(self, message: FileMessage, path: Path) -> str | None:
        """Why the file is not to be run (it is not the one enqueued), or None.

        A killed worker may have left the file half-edited in place (an edit journal nobody
        holds) or changed by the phases it completed. Then the server says what that run
        recorded (vpo.server.last_run): an edit the record counts is kept, any other is
        undone from its journal (vpo.media.edit_journal) — so the file and the statistics
        agree — and a file that is exactly as the record left it is run as it now is. A
        journal held by a run on this machine is left to it."""
        stale = bool(edit_journal.stale_for(path))
        problem = None if stale else _changed(message, path)
        if not stale and problem is None:
            return None
        try:
            last = self.last_run(message.file_id)
        except VpoError as exc:
            raise RetryLater(
                f"cannot ask the server what the last run of {path_text(path)} left: {exc}"
            ) from None
        if stale:
            recorded = last.partial_hash if last is not None else None
            sentence = edit_journal.recover(path, recorded_hash=recorded)
            if sentence:
                self.say(sentence)
            problem = _changed(message, path)
        if problem is not None and last is not None and _as_left_by(last, path):
            self.say(
                f"{path_text(path)} changed since it was enqueued, as run {last.stats_id} "
                f"({last.state}) left it: running on it as it is now"
            )
            return None
        return problem

    def _wait_for_server(self, path: Path) -> None:
        """Return once the server would record a run; RetryLater if the worker stops."""
        waited = False
        while (problem := self._problem()) is not None:
            if not waited:
                self.say(f"waiting for the server before {path_text(path)}: {problem}")
                waited = True
            for _ in range(int(SERVER_RETRY_SECONDS / WAKE_SECONDS)):
                if self.cancellation.cancelled:
                    raise RetryLater("stopped while waiting for the server")
                time.sleep(WAKE_SECONDS)
        if waited:
            self.say("the server answers again")

    def _problem(self) -> str | None:
        full = self.spool.problem() if self.spool is not None else None
        return full if full is not None else self.server_problem()

    def _processor(self, message: FileMessage) -> FileProcessor:
        with self._lock:
            processor = self._processors.get(message.policy_digest)
            if processor is None:
                try:
                    policy = parse_policy(message.policy_yaml, Path("<queued policy>"))
                except VpoError as exc:
                    raise InvalidMessage(exc.message) from exc
                processor = FileProcessor(
                    policy,
                    self.store,
                    self.telemetry.tracer,
                    self.telemetry.metrics,
                    cancellation=self.cancellation,
                )
                self._processors[message.policy_digest] = processor
            return processor


def _changed(message: FileMessage, path: Path) -> str | None:
    """Why the file at `path` is not the one the enqueuer probed, or None."""
    try:
        now = FileIdentity.of(path)
    except FileNotFoundError:
        return "no longer exists (moved or deleted)"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    except VpoError as exc:
        return exc.message
    found = []
    if now.size != message.size:
        found.append(f"its size is {now.size:,} bytes, not {message.size:,}")
    elif now.partial_hash != message.partial_hash:
        found.append("its content changed")
    if now.mtime_ns != message.mtime_ns and not found:
        found.append("it was modified (new modification time)")
    return f"changed since it was enqueued: {'; '.join(found)}" if found else None


def _as_left_by(last: LastRun, path: Path) -> bool:
    """Whether the file at `path` is exactly what `last` recorded it left (size and
    partial hash)."""
    if last.size is None or last.partial_hash is None:
        return False
    try:
        now = FileIdentity.of(path)
    except (OSError, VpoError):
        return False
    return now.size == last.size and now.partial_hash == last.partial_hash


def _line(result: RunResult) -> str:
    where = path_text(result.path)
    if result.skipped:
        return f"skipped {where}: {result.error}"
    outcome = "succeeded" if result.success else f"failed ({result.error})"
    return f"run {result.stats_id} {outcome}: {where} (trace {result.trace_id})"
