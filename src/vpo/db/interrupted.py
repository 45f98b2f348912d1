"""Runs in progress, and the runs their dead processes left behind.

When a run starts, a marker is written (by the telemetry's span processor) with what
is known so far; once the run's rows are committed, the exporter deletes the marker.
A marker whose process is gone — crash, `kill -9`, power loss — is turned into a
failed, interrupted run the next time any VPO opens the database, so no run is ever
lost without a trace.

Markers live in a small SQLite file of their own beside the database
(`library.db` → `library.db.runs`): marking a run, which happens in the workflow's
thread before any work, never waits for the statistics writer's lock.
"""

import json
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpo.db.schema import MARKERS
from vpo.db.stats import InvalidRecordError, ProcessingStatsRecord, insert_run
from vpo.timefmt import parse_utc

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".runs"
# Marking happens before work starts: never stall a run for long on a busy marker file
# (a missed marker costs only crash-safety for that one run).
MARKER_BUSY_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class RunMarker:
    """A run in progress, as its marker says."""

    stats_id: str
    file_id: int | None
    file_path: str | None
    policy_name: str
    started_at: str
    last_seen_at: str
    trace_id: str | None
    host: str
    pid: int
    pid_started: str | None
    attributes: dict[str, Any]


def marker_path(db_path: str | os.PathLike[str]) -> Path:
    db = Path(db_path)
    return db.with_name(db.name + MARKER_SUFFIX)


class MarkerStore:
    """The marker file of one database; thread-safe (one connection under a lock)."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.path = marker_path(db_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def write(self, marker: RunMarker) -> None:
        self._execute(
            "INSERT OR REPLACE INTO runs_in_progress (stats_id, file_id, file_path, policy_name, "
            "started_at, last_seen_at, trace_id, host, pid, pid_started, attributes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                marker.stats_id,
                marker.file_id,
                marker.file_path,
                marker.policy_name,
                marker.started_at,
                marker.last_seen_at,
                marker.trace_id,
                marker.host,
                marker.pid,
                marker.pid_started,
                json.dumps(marker.attributes),
            ),
        )

    def touch(self, stats_id: str, last_seen_at: str, attributes: dict[str, Any]) -> None:
        self._execute(
            "UPDATE runs_in_progress SET last_seen_at = ?, attributes = ? WHERE stats_id = ?",
            (last_seen_at, json.dumps(attributes), stats_id),
        )

    def delete(self, stats_ids: Iterable[str]) -> None:
        ids = [(i,) for i in stats_ids]
        if ids:
            with self._lock:
                self._connection().executemany(
                    "DELETE FROM runs_in_progress WHERE stats_id = ?", ids
                )

    def read(self) -> list[RunMarker]:
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT * FROM runs_in_progress ORDER BY started_at")
                .fetchall()
            )
        return [
            RunMarker(**{**dict(row), "attributes": json.loads(row["attributes"])}) for row in rows
        ]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._connection().execute(sql, params)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=MARKER_BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,  # every use holds self._lock
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(MARKERS)
            self._conn = conn
        return self._conn


def this_process() -> tuple[str, int, str | None]:
    """(host, pid, start time) that identify this process even after its pid is reused."""
    return socket.gethostname(), os.getpid(), process_start_time(os.getpid())


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    return stat[stat.rfind(")") + 2 :].split()[19]


def process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or process_start_time(pid) in (None, started)


def reconcile_interrupted_runs(conn: sqlite3.Connection, db_path: str | os.PathLike[str]) -> int:
    """Record every run whose process on this host is gone as failed; return how many."""
    if not marker_path(db_path).exists():
        return 0  # the usual case before any processing: one stat()
    store = MarkerStore(db_path)
    try:
        host = socket.gethostname()
        dead = [
            m for m in store.read() if m.host == host and not process_alive(m.pid, m.pid_started)
        ]
        recorded = 0
        for marker in dead:
            conn.execute("BEGIN IMMEDIATE")
            try:
                known = conn.execute(
                    "SELECT 1 FROM processing_stats WHERE id = ?", (marker.stats_id,)
                ).fetchone()
                # Already there: the run was recorded and only the marker's deletion was lost.
                if not known and _record_interrupted(conn, marker):
                    recorded += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            store.delete([marker.stats_id])
        return recorded
    finally:
        store.close()


def _record_interrupted(conn: sqlite3.Connection, marker: RunMarker) -> bool:
    known = marker.attributes
    file_id = marker.file_id
    exists = (
        file_id is not None
        and conn.execute("SELECT 1 FROM files WHERE id = ?", (file_id,)).fetchone()
    )
    if not exists:
        log.warning("Interrupted run %s names no known file; dropping its marker.", marker.stats_id)
        return False
    size_before = int(known.get("size_before") or 0)
    started, last_seen = parse_utc(marker.started_at), parse_utc(marker.last_seen_at)
    counts = {
        key: int(known.get(f"{key}_before") or 0)
        for key in ("audio_tracks", "subtitle_tracks", "attachments")
    }
    run = ProcessingStatsRecord(
        id=marker.stats_id,
        file_id=file_id,
        processed_at=marker.started_at,
        policy_name=marker.policy_name,
        size_before=size_before,
        size_after=_size_on_disk(marker.file_path, size_before),
        duration_seconds=max((last_seen - started).total_seconds(), 0.0),
        success=False,
        error_message=(
            f"interrupted: the VPO process (pid {marker.pid}) ended before the run finished; "
            f"last seen {marker.last_seen_at}"
        ),
        phases_total=int(known.get("phases_total") or 0),
        hash_before=known.get("hash_before"),
        video_source_codec=known.get("video_source_codec"),
        trace_id=marker.trace_id,
        **{f"{k}_before": v for k, v in counts.items()},
        **{f"{k}_after": v for k, v in counts.items()},
    )
    try:
        insert_run(conn, run)
    except (InvalidRecordError, sqlite3.IntegrityError) as exc:
        log.error("Cannot record interrupted run %s: %s", marker.stats_id, exc)
        return False
    return True


def _size_on_disk(path: str | None, fallback: int) -> int:
    """After a crash the original is intact (safe replace), so its size is the after size."""
    try:
        return Path(path).stat().st_size if path else fallback
    except OSError:
        return fallback
