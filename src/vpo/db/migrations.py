"""Schema versions kept in `PRAGMA user_version`, upgraded step by step.

Each step runs in its own transaction together with the version bump, so a failed
upgrade leaves the database at the last complete version with every row in place.
"""

import sqlite3
from dataclasses import dataclass

from vpo.db.schema import (
    V1_LIBRARY,
    V2_STATISTICS,
    V3_LIBRARY_TOTALS,
    V4_STATISTICS_ROLLUPS,
    V5_ACTION_TOOL_CALLS,
    V6_WATCH_FILES,
    V7_RUN_WORKERS,
    V8_ROLLUPS_PER_WRITE,
)


@dataclass(frozen=True)
class Migration:
    """The SQL that takes a database from `version - 1` to `version`."""

    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "library: files and tracks", V1_LIBRARY),
    Migration(
        2, "statistics: processing_stats, action_results, performance_metrics", V2_STATISTICS
    ),
    Migration(3, "first video track on files; library totals kept by triggers", V3_LIBRARY_TOTALS),
    Migration(4, "statistics rollups per policy and hour/day/month", V4_STATISTICS_ROLLUPS),
    Migration(5, "action_results: the tool call that did each action", V5_ACTION_TOOL_CALLS),
    Migration(6, "watch_files: what watch mode has settled", V6_WATCH_FILES),
    Migration(7, "processing_stats: the worker (host) that ran each run", V7_RUN_WORKERS),
    Migration(
        8, "statistics rollups: runs added once per write, not per row", V8_ROLLUPS_PER_WRITE
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The version the database says it is at (0 for a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply every step above the current version up to `target`; return the applied ones.

    The connection must be in autocommit mode (`isolation_level=None`): each step
    opens its own `BEGIN IMMEDIATE` so concurrent openers wait instead of racing.
    """
    applied: list[int] = []
    for step in MIGRATIONS:
        if step.version > target:
            break
        if schema_version(conn) >= step.version:
            continue
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{step.sql}\nPRAGMA user_version = {step.version};\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if schema_version(conn) >= step.version:
                continue  # another process upgraded it while we waited for the lock
            raise
        applied.append(step.version)
    return applied
