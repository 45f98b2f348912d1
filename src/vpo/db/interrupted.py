"""Runs in progress, and the runs their dead processes left behind.

When a run starts, a marker row is written (by the telemetry's span processor) with
what is known so far; when the run is recorded, the marker goes in the same
transaction. A marker whose process is gone — crash, `kill -9`, power loss — is turned
into a failed, interrupted run the next time any VPO opens the database, so no run is
ever lost without a trace.
"""

import json
import logging
import os
import socket
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpo.db.stats import InvalidRecordError, ProcessingStatsRecord, insert_run
from vpo.timefmt import parse_utc

log = logging.getLogger(__name__)

# Keys of the marker's `attributes` JSON: the before values of the run.
BEFORE_KEYS = (
    "size_before",
    "audio_tracks_before",
    "subtitle_tracks_before",
    "attachments_before",
    "hash_before",
    "video_source_codec",
    "phases_total",
)


@dataclass(frozen=True)
class RunMarker:
    """A run in progress, as its marker row says."""

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


def write_marker(conn: sqlite3.Connection, marker: RunMarker) -> None:
    conn.execute(
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


def touch_marker(
    conn: sqlite3.Connection, stats_id: str, last_seen_at: str, attributes: dict[str, Any]
) -> None:
    conn.execute(
        "UPDATE runs_in_progress SET last_seen_at = ?, attributes = ? WHERE stats_id = ?",
        (last_seen_at, json.dumps(attributes), stats_id),
    )


def delete_marker(conn: sqlite3.Connection, stats_id: str) -> None:
    conn.execute("DELETE FROM runs_in_progress WHERE stats_id = ?", (stats_id,))


def read_markers(conn: sqlite3.Connection) -> list[RunMarker]:
    rows = conn.execute("SELECT * FROM runs_in_progress ORDER BY started_at").fetchall()
    return [RunMarker(**{**dict(row), "attributes": json.loads(row["attributes"])}) for row in rows]


def reconcile_interrupted_runs(conn: sqlite3.Connection) -> int:
    """Record every run whose process on this host is gone as failed; return how many."""
    if conn.execute("SELECT 1 FROM runs_in_progress LIMIT 1").fetchone() is None:
        return 0  # the usual case: one indexed look-up at open
    host = socket.gethostname()
    recorded = 0
    for marker in read_markers(conn):
        if marker.host != host or process_alive(marker.pid, marker.pid_started):
            continue  # another machine's run, or still running
        conn.execute("BEGIN IMMEDIATE")
        try:
            still_there = conn.execute(
                "SELECT 1 FROM runs_in_progress WHERE stats_id = ?", (marker.stats_id,)
            ).fetchone()
            if still_there:  # another VPO may have reconciled it while we waited
                _record_interrupted(conn, marker)
                delete_marker(conn, marker.stats_id)
                recorded += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return recorded


def _record_interrupted(conn: sqlite3.Connection, marker: RunMarker) -> None:
    known = marker.attributes
    file_id = marker.file_id
    exists = (
        file_id is not None
        and conn.execute("SELECT 1 FROM files WHERE id = ?", (file_id,)).fetchone()
    )
    if not exists:
        log.warning("Interrupted run %s names no known file; dropping its marker.", marker.stats_id)
        return
    size_before = int(known.get("size_before") or 0)
    size_after = _size_on_disk(marker.file_path, size_before)
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
        size_after=size_after,
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
        uuid.UUID(marker.stats_id)
        insert_run(conn, run)
    except (InvalidRecordError, ValueError) as exc:
        log.error("Cannot record interrupted run %s: %s", marker.stats_id, exc)


def _size_on_disk(path: str | None, fallback: int) -> int:
    """After a crash the original is intact (safe replace), so its size is the after size."""
    try:
        return Path(path).stat().st_size if path else fallback
    except OSError:
        return fallback
