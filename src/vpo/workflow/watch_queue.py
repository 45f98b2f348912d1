"""Watch mode with `--queue` (docs/cli.md, `vpo serve`, "Watch mode"): a pass enqueues
the new and changed files that hold still, for `vpo worker`s, instead of running them;
the workers' runs arrive over OTLP into this same database.

A file is settled as *enqueued* with the size and mtime it was enqueued with and the
message's trace id (`watch_state.Settled.queued`), so the next passes leave it alone
while it waits. Then, pass after pass, its message is looked for in Redis and its run
(`processing_stats`, by the trace id the run carries) in the database:

- message still in the queue (waiting, delayed for a retry, or being run): wait;
- a run arrived (and the message is gone): it settles the file as a local run would —
  a success when the file now is what the run left (its size and partial hash are the
  run's `size_after` and `hash_after`: the change is the run's own, not new work), and
  the file is probed again into the library, which a remote run does not update; a
  failure when the file is unchanged, or holds the bytes the run began or ended with
  (retried only when it changes); otherwise the file changed after the run: new work;
- dead-lettered without a run (a worker refused it: the file changed meanwhile, or the
  worker cannot read it): an unchanged file stays settled until it changes, a changed
  one is new work — unless the change is the run of that dead letter retried by hand
  (`vpo queue retry`: the same trace), which settles it as above;
- neither in Redis nor run, for `lost_after` seconds: its spans may still be on their
  way from a worker's spool, so only then is the message taken as lost (Redis flushed
  or restarted without persistence) and the file enqueued again.

Clocks are never compared: the worker's run is found by its trace id, not by its time.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import redis

from vpo.db import watch_state
from vpo.errors import VpoError
from vpo.media.hashing import partial_hash
from vpo.pathnames import path_text
from vpo.policy.schema import Policy
from vpo.queue.enqueue import Enqueuer, Whereabouts
from vpo.workflow.library_store import RecordingError
from vpo.workflow.watch import DEFAULT_INTERVAL_SECONDS, BaseWatcher, Observed, PassReport

log = logging.getLogger("vpo.workflow.watch")  # one logger for both kinds of watch

LOST_AFTER_SECONDS = 600.0  # a worker's spool sends within seconds once the server answers


class QueueWatcher(BaseWatcher):
    """Enqueues the due files with one `Enqueuer` (kept open across passes) and settles
    them when their workers' runs arrive."""

    DOES = "enqueued"

    def __init__(
        self,
        roots: Iterable[Path],
        policy: Policy,
        enqueuer: Enqueuer,
        extensions: Iterable[str],
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        recording_problem: Callable[[], str | None] = lambda: None,
        lost_after: float = LOST_AFTER_SECONDS,
    ) -> None:
        super().__init__(
            roots,
            policy,
            enqueuer.store.db_path,
            extensions,
            interval=interval,
            recording_problem=recording_problem,
        )
        self.enqueuer = enqueuer
        self.lost_after = lost_after
        self._where = Whereabouts(frozenset(), frozenset())
        self._absent_since: dict[str, float] = {}  # trace → when first found nowhere
        self._told: set[str] = set()  # refusals (traces) and changes (runs) logged

    def _begin_pass(self) -> str | None:
        """Where the awaited messages are; why nothing can be done when Redis is away."""
        traces = {
            trace
            for settled in self._settled.values()
            if settled.policy_digest == self.digest and (trace := settled.queued_trace)
        }
        self._absent_since = {t: s for t, s in self._absent_since.items() if t in traces}
        try:
            self.enqueuer.broker.client.ping()
            self._where = self.enqueuer.whereabouts(traces)
        except redis.RedisError as exc:
            return f"the queue's Redis does not answer ({exc}); the next pass tries again"
        return None

    def _holds(
        self,
        key: str,
        path: Path,
        observed: Observed,
        settled: watch_state.Settled,
        report: PassReport,
    ) -> bool:
        unchanged = Observed(settled.size_bytes, settled.mtime_ns) == observed
        trace = settled.queued_trace
        if trace is None:
            refused = settled.refused_trace
            if refused is None or unchanged:
                return super()._holds(key, path, observed, settled, report)
            # Changed since its message was refused: by the run of that dead letter,
            # retried by hand (`vpo queue retry`), or new work.
            run = watch_state.run_of(self._connection(), key, refused)
            if run is None:
                return False
            return self._arrived(key, path, observed, unchanged, refused, run, report)
        if trace in self._where.queued:  # waiting, retrying or running: a worker has it
            self._absent_since.pop(trace, None)
            report.queued += 1
            return True
        run = watch_state.run_of(self._connection(), key, trace)
        if run is not None:
            self._absent_since.pop(trace, None)
            return self._arrived(key, path, observed, unchanged, trace, run, report)
        if trace in self._where.dead:
            if trace not in self._told:
                self._told.add(trace)
                log.warning(
                    "refused by a worker: %s (trace %s; see the worker's log)%s",
                    key,
                    trace,
                    "" if unchanged else "; it changed since: enqueued again once it holds still",
                )
            if not unchanged:
                return False
            report.refused.append(path)
            self._settle(
                key,
                watch_state.Settled.refused(self.digest, observed.size, observed.mtime_ns, trace),
            )
            return True
        first = self._absent_since.setdefault(trace, time.monotonic())
        if time.monotonic() - first < self.lost_after:
            report.queued += 1  # acknowledged, its run on its way from the worker's spool
            return True
        del self._absent_since[trace]
        log.warning(
            "lost: %s was enqueued (trace %s) but neither its message nor its run has been "
            "seen for %gs; it is enqueued again",
            key,
            trace,
            self.lost_after,
        )
        return False

    def _arrived(
        self,
        key: str,
        path: Path,
        observed: Observed,
        unchanged: bool,
        trace: str,
        run: watch_state.QueuedRun,
        report: PassReport,
    ) -> bool:
        """Settle the file by its worker's run; False when it is new work."""
        try:
            now = partial_hash(path)
        except OSError:
            return False  # gone or unreadable: the next pass sees
        if run.success:
            settled_by_run = observed.size == run.size_after and now == run.hash_after
        else:
            settled_by_run = unchanged or now in (run.hash_before, run.hash_after)
        ids = f"stats_id={run.stats_id} trace_id={trace}"
        where = f"worker {run.worker}" if run.worker else "a worker"
        if not settled_by_run:
            if run.stats_id not in self._told:
                self._told.add(run.stats_id)
                log.info("changed after its run on %s: %s (%s): new work", where, key, ids)
            return False
        if run.success:
            log.info(
                "run succeeded on %s: %s: %d change(s), saved %d bytes (%s)",
                where,
                key,
                run.changes,
                run.size_before - run.size_after,
                ids,
            )
            self._rescan(key, path, now)
        else:
            log.warning("run failed on %s: %s: %s (%s)", where, key, run.error, ids)
        if not self._settle(
            key,
            watch_state.Settled(
                self.digest, observed.size, observed.mtime_ns, run.success, run.stats_id
            ),
        ):
            return True  # held until the database takes it: its run is recorded
        report.arrived.append((path, run.success))
        return True

    def _rescan(self, key: str, path: Path, hashed: str) -> None:
        """The library row of a file a worker changed, as it is now (a remote run leaves
        the server's `files` row as it was enqueued)."""
        try:
            self.enqueuer.scan(path, hashed)
        except (OSError, RecordingError) as exc:
            log.warning("watch: cannot update the library row of %s: %s", key, exc)

    def _dispatch(
        self, due: list[tuple[Path, Observed]], report: PassReport, stop: threading.Event | None
    ) -> None:
        for number, (path, _observed) in enumerate(due):
            if stop is not None and stop.is_set():
                return
            key = path_text(path)
            try:
                message = self.enqueuer.enqueue(path, self.roots, rescan=True)
            except redis.RedisError as exc:
                report.problem = f"cannot enqueue on the queue's Redis ({exc})"
                log.error(
                    "watch pass %d: %s; %d file(s) left for the next pass",
                    self.passes,
                    report.problem,
                    len(due) - number,
                )
                return
            except RecordingError as exc:  # the library refused: no message without its file
                report.problem = exc.message
                log.error("watch pass %d: nothing more enqueued: %s", self.passes, exc.message)
                return
            except (OSError, VpoError) as exc:  # unreadable, or written to while hashed
                reason = exc.message if isinstance(exc, VpoError) else exc.strerror or str(exc)
                log.warning("not enqueued: %s: %s", key, reason)
                continue
            log.info("enqueued: %s (trace %s)", key, message.trace_id)
            report.enqueued.append(path)
            self._settle(
                key,
                watch_state.Settled.queued(
                    self.digest, message.size, message.mtime_ns, message.trace_id
                ),
            )

    def _summarize(self, report: PassReport) -> None:
        if report.problem is not None:
            return  # its one line is logged
        if not (report.enqueued or report.arrived or report.refused or report.due):
            return
        succeeded = sum(1 for _path, success in report.arrived if success)
        log.info(
            "watch pass %d: %d file(s), %d enqueued, %d run(s) arrived (%d succeeded, "
            "%d failed), %d refused, %d in the queue, %d waiting",
            self.passes,
            report.files,
            len(report.enqueued),
            len(report.arrived),
            succeeded,
            len(report.arrived) - succeeded,
            len(report.refused),
            report.queued,
            len(report.waiting),
        )
