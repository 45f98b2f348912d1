"""Recorded runs made to order: rows written through the same `insert_run` (and so the
same validation and rollup triggers) as the exporter's."""

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vpo.db.connection import transaction
from vpo.db.stats import (
    ActionResultRecord,
    PerformanceMetricRecord,
    ProcessingStatsRecord,
    insert_run,
)
from vpo.timefmt import format_utc

EPOCH = datetime(2024, 11, 24, tzinfo=UTC)  # two years before the project's "today"


@dataclass(frozen=True)
class RunSpec:
    """The few things that vary between runs in the tests."""

    at: datetime
    policy: str = "cleanup"
    size_before: int = 1_000_000
    size_after: int = 800_000
    success: bool = True
    file_id: int = 1
    audio_removed: int = 0
    subtitles_removed: int = 0
    attachments_removed: int = 0
    transcoded: bool = False
    skipped: bool = False
    audio_transcoded: int = 0
    duration: float = 1.5
    actions: int = 0
    phases: int = 0
    worker: str | None = None  # the host that ran it (None: not known)


def record(spec: RunSpec) -> ProcessingStatsRecord:
    return ProcessingStatsRecord(
        id=str(uuid.uuid4()),
        file_id=spec.file_id,
        processed_at=format_utc(spec.at),
        policy_name=spec.policy,
        size_before=spec.size_before,
        size_after=spec.size_after,
        duration_seconds=spec.duration,
        success=spec.success,
        error_message=None if spec.success else "ffmpeg exited with status 1",
        audio_tracks_before=3 + spec.audio_removed,
        audio_tracks_after=3,
        audio_tracks_removed=spec.audio_removed,
        subtitle_tracks_before=2 + spec.subtitles_removed,
        subtitle_tracks_after=2,
        subtitle_tracks_removed=spec.subtitles_removed,
        attachments_before=spec.attachments_removed,
        attachments_after=0,
        attachments_removed=spec.attachments_removed,
        phases_total=max(spec.phases, 1),
        phases_completed=max(spec.phases, 1) if spec.success else 0,
        video_source_codec="h264",
        video_target_codec="hevc" if spec.transcoded else None,
        video_transcode_skipped=spec.skipped,
        video_skip_reason="codec_matches" if spec.skipped else None,
        audio_tracks_transcoded=spec.audio_transcoded,
        worker=spec.worker,
        actions=tuple(
            ActionResultRecord(
                action_type="remove_track",
                success=True,
                track_type="audio",
                track_index=i + 1,
                before_state='{"language": "fre"}',
                after_state='{"removed": true}',
                duration_ms=3,
                rule_reference="phases[0].keep_audio.languages",
                message="removed",
            )
            for i in range(spec.actions)
        ),
        phases=tuple(
            PerformanceMetricRecord(f"phase-{i}", 0.25, bytes_read=1000, bytes_written=900)
            for i in range(spec.phases)
        ),
    )


def write_runs(conn: sqlite3.Connection, specs: list[RunSpec]) -> list[str]:
    """Insert the runs in one transaction; their ids in order."""
    ids = []
    with transaction(conn):
        for spec in specs:
            run = record(spec)
            insert_run(conn, run)
            ids.append(run.id)
    return ids


def days(n: float) -> timedelta:
    return timedelta(days=n)
