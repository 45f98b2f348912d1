"""Finished spans of one run → the statistics record of that run (docs/statistics.md).

Durations come from span times, `processed_at` from the root's start, `trace_id` from
the span context, success and the error from the span status. A child that would make
an invalid row is refused alone (and reported); an invalid root refuses the run.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from vpo.db.stats import (
    ActionResultRecord,
    InvalidRecordError,
    PerformanceMetricRecord,
    ProcessingStatsRecord,
    trusted_record,
)
from vpo.telemetry import attributes as attr
from vpo.timefmt import format_ns


@dataclass
class BuiltRun:
    """A run ready to store, and the children that were refused on the way."""

    record: ProcessingStatsRecord
    refused: list[str] = field(default_factory=list)


def build_run(
    root: ReadableSpan,
    phases: Sequence[ReadableSpan],
    actions: Sequence[ReadableSpan],
    *,
    default_worker: str | None = None,
) -> BuiltRun:
    """The record of the run whose root is `root`; raises `InvalidRecordError` if the root
    itself cannot make a valid row. The worker is the root's `vpo.worker`, else its
    resource's `host.name`, else `default_worker` (the exporter's host)."""
    a = root.attributes or {}
    refused: list[str] = []
    phase_rows = _valid([_phase_row(p) for p in sorted(phases, key=_start)], refused, "phase")
    action_rows = _valid([_action_row(s) for s in sorted(actions, key=_start)], refused, "action")
    stats_id = a.get(attr.STATS_ID)
    file_id = a.get(attr.FILE_ID)
    if not isinstance(stats_id, str) or not isinstance(file_id, int):
        raise InvalidRecordError(
            f"span {root.name} lacks {attr.STATS_ID} or an integer {attr.FILE_ID}"
        )
    failed = root.status.status_code is StatusCode.ERROR
    size_before = _int(a, attr.SIZE_BEFORE, 0)
    audio_before = _int(a, attr.AUDIO_BEFORE, 0)
    audio_after = _int(a, attr.AUDIO_AFTER, audio_before)
    subtitle_before = _int(a, attr.SUBTITLE_BEFORE, 0)
    subtitle_after = _int(a, attr.SUBTITLE_AFTER, subtitle_before)
    attachment_before = _int(a, attr.ATTACHMENT_BEFORE, 0)
    attachment_after = _int(a, attr.ATTACHMENT_AFTER, attachment_before)
    # Every field, in their order (trusted_record: without the dataclass's __init__).
    record = trusted_record(
        ProcessingStatsRecord,
        {
            "id": stats_id,
            "file_id": file_id,
            "processed_at": format_ns(root.start_time or 0),
            "policy_name": str(a.get(attr.POLICY_NAME, "")),
            "size_before": size_before,
            "size_after": _int(a, attr.SIZE_AFTER, size_before),
            "duration_seconds": _seconds(root),
            "success": not failed,
            "audio_tracks_before": audio_before,
            "subtitle_tracks_before": subtitle_before,
            "attachments_before": attachment_before,
            "audio_tracks_after": audio_after,
            "subtitle_tracks_after": subtitle_after,
            "attachments_after": attachment_after,
            "audio_tracks_removed": _int(a, attr.AUDIO_REMOVED, max(audio_before - audio_after, 0)),
            "subtitle_tracks_removed": _int(
                a, attr.SUBTITLE_REMOVED, max(subtitle_before - subtitle_after, 0)
            ),
            "attachments_removed": _int(
                a, attr.ATTACHMENT_REMOVED, max(attachment_before - attachment_after, 0)
            ),
            "phases_completed": _int(
                a, attr.PHASES_COMPLETED, sum(1 for p in phases if not _failed(p))
            ),
            "phases_total": _int(a, attr.PHASES_TOTAL, len(phase_rows)),
            "total_changes": _int(a, attr.CHANGES_TOTAL, sum(1 for r in action_rows if r.success)),
            "video_source_codec": _str(a, attr.VIDEO_SOURCE_CODEC),
            "video_target_codec": _str(a, attr.VIDEO_TARGET_CODEC),
            "video_transcode_skipped": bool(a.get(attr.VIDEO_TRANSCODE_SKIPPED, False)),
            "video_skip_reason": _str(a, attr.VIDEO_SKIP_REASON),
            "audio_tracks_transcoded": _int(a, attr.AUDIO_TRANSCODED, 0),
            "audio_tracks_preserved": _int(a, attr.AUDIO_PRESERVED, 0),
            "hash_before": _str(a, attr.HASH_BEFORE),
            "hash_after": _str(a, attr.HASH_AFTER),
            "error_message": _error_message(root) if failed else None,
            "trace_id": format(root.context.trace_id, "032x") if root.context else None,
            "worker": _worker(root, default_worker),
            "actions": tuple(action_rows),
            "phases": tuple(phase_rows),
        },
    )
    problems = record.row_problems()  # its phases and actions were checked by _valid
    if problems:
        raise InvalidRecordError(f"run {stats_id}: " + "; ".join(problems))
    return BuiltRun(record, refused)


MAX_WORKER_CHARS = 255  # a host name is at most 253; spans from afar are not trusted


def _worker(root: ReadableSpan, default: str | None) -> str | None:
    value = (root.attributes or {}).get(attr.WORKER)
    if isinstance(value, str) and value:
        return value[:MAX_WORKER_CHARS]
    resource = getattr(root, "resource", None)
    host = resource.attributes.get(attr.HOST_NAME) if resource is not None else None
    if isinstance(host, str) and host:
        return host[:MAX_WORKER_CHARS]
    return default


def _phase_row(span: ReadableSpan) -> PerformanceMetricRecord:
    a = span.attributes or {}
    fps = a.get(attr.ENCODING_FPS)
    return trusted_record(
        PerformanceMetricRecord,
        {
            "phase_name": str(a.get(attr.PHASE_NAME, "")),
            "wall_time_seconds": _seconds(span),
            "bytes_read": _int(a, attr.BYTES_READ, None),
            "bytes_written": _int(a, attr.BYTES_WRITTEN, None),
            "encoding_fps": float(fps) if isinstance(fps, int | float) else None,
            "encoding_bitrate": _int(a, attr.ENCODING_BITRATE, None),
        },
    )


def _action_row(span: ReadableSpan) -> ActionResultRecord:
    a = span.attributes or {}
    failed = _failed(span)
    return trusted_record(
        ActionResultRecord,
        {
            "action_type": str(a.get(attr.ACTION_TYPE, "")),
            "success": not failed,
            "track_type": _str(a, attr.TRACK_TYPE),
            "track_index": _int(a, attr.TRACK_INDEX, None),
            "before_state": _str(a, attr.ACTION_BEFORE),
            "after_state": _str(a, attr.ACTION_AFTER),
            "duration_ms": round(((span.end_time or 0) - (span.start_time or 0)) / 1e6),
            "rule_reference": _str(a, attr.ACTION_RULE),
            "message": _str(a, attr.ACTION_MESSAGE)
            or (span.status.description if failed else None),
            "tool": _str(a, attr.ACTION_TOOL) or None,
            "tool_call": _int(a, attr.ACTION_TOOL_CALL, None),
        },
    )


def _valid(rows: list[Any], refused: list[str], what: str) -> list[Any]:
    kept = []
    for row in rows:
        problems = row.problems()
        if problems:
            refused.append(f"{what} row refused: " + "; ".join(problems))
        else:
            kept.append(row)
    return kept


def _error_message(span: ReadableSpan) -> str:
    if span.status.description:
        return span.status.description
    for event in span.events:
        if event.name == "exception" and event.attributes:
            return str(event.attributes.get("exception.message", "")) or "failed"
    return "failed (no reason recorded)"


def _failed(span: ReadableSpan) -> bool:
    return span.status.status_code is StatusCode.ERROR


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def _seconds(span: ReadableSpan) -> float:
    return max(((span.end_time or 0) - (span.start_time or 0)) / 1e9, 0.0)


def _int(attributes: Mapping[str, Any], key: str, default: Any) -> Any:
    value = attributes.get(key)
    if type(value) is int:  # the usual case first (a bool is not exactly an int)
        return value
    if isinstance(value, bool) or value is None:
        return default
    return int(value) if isinstance(value, int | float) else default


def _str(attributes: Mapping[str, Any], key: str) -> str | None:
    value = attributes.get(key)
    return None if value is None else str(value)


def dumps_state(state: Mapping[str, Any] | None) -> str | None:
    """A before/after state as the JSON string a `vpo.action` span carries."""
    return None if state is None else json.dumps(dict(state), sort_keys=True)
