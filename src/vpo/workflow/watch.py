"""Watch mode: keep folders conforming to a policy with nobody typing a command
(docs/cli.md, `vpo serve --watch`).

Each pass lists the folders and stats every video file; that is all an unchanged,
settled file costs. A file is run — through the same processor, claims and spans as
`vpo process` — when it is new, changed, or settled under another policy, and only once
it holds still: the same size and mtime as on the pass before (or as when its last run
ended), or untouched for a whole interval. A download in progress is never processed.

A run settles its file (`watch_files`), a failed run too: that file is retried only
when it changes. A run interrupted by shutdown, or a file another VPO holds, is not
settled and comes up again. Passes never overlap: the next starts an interval after
the last one started, or at once when a pass took longer.

`BaseWatcher` is the passes; `Watcher` runs the due files here; `QueueWatcher`
(vpo.workflow.watch_queue, `--queue`) enqueues them for `vpo worker`s instead.
"""

import hashlib
import logging
import os
import sqlite3
import stat
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vpo.db import watch_state
from vpo.db.connection import check_writable, open_database
from vpo.errors import DatabaseError
from vpo.media.hashing import partial_hash
from vpo.pathnames import path_text
from vpo.policy.schema import Policy
from vpo.workflow.batch import BatchReport, process_files
from vpo.workflow.processor import FileProcessor, RunResult

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 300.0  # a NAS: a new download is picked up within minutes


@dataclass(frozen=True)
class Observed:
    """A file's size and mtime on one pass: what "held still" compares."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> "Observed":
        return cls(status.st_size, status.st_mtime_ns)


@dataclass
class PassReport:
    """What one pass saw and did."""

    files: int = 0
    settled: int = 0  # unchanged since their run: stat only
    waiting: list[Path] = field(default_factory=list)  # new or changed, still changing
    due: int = 0  # held still: run (or enqueued) by this pass
    batch: BatchReport = field(default_factory=BatchReport)
    problem: str | None = None  # why the pass did nothing (the database or Redis refused)
    # With --queue (vpo.workflow.watch_queue):
    enqueued: list[Path] = field(default_factory=list)
    queued: int = 0  # enqueued before, their runs not arrived yet
    arrived: list[tuple[Path, bool]] = field(default_factory=list)  # runs settled: success?
    refused: list[Path] = field(default_factory=list)  # dead-lettered by a worker


def policy_digest(policy: Policy) -> str:
    """A policy's identity for settling: its meaning, not its file's bytes, so a comment
    or reformatting does not run the whole library again."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()


class BaseWatcher(ABC):
    """Passes over `roots` with one policy until told to stop: what a pass lists, what
    it leaves alone and what it remembers. Subclasses say what is done with the files
    that are due (`_dispatch`: run here, or enqueue for workers)."""

    DOES = "processed"  # what a pass that cannot go on did not do, for its log line

    def __init__(
        self,
        roots: Iterable[Path],
        policy: Policy,
        db_path: Path,
        extensions: Iterable[str],
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        recording_problem: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self.policy = policy
        self.db_path = Path(db_path)
        self.suffixes = {f".{ext.lower()}" for ext in extensions}
        self.interval = interval
        self.recording_problem = recording_problem
        self.digest = policy_digest(policy)
        self.passes = 0
        self._conn: sqlite3.Connection | None = None
        self._settled: dict[str, watch_state.Settled] = {}
        self._last_seen: dict[str, Observed] = {}  # unsettled files, on the pass before
        self._reported: dict[str, Observed] = {}  # skips already logged, not repeated
        self._listed: set[str] = set()  # folders listed by this pass

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until `stop` is set; returns once the running pass has ended
        (the caller cancels the processor to interrupt its runs)."""
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.run_pass(stop)
                except Exception:  # a bug must not end watching; the next pass tries again
                    log.exception("watch pass %d failed unexpectedly", self.passes)
                stop.wait(max(0.0, started + self.interval - time.monotonic()))
        finally:
            self.close()

    def run_pass(self, stop: threading.Event | None = None) -> PassReport:
        report = PassReport()
        self.passes += 1
        conn = self._connection()
        problem = self._unrecordable() or self._begin_pass()
        if problem is not None:
            report.problem = problem
            log.error("watch pass %d: nothing %s: %s", self.passes, self.DOES, problem)
            return report
        due: list[tuple[Path, Observed]] = []
        seen: dict[str, Observed] = {}
        unsettled: dict[str, Observed] = {}  # compared on the next pass
        now_ns = time.time_ns()
        quiet_ns = int(self.interval * 1e9)
        for path, status in self._files():
            if stop is not None and stop.is_set():
                return report
            key = path_text(path)
            observed = Observed.of(status)
            seen[key] = observed
            report.files += 1
            settled = self._settled.get(key)
            as_settled = (
                settled is not None and Observed(settled.size_bytes, settled.mtime_ns) == observed
            )
            if (
                settled is not None
                and settled.policy_digest == self.digest
                and self._holds(key, path, observed, settled, report)
            ):
                continue
            unsettled[key] = observed
            # Unchanged since the pass before, or since a run under another policy.
            still = as_settled or self._last_seen.get(key) == observed
            if still or now_ns - status.st_mtime_ns >= quiet_ns:
                due.append((path, observed))
            else:
                if key not in self._last_seen:
                    log.info("waiting: %s is new or changing; it is run once it holds still", key)
                report.waiting.append(path)
        self._last_seen = unsettled
        self._forget_gone(conn, seen)
        report.due = len(due)
        if due:
            self._dispatch(due, report, stop)
        self._summarize(report)
        return report

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- what subclasses decide ------------------------------------------------------------

    def _begin_pass(self) -> str | None:
        """Why this pass can do nothing (checked once, before listing), or None."""
        return None

    def _holds(
        self,
        key: str,
        path: Path,
        observed: Observed,
        settled: watch_state.Settled,
        report: PassReport,
    ) -> bool:
        """Whether a file settled under this policy needs nothing this pass: it has not
        changed since. (A file enqueued by `--queue` and not changed since counts too:
        the queue has it.)"""
        if Observed(settled.size_bytes, settled.mtime_ns) != observed:
            return False
        report.settled += 1
        return True

    @abstractmethod
    def _dispatch(
        self, due: list[tuple[Path, Observed]], report: PassReport, stop: threading.Event | None
    ) -> None:
        """Do the due files' work (they held still); fill `report`."""

    @abstractmethod
    def _summarize(self, report: PassReport) -> None:
        """The pass's one summary line, when it did something."""

    # -- one pass's parts ------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(self.db_path)
            self._settled = watch_state.load(self._conn)
        return self._conn

    def _settle(self, key: str, settled: watch_state.Settled) -> bool:
        """Note `key` as settled; False (logged) when the database refused."""
        try:
            watch_state.settle(self._connection(), key, settled)
        except (DatabaseError, sqlite3.Error) as exc:  # its run is recorded; run again later
            log.error("watch: cannot note %s as done (it will be run again): %s", key, exc)
            return False
        self._settled[key] = settled
        self._reported.pop(key, None)
        return True

    def _unrecordable(self) -> str | None:
        """Why no file may be run now (its run could not be recorded), or None."""
        problem = self.recording_problem()
        if problem:
            return problem
        try:
            check_writable(self.db_path, commit=False)
        except DatabaseError as exc:
            return exc.message
        return None

    def _files(self) -> Iterator[tuple[Path, os.stat_result]]:
        """Video files under the roots with their status (hidden names skipped, as the
        scan does; a symlink is followed to its file); `_listed` collects the folders."""
        self._listed.clear()
        for root in self.roots:
            yield from self._walk(root)

    def _walk(self, folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("watch: cannot list %s: %s", path_text(folder), exc.strerror)
            return
        self._listed.add(path_text(folder))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path))
                    continue
                if Path(entry.name).suffix.lower() not in self.suffixes:
                    continue
                if entry.is_symlink():
                    real = Path(entry.path).resolve(strict=True)
                    status = real.stat()
                else:
                    real, status = Path(entry.path), entry.stat(follow_symlinks=False)
            except (OSError, RuntimeError):
                continue  # vanished, a dangling link or a loop: nothing to run
            if stat.S_ISREG(status.st_mode):
                yield real, status

    def _forget_gone(self, conn: sqlite3.Connection, seen: dict[str, Observed]) -> None:
        """Forget settled files that are gone — only from folders listed in this pass, and
        never under a root that showed no video file at all: an unmounted share looks like
        an empty folder, and forgetting its library would run it all again."""
        gone: list[str] = []
        for root in (path_text(r).rstrip("/") + "/" for r in self.roots):
            if not any(key.startswith(root) for key in seen):
                if any(key.startswith(root) for key in self._settled):
                    log.warning(
                        "watch: no video files under %s now (unmounted?); what was settled "
                        "there is kept",
                        root,
                    )
                continue
            gone += [
                key
                for key in self._settled
                if key.startswith(root)
                and key not in seen
                and key.rsplit("/", 1)[0] in self._listed
            ]
        if not gone:
            return
        try:
            watch_state.forget(conn, gone)
        except (DatabaseError, sqlite3.Error) as exc:
            log.warning("watch: cannot forget files gone from the folders: %s", exc)
            return
        for key in gone:
            del self._settled[key]


class Watcher(BaseWatcher):
    """Runs the due files here, with one processor (its claims, spans and store)."""

    def __init__(
        self,
        roots: Iterable[Path],
        processor: FileProcessor,
        extensions: Iterable[str],
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        jobs: int = 1,
        recording_problem: Callable[[], str | None] = lambda: None,
        on_result: Callable[[RunResult], None] | None = None,
    ) -> None:
        super().__init__(
            roots,
            processor.policy,
            processor.store.db_path,
            extensions,
            interval=interval,
            recording_problem=recording_problem,
        )
        self.processor = processor
        self.jobs = jobs
        self.on_result = on_result

    def _dispatch(
        self, due: list[tuple[Path, Observed]], report: PassReport, stop: threading.Event | None
    ) -> None:
        before = dict(due)

        def finished(result: RunResult) -> None:
            self._finished(result, before.get(result.path))
            if self.on_result is not None:
                self.on_result(result)

        report.batch = process_files(
            self.processor,
            [path for path, _ in due],
            self.jobs,
            on_result=finished,
            stop_check=self._unrecordable,
        )

    def _summarize(self, report: PassReport) -> None:
        if not report.due:
            return
        log.info(
            "watch pass %d: %d file(s), %d run(s) (%d succeeded, %d failed, %d skipped), "
            "%d waiting",
            self.passes,
            report.files,
            len(report.batch.runs),
            report.batch.succeeded,
            report.batch.failed,
            len(report.batch.skipped),
            len(report.waiting),
        )

    def _finished(self, result: RunResult, before: Observed | None) -> None:
        """Settle the file of a finished run, or leave it to come up again."""
        key = path_text(result.path)
        if result.skipped:
            self._log_skip(key, result, before)
            return
        _log_run(key, result)
        if not result.success and self.processor.cancellation.cancelled:
            return  # interrupted by shutdown: run again next time
        try:
            after = Observed.of(result.path.stat())
        except OSError:
            return  # gone already: the next pass forgets it
        if not result.success and _changed_during_run(result, before, after):
            return  # new work for a later pass, not a failure of this file as it is
        self._settle(
            key,
            watch_state.Settled(
                self.digest, after.size, after.mtime_ns, result.success, result.stats_id
            ),
        )

    def _log_skip(self, key: str, result: RunResult, observed: Observed | None) -> None:
        """A skipped file is tried again next pass; its reason is logged once per state."""
        if observed is not None and self._reported.get(key) == observed:
            return
        if observed is not None:
            self._reported[key] = observed
        log.info("skipped: %s: %s", key, result.error)


def _log_run(key: str, result: RunResult) -> None:
    ids = f"stats_id={result.stats_id} trace_id={result.trace_id}"
    if result.success:
        log.info(
            "run succeeded: %s: %d change(s), saved %d bytes (%s)",
            key,
            result.changes,
            result.saved,
            ids,
        )
    else:
        log.warning("run failed: %s: %s (%s)", key, result.error, ids)


def _changed_during_run(result: RunResult, before: Observed | None, after: Observed) -> bool:
    """Whether someone changed the file while its run failed. A file that merely moved on
    was put back by VPO (the same bytes as when the run began, a new mtime): that one is
    settled."""
    if before is None or after == before:
        return False
    return result.hash_before is None or _hash_or_none(result.path) != result.hash_before


def _hash_or_none(path: Path) -> str | None:
    try:
        return partial_hash(path)
    except OSError:
        return None
