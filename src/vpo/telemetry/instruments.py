"""The OpenTelemetry instruments of docs/metrics.md behind a small recording API.

The workflow calls `RunMetrics` methods with plain values; it never spells a metric
name or a label. Instrument names and units are chosen so the Prometheus exporter
exposes exactly the names of docs/metrics.md (`.` → `_`, `By` → `_bytes`, `s` → `_seconds`,
`_total` on counters; `{…}` units are annotations and add nothing).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.trace import SpanContext

from vpo.telemetry.exemplars import RunExemplars

# Bucket boundaries, in the unit of each instrument (the SDK defaults are for ms).
DURATION_BUCKETS_S = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
    3600,
    7200,
    14400,
)
SIZE_BUCKETS_BYTES = (
    1e6,
    5e6,
    1e7,
    5e7,
    1e8,
    2.5e8,
    5e8,
    1e9,
    2e9,
    5e9,
    1e10,
    2e10,
    5e10,
    1e11,
)
FPS_BUCKETS = (1, 2, 5, 10, 15, 24, 30, 60, 120, 240, 500, 1000)

FILES_PROCESSED = "vpo.files.processed"
FILE_INPUT = "vpo.file.input"
FILE_OUTPUT = "vpo.file.output"
FILE_SIZE = "vpo.file.size"
PROCESSING_DURATION = "vpo.processing.duration"
PHASE_DURATION = "vpo.phase.duration"
ACTIONS = "vpo.actions"
ACTION_DURATION = "vpo.action.duration"
TRACKS_REMOVED = "vpo.tracks.removed"
TRANSCODES = "vpo.transcodes"
IO = "vpo.io"
ENCODING_FPS = "vpo.encoding.fps"
FILES_IN_PROGRESS = "vpo.files.in_progress"

METER_NAME = "vpo"


def views() -> list[View]:
    """Bucket boundaries that fit what each histogram measures."""
    buckets = {
        FILE_SIZE: SIZE_BUCKETS_BYTES,
        PROCESSING_DURATION: DURATION_BUCKETS_S,
        PHASE_DURATION: DURATION_BUCKETS_S,
        ACTION_DURATION: DURATION_BUCKETS_S,
        ENCODING_FPS: FPS_BUCKETS,
    }
    return [
        View(
            instrument_name=name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=[float(b) for b in bounds]),
        )
        for name, bounds in buckets.items()
    ]


@dataclass(frozen=True)
class RunOutcome:
    """What one finished file run measured, for the per-run instruments."""

    policy: str
    success: bool
    size_before: int
    size_after: int
    duration_seconds: float
    tracks_removed: Mapping[str, int] = field(default_factory=dict)  # audio/subtitle/attachment
    video_transcoded: bool = False
    video_skipped: bool = False
    audio_transcoded: int = 0
    audio_preserved: int = 0
    span_context: SpanContext | None = None  # the run's root span: its exemplars' trace


class RunMetrics:
    """Records the live instruments of docs/metrics.md for the runs of this process."""

    def __init__(self, meter: Meter, exemplars: RunExemplars | None = None) -> None:
        self._exemplars = exemplars  # the run's trace on the duration and files series
        self._files = meter.create_counter(FILES_PROCESSED, "{file}", "File runs finished")
        self._input = meter.create_counter(FILE_INPUT, "By", "Bytes of files before their run")
        self._output = meter.create_counter(FILE_OUTPUT, "By", "Bytes of files after their run")
        self._size = meter.create_histogram(FILE_SIZE, "By", "File sizes before and after")
        self._duration = meter.create_histogram(PROCESSING_DURATION, "s", "Wall time of a run")
        self._phase = meter.create_histogram(PHASE_DURATION, "s", "Wall time of a phase")
        self._actions = meter.create_counter(ACTIONS, "{action}", "Actions executed")
        self._action_time = meter.create_histogram(ACTION_DURATION, "s", "Time of an action")
        self._removed = meter.create_counter(TRACKS_REMOVED, "{track}", "Tracks removed")
        self._transcodes = meter.create_counter(TRANSCODES, "{track}", "Transcode decisions")
        self._io = meter.create_counter(IO, "By", "Bytes read and written by the tools")
        self._fps = meter.create_histogram(ENCODING_FPS, "{fps}", "Average fps of a transcode")
        self._in_progress = meter.create_up_down_counter(
            FILES_IN_PROGRESS, "{file}", "Runs started and not finished"
        )

    def run_started(self) -> None:
        self._in_progress.add(1)

    def run_finished(self, run: RunOutcome) -> None:
        policy = {"policy": run.policy}
        status = {**policy, "status": "success" if run.success else "failure"}
        self._files.add(1, status)
        self._input.add(run.size_before, policy)
        self._output.add(run.size_after, policy)
        self._size.record(run.size_before, {**policy, "stage": "before"})
        self._size.record(run.size_after, {**policy, "stage": "after"})
        self._duration.record(run.duration_seconds, status)
        if self._exemplars is not None and run.span_context is not None:
            self._exemplars.run_finished(status, run.duration_seconds, run.span_context)
        for track_type in ("audio", "subtitle", "attachment"):
            removed = run.tracks_removed.get(track_type, 0)
            self._removed.add(removed, {**policy, "track_type": track_type})
        video = "transcoded" if run.video_transcoded else "skipped" if run.video_skipped else None
        if video is not None:
            self._transcodes.add(1, {**policy, "kind": "video", "outcome": video})
        if run.audio_transcoded:
            self._transcodes.add(
                run.audio_transcoded, {**policy, "kind": "audio", "outcome": "transcoded"}
            )
        if run.audio_preserved:
            self._transcodes.add(
                run.audio_preserved, {**policy, "kind": "audio", "outcome": "preserved"}
            )
        self._in_progress.add(-1)

    def phase_finished(
        self,
        policy: str,
        phase: str,
        seconds: float,
        bytes_read: int | None = None,
        bytes_written: int | None = None,
    ) -> None:
        self._phase.record(seconds, {"policy": policy, "phase": phase})
        if bytes_read:
            self._io.add(bytes_read, {"direction": "read"})
        if bytes_written:
            self._io.add(bytes_written, {"direction": "written"})

    def action_finished(
        self, action_type: str, track_type: str | None, success: bool, seconds: float
    ) -> None:
        """One action done; `seconds` is its share of the tool call that did it (the call's
        time ÷ the actions that call did), so the `vpo.action.duration` sum adds up to the
        time the tools took, never N times one call (docs/metrics.md)."""
        labels = {
            "action_type": action_type,
            "track_type": track_type or "file",
            "status": "success" if success else "failure",
        }
        self._actions.add(1, labels)
        self._action_time.record(seconds, {"action_type": action_type})

    def transcode_finished(self, codec: str, fps: float) -> None:
        self._fps.record(fps, {"codec": codec})
