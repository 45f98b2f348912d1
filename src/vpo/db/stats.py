"""Statistics rows (processing_stats, action_results, performance_metrics): their record
types, the validation of docs/statistics.md, and writing one run as a unit.

Only the telemetry exporter (and the reconciliation of interrupted runs) writes these
rows; the workflow describes runs through spans and never calls this module.
"""

import json
import re
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from itertools import groupby
from operator import attrgetter
from typing import TypeVar

from vpo.db.rollups import adding_runs

_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")  # vpo.timefmt, exactly


_Record = TypeVar(
    "_Record", "ActionResultRecord", "PerformanceMetricRecord", "ProcessingStatsRecord"
)


class InvalidRecordError(ValueError):
    """A row that breaks a rule of docs/statistics.md: a bug in whoever described the run."""


@dataclass(frozen=True)
class ActionResultRecord:
    """One row of `action_results` (its `stats_id` comes from the run)."""

    action_type: str
    success: bool
    track_type: str | None = None
    track_index: int | None = None
    before_state: str | None = None
    after_state: str | None = None
    duration_ms: int | None = None
    rule_reference: str | None = None
    message: str | None = None
    # The tool call that did the action (docs/statistics.md): actions that share one call
    # share its `duration_ms` too, so reports count that time once per call.
    tool: str | None = None
    tool_call: int | None = None

    def problems(self) -> list[str]:
        found = []
        if not self.action_type:
            found.append("action_type is empty")
        for name in ("before_state", "after_state"):
            value = getattr(self, name)
            if value is not None and not _is_json_object(value):
                found.append(f"{name} is not a JSON object: {value[:80]!r}")
        if self.duration_ms is not None and self.duration_ms < 0:
            found.append(f"duration_ms is negative ({self.duration_ms})")
        if self.track_index is not None and self.track_index < 0:
            found.append(f"track_index is negative ({self.track_index})")
        if self.tool_call is not None and self.tool_call < 1:
            found.append(f"tool_call is not a call number from 1 ({self.tool_call})")
        return found


@dataclass(frozen=True)
class PerformanceMetricRecord:
    """One row of `performance_metrics`: one phase of a run."""

    phase_name: str
    wall_time_seconds: float
    bytes_read: int | None = None
    bytes_written: int | None = None
    encoding_fps: float | None = None
    encoding_bitrate: int | None = None

    def problems(self) -> list[str]:
        found = []
        if not self.phase_name:
            found.append("phase_name is empty")
        for name in (
            "wall_time_seconds",
            "bytes_read",
            "bytes_written",
            "encoding_fps",
            "encoding_bitrate",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                found.append(f"{name} is negative ({value})")
        return found


# The fields of a run that are never negative, and the (kind, before, after, removed)
# fields of what a run removes: names made once (`row_problems` checks every run).
_COUNTS = (
    "size_before",
    "size_after",
    "audio_tracks_before",
    "subtitle_tracks_before",
    "attachments_before",
    "audio_tracks_after",
    "subtitle_tracks_after",
    "attachments_after",
    "audio_tracks_removed",
    "subtitle_tracks_removed",
    "attachments_removed",
    "phases_completed",
    "phases_total",
    "total_changes",
    "audio_tracks_transcoded",
    "audio_tracks_preserved",
    "duration_seconds",
)
_GET_COUNTS = attrgetter(*_COUNTS)
_KINDS = tuple(
    (kind, f"{kind}_before", f"{kind}_after", f"{kind}_removed")
    for kind in ("audio_tracks", "subtitle_tracks", "attachments")
)


@dataclass(frozen=True)
class ProcessingStatsRecord:
    """One row of `processing_stats`: one file run, with its phases and actions."""

    id: str
    file_id: int
    processed_at: str
    policy_name: str
    size_before: int
    size_after: int
    duration_seconds: float
    success: bool
    audio_tracks_before: int = 0
    subtitle_tracks_before: int = 0
    attachments_before: int = 0
    audio_tracks_after: int = 0
    subtitle_tracks_after: int = 0
    attachments_after: int = 0
    audio_tracks_removed: int = 0
    subtitle_tracks_removed: int = 0
    attachments_removed: int = 0
    phases_completed: int = 0
    phases_total: int = 0
    total_changes: int = 0
    video_source_codec: str | None = None
    video_target_codec: str | None = None
    video_transcode_skipped: bool = False
    video_skip_reason: str | None = None
    audio_tracks_transcoded: int = 0
    audio_tracks_preserved: int = 0
    hash_before: str | None = None
    hash_after: str | None = None
    error_message: str | None = None
    trace_id: str | None = None
    # The host that ran the run (docs/statistics.md, "Workers"); None: not known.
    worker: str | None = None
    actions: tuple[ActionResultRecord, ...] = field(default=(), compare=False)
    phases: tuple[PerformanceMetricRecord, ...] = field(default=(), compare=False)

    @property
    def size_change(self) -> int:
        return self.size_before - self.size_after

    def problems(self) -> list[str]:
        """Every rule of docs/statistics.md this row breaks (empty when it is valid)."""
        found = self.row_problems()
        for action in self.actions:
            found += [f"action {action.action_type}: {p}" for p in action.problems()]
        for phase in self.phases:
            found += [f"phase {phase.phase_name}: {p}" for p in phase.problems()]
        return found

    def row_problems(self) -> list[str]:
        """The rules the `processing_stats` row itself breaks, without its actions and
        phases (for a builder that has already checked those one by one)."""
        found = []
        try:
            if uuid.UUID(self.id).version != 4:
                found.append(f"id {self.id!r} is not a UUIDv4")
        except (ValueError, AttributeError, TypeError):
            found.append(f"id {self.id!r} is not a UUID")
        if not _is_iso_utc(self.processed_at):
            found.append(
                f"processed_at {self.processed_at!r} is not in the stored ISO-8601 UTC form "
                "(YYYY-MM-DDTHH:MM:SS.ffffffZ)"
            )
        if not self.policy_name:
            found.append("policy_name is empty")
        values = _GET_COUNTS(self)
        if None in values or min(values) < 0:  # the usual case, all fine, in two C calls
            for name, value in zip(_COUNTS, values, strict=True):
                if value is None or value < 0:
                    found.append(f"{name} is negative ({value})")
        for kind, before_name, after_name, removed_name in _KINDS:
            before = getattr(self, before_name)
            after = getattr(self, after_name)
            removed = getattr(self, removed_name)
            expected = max(before - after, 0)
            if removed >= 0 and removed != expected:
                found.append(
                    f"{kind}_removed is {removed} but before - after is {before} - {after}"
                )
        if self.phases_completed > self.phases_total:
            found.append(
                f"phases_completed ({self.phases_completed}) exceeds phases_total "
                f"({self.phases_total})"
            )
        if not self.success and not self.error_message:
            found.append("a failed run has no error_message")
        return found


def trusted_record(cls: type[_Record], values: dict[str, object]) -> _Record:
    """A record of `cls` from `values`, which names **every** field of it (defaults
    included) with the value its constructor would get: the same object, without the
    frozen dataclass's `__init__` (one `object.__setattr__` per field, about a fifth of
    the statistics exporter's cost of building a run). Checks are up to the caller, as
    with the constructor: `problems()`. `values` is taken over, not copied."""
    record = object.__new__(cls)
    record.__dict__.update(values)
    return record


_STATS_COLUMNS = [
    f.name for f in fields(ProcessingStatsRecord) if f.name not in {"actions", "phases"}
]
# Without a worker the column is left out (it is NULL either way), so a run without one
# can still be written to a database made before version 7 (the tests' old databases).
_STATS_COLUMNS_NO_WORKER = [name for name in _STATS_COLUMNS if name != "worker"]


def _insert_stats(columns: list[str]) -> str:
    return (  # column names from the dataclass above, never from input
        f"INSERT INTO processing_stats ({', '.join(columns)}, size_change) "  # noqa: S608
        f"VALUES ({', '.join('?' for _ in columns)}, ?)"
    )


_INSERT_STATS = _insert_stats(_STATS_COLUMNS)
_INSERT_STATS_NO_WORKER = _insert_stats(_STATS_COLUMNS_NO_WORKER)
_GET_STATS = attrgetter(*_STATS_COLUMNS)
_GET_STATS_NO_WORKER = attrgetter(*_STATS_COLUMNS_NO_WORKER)
_INSERT_ACTION = (
    "INSERT INTO action_results (stats_id, action_type, track_type, track_index, before_state, "
    "after_state, success, duration_ms, rule_reference, message, tool, tool_call) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PHASE = (
    "INSERT INTO performance_metrics (stats_id, phase_name, wall_time_seconds, bytes_read, "
    "bytes_written, encoding_fps, encoding_bitrate) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def insert_run(
    conn: sqlite3.Connection, run: ProcessingStatsRecord, *, checked: bool = False
) -> None:
    """Insert the run with its actions and phases; the caller holds the transaction.

    Raises `InvalidRecordError` (writing nothing) when the run breaks a rule. `checked`:
    the caller has already found `run.problems()` empty (records are frozen, so that
    still holds) — the statistics exporter's runs come from `build_run`, which checks.
    """
    if not checked:
        problems = run.problems()
        if problems:
            raise InvalidRecordError("; ".join(problems))
    sql = _INSERT_STATS if run.worker is not None else _INSERT_STATS_NO_WORKER
    with adding_runs(conn):
        conn.execute(sql, _stats_values(run))
    if run.actions:  # many runs of a tidy library have none: no statement for nothing
        conn.executemany(_INSERT_ACTION, _action_values(run))
    if run.phases:
        conn.executemany(_INSERT_PHASE, _phase_values(run))


def insert_checked_runs(conn: sqlite3.Connection, runs: Sequence[ProcessingStatsRecord]) -> None:
    """Insert runs whose `problems()` are known to be empty, with a few statements for
    all of them rather than three per run (the exporter's fast path). The rows, their
    ids and the rollups come out as `insert_run` one run after the other would make
    them: runs are inserted in order, then their actions in order, then their phases.
    On any error some runs may be written: the caller rolls the transaction back."""
    with adding_runs(conn):
        for has_worker, group in groupby(runs, key=lambda run: run.worker is not None):
            sql = _INSERT_STATS if has_worker else _INSERT_STATS_NO_WORKER
            conn.executemany(sql, [_stats_values(run) for run in group])
    conn.executemany(_INSERT_ACTION, [row for run in runs for row in _action_values(run)])
    conn.executemany(_INSERT_PHASE, [row for run in runs for row in _phase_values(run)])


def _stats_values(run: ProcessingStatsRecord) -> list[object]:
    getter = _GET_STATS if run.worker is not None else _GET_STATS_NO_WORKER
    return [*_sql_values(getter(run)), run.size_change]


def _action_values(run: ProcessingStatsRecord) -> list[tuple[object, ...]]:
    return [(run.id, a.action_type, *_action_tail(a)) for a in run.actions]


def _phase_values(run: ProcessingStatsRecord) -> list[tuple[object, ...]]:
    # The fields in order, as `astuple` gave them (all plain values), without its deep copy.
    return [
        (
            run.id,
            p.phase_name,
            p.wall_time_seconds,
            p.bytes_read,
            p.bytes_written,
            p.encoding_fps,
            p.encoding_bitrate,
        )
        for p in run.phases
    ]


def _action_tail(action: ActionResultRecord) -> tuple[object, ...]:
    return (
        action.track_type,
        action.track_index,
        action.before_state,
        action.after_state,
        int(action.success),
        action.duration_ms,
        action.rule_reference,
        action.message,
        action.tool,
        action.tool_call,
    )


def _sql_values(values: list[object] | tuple[object, ...]) -> list[object]:
    return [int(v) if isinstance(v, bool) else v for v in values]


_CACHED_STATE_CHARS = 512  # short states repeat from run to run: remember their verdict


def _is_json_object(text: str) -> bool:
    if isinstance(text, str) and len(text) <= _CACHED_STATE_CHARS:
        return _is_short_json_object(text)
    return _parses_to_object(text)


@lru_cache(maxsize=4096)
def _is_short_json_object(text: str) -> bool:
    return _parses_to_object(text)


def _parses_to_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


def _is_iso_utc(text: str) -> bool:
    if not isinstance(text, str) or not _ISO_UTC.match(text):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
