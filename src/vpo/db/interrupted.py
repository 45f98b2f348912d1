"""Runs in progress, and the runs their dead processes left behind.

When a run starts, a marker is written (by the telemetry's span processor) with its
before values and the lease token of its process; each phase that ends writes the
run's after values so far; a heartbeat keeps `last_seen_at` fresh. Once the run's rows
are committed, the exporter deletes the marker. A marker whose process is gone —
crash, `kill -9`, power loss — is turned into a failed, interrupted run the next time
any VPO opens the database, with what the run had actually applied (docs/statistics.md).

Whether a process is gone is told by its lease (`vpo.ownership`): an flock the kernel
drops when the process dies, which a PID namespace cannot fake. Markers written before
leases existed fall back to host + PID + process start time.

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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vpo.db.stats import InvalidRecordError, ProcessingStatsRecord, insert_run
from vpo.ownership import lease_alive, locks_dir, process_start_time, remove_stale_leases
from vpo.pathnames import path_from_text
from vpo.timefmt import parse_utc

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".runs"
_DELETE_CHUNK = 500  # stats ids per DELETE statement (well under SQLite's bound on variables)
# The lease token of a marker that `vpo serve` keeps for a remote worker's run
# (vpo.server.remote_runs): no lease to check here; the server judges it by heartbeats.
REMOTE_TOKEN_PREFIX = "remote:"  # noqa: S105 - a lease kind, not a secret
# Marking happens before work starts: never stall a run for long on a busy marker file
# (a missed marker costs only crash-safety for that one run).
MARKER_BUSY_TIMEOUT_SECONDS = 2.0
# The heartbeat has its own connection and gives up quickly: the next beat comes soon.
HEARTBEAT_BUSY_TIMEOUT_SECONDS = 0.2

# The marker file's table; `lease_token` arrived after the first release, so older files
# get it by `_upgrade`.
MARKERS_DDL = """
CREATE TABLE IF NOT EXISTS runs_in_progress (
    stats_id     TEXT PRIMARY KEY,
    file_id      INTEGER,
    file_path    TEXT,
    policy_name  TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    trace_id     TEXT,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    pid_started  TEXT,
    attributes   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(attributes)),
    lease_token  TEXT
);
"""

# Keys of `RunMarker.attributes`: the before values set when the run starts, and the
# after values of the phases completed so far.
BEFORE_KEYS = (
    "size_before",
    "hash_before",
    "audio_tracks_before",
    "subtitle_tracks_before",
    "attachments_before",
    "video_source_codec",
    "phases_total",
)
AFTER_KEYS = (
    "size_after",
    "hash_after",
    "audio_tracks_after",
    "subtitle_tracks_after",
    "attachments_after",
    "phases_completed",
    "total_changes",
)
_TRACK_KINDS = ("audio_tracks", "subtitle_tracks", "attachments")


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
    lease_token: str | None = None


_READ = (  # column names from the dataclass above, never from input
    f"SELECT {', '.join(f.name for f in fields(RunMarker))} "  # noqa: S608
    "FROM runs_in_progress ORDER BY started_at"
)


def marker_path(db_path: str | os.PathLike[str]) -> Path:
    db = Path(db_path)
    return db.with_name(db.name + MARKER_SUFFIX)


class MarkerStore:
    """The marker file of one database; thread-safe (one connection under a lock, and
    one more for the heartbeat so a beat never waits behind a run's marking)."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.path = marker_path(db_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._beat_lock = threading.Lock()
        self._beat_conn: sqlite3.Connection | None = None

    def write(self, marker: RunMarker) -> None:
        self._execute(
            "INSERT OR REPLACE INTO runs_in_progress (stats_id, file_id, file_path, policy_name, "
            "started_at, last_seen_at, trace_id, host, pid, pid_started, attributes, "
            "lease_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                marker.lease_token,
            ),
        )

    def touch(self, stats_id: str, last_seen_at: str, attributes: dict[str, Any]) -> None:
        self._execute(
            "UPDATE runs_in_progress SET last_seen_at = ?, attributes = ? WHERE stats_id = ?",
            (last_seen_at, json.dumps(attributes), stats_id),
        )

    def heartbeat(self, stats_ids: Iterable[str], last_seen_at: str) -> None:
        """Mark the runs `stats_ids` as alive at `last_seen_at` (one statement)."""
        ids = list(stats_ids)
        if not ids:
            return
        with self._beat_lock:
            if self._beat_conn is None:
                self._beat_conn = self._open(HEARTBEAT_BUSY_TIMEOUT_SECONDS)
            self._beat_conn.execute(
                "UPDATE runs_in_progress SET last_seen_at = ? "  # noqa: S608 (placeholders only)
                f"WHERE stats_id IN ({', '.join('?' for _ in ids)})",
                (last_seen_at, *ids),
            )

    def delete(self, stats_ids: Iterable[str]) -> None:
        """Forget these runs' markers: a few statements, not one (and one commit) per
        run — the exporter clears a marker for every run it records."""
        ids = list(stats_ids)
        with self._lock:
            for start in range(0, len(ids), _DELETE_CHUNK):
                chunk = ids[start : start + _DELETE_CHUNK]
                self._connection().execute(
                    "DELETE FROM runs_in_progress "  # noqa: S608 - placeholders only
                    f"WHERE stats_id IN ({', '.join('?' for _ in chunk)})",
                    chunk,
                )

    def read(self) -> list[RunMarker]:
        with self._lock:
            rows = self._connection().execute(_READ).fetchall()
        markers = []
        for row in rows:
            try:
                attributes = json.loads(row["attributes"])
            except ValueError:
                attributes = {}
            markers.append(RunMarker(**{**dict(row), "attributes": attributes}))
        return markers

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._beat_lock:
            if self._beat_conn is not None:
                self._beat_conn.close()
                self._beat_conn = None

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._connection().execute(sql, params)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open(MARKER_BUSY_TIMEOUT_SECONDS)
        return self._conn

    def _open(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,  # every use holds its lock
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(MARKERS_DDL)
            _upgrade(conn)
        except BaseException:
            conn.close()
            raise
        return conn


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add `lease_token` to a marker file made before leases (another VPO may race us)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs_in_progress)")}
    if "lease_token" in columns:
        return
    try:
        conn.execute("ALTER TABLE runs_in_progress ADD COLUMN lease_token TEXT")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise


def this_process() -> tuple[str, int, str | None]:
    """(host, pid, start time) that identify this process even after its pid is reused."""
    return socket.gethostname(), os.getpid(), process_start_time(os.getpid())


def process_alive(pid: int, started: str | None) -> bool:
    """A PID-based guess, for markers written before leases (same host only)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or process_start_time(pid) in (None, started)


def marker_alive(db_path: str | os.PathLike[str], marker: RunMarker) -> bool:
    """Is the process that wrote `marker` still running? Its lease says so when it has
    one; an old marker without a token is judged by host, PID and start time, and one
    from another host is left alone, as is a remote worker's (its server judges it)."""
    if marker.lease_token and marker.lease_token.startswith(REMOTE_TOKEN_PREFIX):
        return True
    if marker.lease_token:
        return lease_alive(db_path, marker.lease_token)
    if marker.host != socket.gethostname():
        return True
    return process_alive(marker.pid, marker.pid_started)


def reconcile_interrupted_runs(conn: sqlite3.Connection, db_path: str | os.PathLike[str]) -> int:
    """Record every run whose process is gone as failed; return how many. Also removes
    lease files left by dead processes."""
    db = Path(db_path).resolve()
    if locks_dir(db).is_dir():
        remove_stale_leases(db)
    if not marker_path(db_path).exists():
        return 0  # the usual case before any processing: two stat()s
    store = MarkerStore(db_path)
    try:
        dead = [m for m in store.read() if not marker_alive(db, m)]
        recorded = 0
        for marker in dead:
            if record_once(conn, marker, _recover_file(marker)):
                recorded += 1
            store.delete([marker.stats_id])
        return recorded
    finally:
        store.close()


def record_once(
    conn: sqlite3.Connection,
    marker: RunMarker,
    recovery: str | None = None,
    cause: str | None = None,
) -> bool:
    """`record_interrupted` in a transaction of its own, unless the run is already
    there (recorded, and only its marker's deletion was lost); whether it was recorded."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        known = conn.execute(
            "SELECT 1 FROM processing_stats WHERE id = ?", (marker.stats_id,)
        ).fetchone()
        done = not known and record_interrupted(conn, marker, recovery, cause)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done


def _recover_file(marker: RunMarker) -> str | None:
    """Undo an in-place edit the dead run left half-done, when the edit journal module
    exists (vpo.media.edit_journal); a sentence saying what was done, or None."""
    if not marker.file_path:
        return None
    try:
        from vpo.media.edit_journal import recover  # type: ignore[import-not-found]
    except ImportError:
        return None
    recorded = _str(marker.attributes.get("hash_after"))
    try:
        return recover(Path(path_from_text(marker.file_path)), recorded_hash=recorded)
    except Exception as exc:  # the run is still recorded; the next VPO tries again
        log.error("Cannot restore %s after an interrupted edit: %s", marker.file_path, exc)
        return f"the interrupted in-place edit could not be undone: {exc}"


def record_interrupted(
    conn: sqlite3.Connection,
    marker: RunMarker,
    recovery: str | None = None,
    cause: str | None = None,
) -> bool:
    """Store the run as far as it got: before values from its start, after values of
    the last phase it completed (before = after when none did: the original is intact).
    The file on disk is never read: a later run may have changed it. `cause` says why
    the run ended (default: its process ended)."""
    known = marker.attributes
    file_id = marker.file_id
    row = (
        conn.execute("SELECT size_bytes FROM files WHERE id = ?", (file_id,)).fetchone()
        if file_id is not None
        else None
    )
    if row is None:
        log.warning("Interrupted run %s names no known file; dropping its marker.", marker.stats_id)
        return False
    notes = []
    size_before = _int(known.get("size_before"))
    phases_completed = _int(known.get("phases_completed")) or 0
    if size_before is None:
        library_size = _int(row[0])
        if phases_completed or library_size is None:
            log.error(
                "Interrupted run %s has no size before and cannot be recorded truly; "
                "dropping its marker.",
                marker.stats_id,
            )
            return False
        # Nothing was applied before the size was measured: the file is unchanged, and the
        # library's size is the best known before (and after) size.
        size_before = library_size
        notes.append("its size before was not measured: the library's last known size is used")
    size_after = _int(known.get("size_after"))
    if size_after is None:
        size_after = size_before
    counts: dict[str, int] = {}
    for kind in _TRACK_KINDS:
        before = _int(known.get(f"{kind}_before")) or 0
        after = _int(known.get(f"{kind}_after"))
        counts[f"{kind}_before"] = before
        counts[f"{kind}_after"] = before if after is None else after
        counts[f"{kind}_removed"] = max(before - counts[f"{kind}_after"], 0)
    phases_total = max(_int(known.get("phases_total")) or 0, phases_completed)
    hash_before = _str(known.get("hash_before"))
    hash_after = _str(known.get("hash_after")) or hash_before
    started, last_seen = parse_utc(marker.started_at), parse_utc(marker.last_seen_at)
    if cause is None:
        cause = f"the VPO process (pid {marker.pid}) ended before the run finished"
    message = (
        f"interrupted: {cause}, after {phases_completed} of {phases_total} phase(s); "
        f"last seen {marker.last_seen_at}"
    )
    if recovery:
        notes.append(recovery)
    if notes:
        message += "; " + "; ".join(notes)
    run = ProcessingStatsRecord(
        id=marker.stats_id,
        file_id=file_id,  # type: ignore[arg-type]
        processed_at=marker.started_at,
        policy_name=marker.policy_name,
        size_before=size_before,
        size_after=size_after,
        duration_seconds=max((last_seen - started).total_seconds(), 0.0),
        success=False,
        error_message=message,
        phases_total=phases_total,
        phases_completed=phases_completed,
        total_changes=_int(known.get("total_changes")) or 0,
        hash_before=hash_before,
        hash_after=hash_after,
        video_source_codec=_str(known.get("video_source_codec")),
        trace_id=marker.trace_id,
        worker=marker.host or None,  # the host that ran it, as its marker says
        **counts,
    )
    try:
        insert_run(conn, run)
    except (InvalidRecordError, sqlite3.IntegrityError, OverflowError) as exc:
        log.error("Cannot record interrupted run %s: %s", marker.stats_id, exc)
        return False
    return True


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
