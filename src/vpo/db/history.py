"""Single runs and lists of runs: a file's history, one run in full, the latest runs.

Each is an index seek (file and time, primary key, time, path range), so it costs the
same at ten runs and at ten million. Field names are those of docs/statistics.md; the
dictionaries round floats as every JSON answer does (`vpo.db.aggregates.tidy`).
"""

import json
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from vpo.db.aggregates import tidy, time_filter
from vpo.errors import InvalidInputError, NoStatisticsError

RUN_ID_PREFIX_MIN = 4  # hex digits: shorter prefixes match too many runs to be useful
CANDIDATES_SHOWN = 10
SQLITE_MAX_INTEGER = 2**63 - 1
_HEX = frozenset("0123456789abcdef")
_DASHES_AFTER = (8, 12, 16, 20)  # a UUID's hex digits before each dash

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
        return tidy(asdict(self))


@dataclass(frozen=True)
class FileHistory:
    """One file's runs: `vpo stats file ID --format json` and GET /api/stats/files/{id}."""

    file_id: int
    file_path: str
    history: list[RunItem]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_path": self.file_path,
            "history": [run.to_dict() for run in self.history],
        }


def file_runs(
    conn: sqlite3.Connection, id_or_path: str, limit: int | None = None
) -> FileHistory | None:
    """The runs of the file given by id (digits) or absolute path, newest first; None when
    the library does not know the file."""
    found = find_file(conn, id_or_path)
    if found is None:
        return None
    file_id, path = found
    return FileHistory(file_id, path, file_history(conn, file_id, limit))


def file_history(conn: sqlite3.Connection, file_id: int, limit: int | None = None) -> list[RunItem]:
    """The runs of one file, newest first."""
    rows = conn.execute(
        _RUN_ITEM + "WHERE s.file_id = ? ORDER BY s.processed_at DESC LIMIT ?",
        (file_id, -1 if limit is None else limit),
    )
    return [RunItem.from_row(row) for row in rows]


def recent_runs(
    conn: sqlite3.Connection,
    limit: int = 10,
    success: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[RunItem]:
    """The latest runs across the library, newest first; only successes or only
    failures when `success` says so; only those started in [since, until) when given."""
    where, params = time_filter(since, until)
    if success is not None:
        where += " AND success = ?"
        params.append(int(success))
    rows = conn.execute(
        _RUN_ITEM + f"WHERE {where} ORDER BY s.processed_at DESC LIMIT ?", (*params, limit)
    )
    return [RunItem.from_row(row) for row in rows]


def runs_answer(runs: list[RunItem]) -> dict[str, Any]:
    """`{"items": [...]}`: the recent runs as `vpo stats recent` and the API give them."""
    return {"items": [run.to_dict() for run in runs]}


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
    # Every column, `tool` and `tool_call` included: the actions that share a call share
    # its duration, which a report shows once per call (docs/statistics.md).
    for action in conn.execute(
        "SELECT * FROM action_results WHERE stats_id = ? ORDER BY id", (stats_id,)
    ):
        item = dict(action)
        del item["stats_id"]
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
    return tidy(run)


class AmbiguousRunIdError(InvalidInputError):
    """A run id prefix that several runs share (exit 2); `candidates` are some of them,
    newest first, for the user to pick from."""

    def __init__(self, reference: str, candidates: list[RunItem]) -> None:
        shown = candidates[:CANDIDATES_SHOWN]
        more = "" if len(candidates) <= len(shown) else " (and more)"
        lines = [
            f"{run.stats_id}  {run.processed_at[:19].replace('T', ' ')}  {run.file_path}"
            for run in shown
        ]
        super().__init__(
            f"The run id {reference!r} is ambiguous; it starts the ids of these runs{more}:\n  "
            + "\n  ".join(lines)
        )
        self.reference = reference
        self.candidates = shown


def run_id_prefix(reference: str) -> str:
    """The start of a stored run id (lowercase, dashed like a UUID) from what a person
    typed: a full id, or its first `RUN_ID_PREFIX_MIN`+ hex digits, dashes optional.
    Raises InvalidInputError (exit 2) for anything else."""
    digits = reference.strip().lower().replace("-", "")
    if not RUN_ID_PREFIX_MIN <= len(digits) <= 32 or not set(digits) <= _HEX:
        raise InvalidInputError(
            f"{reference!r} is not a run id: give a full id or at least its first "
            f"{RUN_ID_PREFIX_MIN} hex digits (the stats id of `vpo stats recent`)."
        )
    dashed = ""
    for position, digit in enumerate(digits):
        dashed += ("-" if position in _DASHES_AFTER else "") + digit
    return dashed


def runs_with_id_prefix(
    conn: sqlite3.Connection, reference: str, limit: int = CANDIDATES_SHOWN + 1
) -> list[RunItem]:
    """The runs whose id starts with `reference` (see `run_id_prefix`), newest first;
    a range seek on the primary key."""
    prefix = run_id_prefix(reference)
    rows = conn.execute(
        # ids hold only 0-9, a-f and "-", all below "g": [prefix, prefix + "g") is the prefix
        _RUN_ITEM + "WHERE s.id >= ? AND s.id < ? ORDER BY s.processed_at DESC LIMIT ?",
        (prefix, prefix + "g", limit),
    )
    return [RunItem.from_row(row) for row in rows]


def resolve_run_id(conn: sqlite3.Connection, reference: str) -> str:
    """The one run id that `reference` (a full id or a unique prefix) names.

    Raises InvalidInputError when it is not an id (exit 2), AmbiguousRunIdError when
    several runs match (exit 2) and NoStatisticsError when none does (exit 65)."""
    matches = runs_with_id_prefix(conn, reference)
    if not matches:
        raise NoStatisticsError(
            f"No run with id {reference} is recorded (see `vpo stats recent` for ids)."
        )
    if len(matches) > 1:
        raise AmbiguousRunIdError(reference, matches)
    return matches[0].stats_id


def _under(folder: str) -> tuple[str, str]:
    """The `[low, high)` range of the paths inside `folder` ("0" follows "/")."""
    base = folder.rstrip("/")
    return base + "/", base + "0"


def count_files_under(conn: sqlite3.Connection, folder: str) -> int:
    """How many library files lie anywhere under `folder` (an absolute path)."""
    row = conn.execute("SELECT count(*) FROM files WHERE path >= ? AND path < ?", _under(folder))
    return int(row.fetchone()[0])


def folder_history(
    conn: sqlite3.Connection, folder: str, limit: int | None = None
) -> list[RunItem]:
    """The runs of every library file under `folder`, newest first."""
    rows = conn.execute(
        _RUN_ITEM + "WHERE f.path >= ? AND f.path < ? ORDER BY s.processed_at DESC LIMIT ?",
        (*_under(folder), -1 if limit is None else limit),
    )
    return [RunItem.from_row(row) for row in rows]


def find_file(conn: sqlite3.Connection, id_or_path: str) -> tuple[int, str] | None:
    """The id and path of a file given as a `files.id` (digits) or an absolute path."""
    if id_or_path.isdigit():
        file_id = int(id_or_path)
        if file_id > SQLITE_MAX_INTEGER:  # no such row, and SQLite cannot take the number
            return None
        row = conn.execute("SELECT id, path FROM files WHERE id = ?", (file_id,))
    else:
        row = conn.execute("SELECT id, path FROM files WHERE path = ?", (id_or_path,))
    found = row.fetchone()
    return None if found is None else (int(found[0]), str(found[1]))
