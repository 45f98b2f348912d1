"""The `watch_files` table: what watch mode has settled, so that a restarted
`vpo serve --watch` neither runs a settled file again nor retries a failed one that
has not changed (docs/statistics.md, `watch_files`)."""

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from vpo.db.connection import transaction
from vpo.timefmt import utc_now


@dataclass(frozen=True)
class Settled:
    """A file as it was when its run with the policy of `policy_digest` ended."""

    policy_digest: str
    size_bytes: int
    mtime_ns: int
    success: bool
    stats_id: str | None


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
