"""The `watch_files` table: what watch mode has settled, so that a restarted
`vpo serve --watch` neither runs a settled file again nor retries a failed one that
has not changed (docs/statistics.md, `watch_files`).

With `--queue` a file is settled when it is enqueued, as it was then, its `stats_id`
holding `queued:TRACE_ID` (the message's trace id, which the worker's run carries) until
that run arrives and settles it like a local one; `refused:TRACE_ID` when a worker
dead-lettered the message without a run (so that the run of a dead letter retried by
hand is still recognised). The markers live in `stats_id` rather than a column of their
own so that the schema stays as it is; no run id looks like them.
"""

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from vpo.db.connection import transaction
from vpo.timefmt import utc_now

QUEUED = "queued:"
REFUSED = "refused:"


@dataclass(frozen=True)
class Settled:
    """A file as it was when its run with the policy of `policy_digest` ended."""

    policy_digest: str
    size_bytes: int
    mtime_ns: int
    success: bool
    stats_id: str | None

    @classmethod
    def queued(cls, policy_digest: str, size_bytes: int, mtime_ns: int, trace_id: str) -> "Settled":
        """A file enqueued as it is now, whose run (trace `trace_id`) has not arrived."""
        return cls(policy_digest, size_bytes, mtime_ns, False, QUEUED + trace_id)

    @classmethod
    def refused(
        cls, policy_digest: str, size_bytes: int, mtime_ns: int, trace_id: str
    ) -> "Settled":
        """A file whose message (trace `trace_id`) a worker dead-lettered without a run."""
        return cls(policy_digest, size_bytes, mtime_ns, False, REFUSED + trace_id)

    @property
    def queued_trace(self) -> str | None:
        """The trace of the message whose run is awaited, or None (a run settled it)."""
        return self._marked(QUEUED)

    @property
    def refused_trace(self) -> str | None:
        """The trace of the message a worker refused, or None."""
        return self._marked(REFUSED)

    def _marked(self, prefix: str) -> str | None:
        if self.stats_id is not None and self.stats_id.startswith(prefix):
            return self.stats_id[len(prefix) :]
        return None


def load(conn: sqlite3.Connection) -> dict[str, Settled]:
    """Every settled file, by path (as the library stores paths)."""
    rows = conn.execute(
        "SELECT path, policy_digest, size_bytes, mtime_ns, success, stats_id FROM watch_files"
    )
    return {
        path: Settled(digest, size, mtime_ns, bool(success), stats_id)
        for path, digest, size, mtime_ns, success, stats_id in rows
    }


def settle(conn: sqlite3.Connection, path: str, settled: Settled) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO watch_files (path, policy_digest, size_bytes, mtime_ns, "
            "success, stats_id, settled_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                path,
                settled.policy_digest,
                settled.size_bytes,
                settled.mtime_ns,
                int(settled.success),
                settled.stats_id,
                utc_now(),
            ),
        )


def forget(conn: sqlite3.Connection, paths: Iterable[str]) -> None:
    """Files gone from the watched folders (a file that comes back is new again)."""
    with transaction(conn):
        conn.executemany("DELETE FROM watch_files WHERE path = ?", ((p,) for p in paths))


@dataclass(frozen=True)
class QueuedRun:
    """The run a worker made of an enqueued file (its row in `processing_stats`)."""

    stats_id: str
    success: bool
    error: str | None
    size_before: int
    size_after: int
    hash_before: str | None
    hash_after: str | None
    changes: int
    worker: str | None


def run_of(conn: sqlite3.Connection, path: str, trace_id: str) -> QueuedRun | None:
    """The latest run of the file at `path` in the trace `trace_id` (a message retried
    after an interrupted run has several), or None while none has arrived."""
    row = conn.execute(
        "SELECT s.id, s.success, s.error_message, s.size_before, s.size_after, s.hash_before, "
        "s.hash_after, s.total_changes, s.worker FROM processing_stats s "
        "WHERE s.file_id = (SELECT id FROM files WHERE path = ?) AND s.trace_id = ? "
        "ORDER BY s.processed_at DESC LIMIT 1",
        (path, trace_id),
    ).fetchone()
    if row is None:
        return None
    stats_id, success, error, before, after, hash_before, hash_after, changes, worker = row
    return QueuedRun(
        stats_id, bool(success), error, before, after, hash_before, hash_after, changes, worker
    )
