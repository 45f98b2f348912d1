"""Single runs and lists of runs: a file's history, one run in full, the latest runs.

Each is an index seek (file and time, primary key, time), so it costs the same at ten
runs and at ten million. Field names follow DATA-MODEL.md and API.md.
"""

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

_RUN_ITEM = (
    "SELECT s.id AS stats_id, s.processed_at, s.file_id, f.path AS file_path, s.policy_name, "
    "s.size_before, s.size_after, s.size_change AS size_saved, s.success, s.error_message, "
    "s.duration_seconds FROM processing_stats s JOIN files f ON f.id = s.file_id "
)


@dataclass(frozen=True)
class RunItem:
    """One run in a list (a file's history, the recent runs)."""

    stats_id: str
    processed_at: str
    file_id: int
    file_path: str
    policy_name: str
    size_before: int
    size_after: int
    size_saved: int
    success: bool
    error_message: str | None
    duration_seconds: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RunItem":
        values = dict(row)
        values["success"] = bool(values["success"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_history(conn: sqlite3.Connection, file_id: int, limit: int | None = None) -> list[RunItem]:
    """The runs of one file, newest first."""
    rows = conn.execute(
        _RUN_ITEM + "WHERE s.file_id = ? ORDER BY s.processed_at DESC LIMIT ?",
        (file_id, -1 if limit is None else limit),
    )
    return [RunItem.from_row(row) for row in rows]


def recent_runs(
    conn: sqlite3.Connection, limit: int = 10, success: bool | None = None
) -> list[RunItem]:
    """The latest runs across the library, newest first; only successes or only
    failures when `success` says so."""
    if success is None:
        rows = conn.execute(_RUN_ITEM + "ORDER BY s.processed_at DESC LIMIT ?", (limit,))
    else:
        rows = conn.execute(
            _RUN_ITEM + "WHERE s.success = ? ORDER BY s.processed_at DESC LIMIT ?",
            (int(success), limit),
        )
    return [RunItem.from_row(row) for row in rows]


def run_detail(conn: sqlite3.Connection, stats_id: str) -> dict[str, Any] | None:
    """One run with every column, its file path, `action_results` and
    `performance_metrics`; booleans as booleans and states as objects. None if unknown."""
    row = conn.execute(
        "SELECT s.*, f.path AS file_path FROM processing_stats s "
        "JOIN files f ON f.id = s.file_id WHERE s.id = ?",
        (stats_id,),
    ).fetchone()
    if row is None:
        return None
    run = dict(row)
    run["stats_id"] = run["id"]
    for name in ("success", "video_transcode_skipped"):
        run[name] = bool(run[name])
    actions = []
    for action in conn.execute(
        "SELECT id, action_type, track_type, track_index, before_state, after_state, success, "
        "duration_ms, rule_reference, message FROM action_results WHERE stats_id = ? "
        "ORDER BY id",
        (stats_id,),
    ):
        item = dict(action)
        item["success"] = bool(item["success"])
        for name in ("before_state", "after_state"):
            item[name] = None if item[name] is None else json.loads(item[name])
        actions.append(item)
    phases = [
        dict(phase)
        for phase in conn.execute(
            "SELECT id, phase_name, wall_time_seconds, bytes_read, bytes_written, encoding_fps, "
            "encoding_bitrate FROM performance_metrics WHERE stats_id = ? ORDER BY id",
            (stats_id,),
        )
    ]
    run["action_results"] = actions
    run["performance_metrics"] = phases
    return run


def find_file(conn: sqlite3.Connection, id_or_path: str) -> tuple[int, str] | None:
    """The id and path of a file given as a `files.id` (digits) or an absolute path."""
    if id_or_path.isdigit():
        row = conn.execute("SELECT id, path FROM files WHERE id = ?", (int(id_or_path),))
    else:
        row = conn.execute("SELECT id, path FROM files WHERE path = ?", (id_or_path,))
    found = row.fetchone()
    return None if found is None else (int(found[0]), str(found[1]))
