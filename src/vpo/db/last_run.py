"""A file's last run, as the server knows it: what the file should be now.

The last run of a file is its newest run in progress (a marker: a remote worker's
heartbeats, or a local run) if there is one, else its newest recorded row. What it left
is its after values so far — its before values while no phase has changed the file.
Workers ask for it (GET /v1/files/{file_id}/last-run, vpo.server.last_run) before they
touch a file a killed worker may have left edited.
"""

import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from vpo.db.interrupted import RunMarker

IN_PROGRESS = "in progress"
RECORDED = "recorded"


@dataclass(frozen=True)
class LastRun:
    """A file's last run; `size`/`partial_hash` are the file as that run left it (None
    when it did not say)."""

    stats_id: str
    state: str  # IN_PROGRESS or RECORDED
    success: bool | None  # None while in progress
    worker: str | None
    size: int | None
    partial_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LastRun":
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


def find(conn: sqlite3.Connection, markers: Iterable[RunMarker], file_id: int) -> LastRun | None:
    """The last run of `file_id` (the module's docstring says which); None without runs."""
    live = [m for m in markers if m.file_id == file_id]
    if live:
        marker = max(live, key=lambda m: m.started_at)
        values = marker.attributes
        changed = "hash_after" in values
        return LastRun(
            stats_id=marker.stats_id,
            state=IN_PROGRESS,
            success=None,
            worker=marker.host,
            size=_int(values.get("size_after" if changed else "size_before")),
            partial_hash=_str(values.get("hash_after" if changed else "hash_before")),
        )
    row = conn.execute(
        "SELECT id, success, worker, size_after, hash_after FROM processing_stats "
        "WHERE file_id = ? ORDER BY processed_at DESC LIMIT 1",
        (file_id,),
    ).fetchone()
    if row is None:
        return None
    return LastRun(
        stats_id=row[0],
        state=RECORDED,
        success=bool(row[1]),
        worker=row[2],
        size=row[3],
        partial_hash=row[4],
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
