"""Synthetic file runs made through the OpenTelemetry API exactly as the workflow will
make them (root → phases → actions), with the values each row must end up holding."""

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Status, StatusCode, Tracer

from vpo.telemetry import attributes as attr
from vpo.telemetry.instruments import RunMetrics, RunOutcome


@dataclass
class SyntheticAction:
    action_type: str
    track_type: str | None
    track_index: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    rule: str
    fail: bool = False


@dataclass
class SyntheticRun:
    file_id: int
    policy: str = "synthetic"
    phases: list[tuple[str, list[SyntheticAction]]] = field(default_factory=list)
    size_before: int = 5_000_000
    size_after: int = 3_000_000
    before: dict[str, int] = field(
        default_factory=lambda: {"audio": 4, "subtitle": 3, "attachment": 2}
    )
    after: dict[str, int] = field(
        default_factory=lambda: {"audio": 2, "subtitle": 1, "attachment": 0}
    )
    fail_with: Exception | None = None
    phase_bytes: tuple[int, int] = (4_000_000, 3_000_000)
    stats_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    hash_before: str = "sha256:" + "a" * 64
    hash_after: str = "sha256:" + "b" * 64


def ten_action_run(
    file_id: int, policy: str = "synthetic", fail_action: bool = True
) -> SyntheticRun:
    """A root, three phases and ten actions, one of which fails."""

    def remove(kind: str, index: int, lang: str) -> SyntheticAction:
        return SyntheticAction(
            "remove",
            kind,
            index,
            {"codec": "aac", "language": lang},
            None,
            f"phases[0].keep_{kind}.languages",
        )

    cleanup = [
        remove("audio", 2, "fre"),
        remove("audio", 3, "spa"),
        remove("subtitle", 5, "ger"),
        remove("subtitle", 6, "ita"),
        remove("attachment", 8, "und"),
        remove("attachment", 9, "und"),
    ]
    organize = [
        SyntheticAction(
            "set_default",
            "audio",
            1,
            {"default": False},
            {"default": True},
            "phases[1].default_flags.audio",
        ),
        SyntheticAction(
            "clear_default",
            "subtitle",
            4,
            {"default": True},
            {"default": False},
            "phases[1].default_flags.subtitle",
            fail=fail_action,
        ),
        SyntheticAction(
            "set_language",
            "audio",
            1,
            {"language": "und"},
            {"language": "jpn"},
            "phases[1].set_language[0]",
        ),
    ]
    compress = [
        SyntheticAction(
            "transcode",
            "video",
            0,
            {"codec": "h264"},
            {"codec": "hevc"},
            "phases[2].transcode.video",
        )
    ]
    return SyntheticRun(
        file_id=file_id,
        policy=policy,
        phases=[("cleanup", cleanup), ("organize", organize), ("compress", compress)],
    )


def emit(tracer: Tracer, metrics: RunMetrics | None, run: SyntheticRun) -> None:
    """Make the spans (and metric recordings) of `run`; an exception in `fail_with` is
    recorded on the root, which ends with status ERROR."""
    root_attributes = {
        attr.STATS_ID: run.stats_id,
        attr.FILE_ID: run.file_id,
        attr.FILE_PATH: f"/library/file-{run.file_id}.mkv",
        attr.POLICY_NAME: run.policy,
        attr.PHASES_TOTAL: len(run.phases),
        attr.SIZE_BEFORE: run.size_before,
        attr.AUDIO_BEFORE: run.before["audio"],
        attr.SUBTITLE_BEFORE: run.before["subtitle"],
        attr.ATTACHMENT_BEFORE: run.before["attachment"],
        attr.HASH_BEFORE: run.hash_before,
        attr.VIDEO_SOURCE_CODEC: "h264",
    }
    if metrics is not None:
        metrics.run_started()
    with tracer.start_as_current_span(
        attr.PROCESS_FILE,
        attributes=root_attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as root:
        changes = 0
        completed = 0
        try:
            for phase_name, actions in run.phases:
                with tracer.start_as_current_span(
                    attr.PHASE, attributes={attr.PHASE_NAME: phase_name}
                ) as phase:
                    for action in actions:
                        with tracer.start_as_current_span(attr.ACTION) as span:
                            span.set_attributes(_action_attributes(action))
                            if action.fail:
                                span.set_status(Status(StatusCode.ERROR, "mkvpropedit failed"))
                            else:
                                changes += 1
                            if metrics is not None:
                                metrics.action_finished(
                                    action.action_type, action.track_type, not action.fail, 0.001
                                )
                    phase.set_attribute(attr.BYTES_READ, run.phase_bytes[0])
                    phase.set_attribute(attr.BYTES_WRITTEN, run.phase_bytes[1])
                    if phase_name == "compress":
                        phase.set_attribute(attr.ENCODING_FPS, 123.5)
                        phase.set_attribute(attr.ENCODING_BITRATE, 900_000)
                        if metrics is not None:
                            metrics.transcode_finished("hevc", 123.5)
                    if metrics is not None:
                        metrics.phase_finished(run.policy, phase_name, 0.01, *run.phase_bytes)
                completed += 1
                if run.fail_with is not None and completed == 1:
                    raise run.fail_with
            root.set_attributes(
                {
                    attr.SIZE_AFTER: run.size_after,
                    attr.AUDIO_AFTER: run.after["audio"],
                    attr.SUBTITLE_AFTER: run.after["subtitle"],
                    attr.ATTACHMENT_AFTER: run.after["attachment"],
                    attr.HASH_AFTER: run.hash_after,
                    attr.VIDEO_TARGET_CODEC: "hevc",
                    attr.AUDIO_PRESERVED: 1,
                }
            )
        except Exception as exc:
            root.record_exception(exc)
            root.set_status(Status(StatusCode.ERROR, str(exc)))
        root.set_attributes({attr.PHASES_COMPLETED: completed, attr.CHANGES_TOTAL: changes})
    if metrics is not None:
        failed = run.fail_with is not None
        metrics.run_finished(
            RunOutcome(
                policy=run.policy,
                success=not failed,
                size_before=run.size_before,
                size_after=run.size_before if failed else run.size_after,
                duration_seconds=0.05,
                tracks_removed={}
                if failed
                else {k: run.before[k] - run.after[k] for k in run.before},
                video_transcoded=not failed,
                audio_preserved=0 if failed else 1,
                span_context=root.get_span_context(),
            )
        )


def _action_attributes(action: SyntheticAction) -> dict[str, Any]:
    values: dict[str, Any] = {
        attr.ACTION_TYPE: action.action_type,
        attr.ACTION_RULE: action.rule,
        attr.ACTION_MESSAGE: f"{action.action_type} done",
    }
    if action.track_type is not None:
        values[attr.TRACK_TYPE] = action.track_type
    if action.track_index is not None:
        values[attr.TRACK_INDEX] = action.track_index
    if action.before is not None:
        values[attr.ACTION_BEFORE] = json.dumps(action.before)
    if action.after is not None:
        values[attr.ACTION_AFTER] = json.dumps(action.after)
    return values


def many_action_run(file_id: int, actions: int = 20, policy: str = "synthetic") -> SyntheticRun:
    """Three phases sharing `actions` successful metadata actions (benchmarks)."""
    made = [
        SyntheticAction(
            "set_language",
            "audio",
            i,
            {"language": "und"},
            {"language": "jpn"},
            f"phases[{i % 3}].set_language[{i}]",
        )
        for i in range(actions)
    ]
    phases = [(name, made[i::3]) for i, name in enumerate(("cleanup", "organize", "compress"))]
    return SyntheticRun(
        file_id=file_id,
        policy=policy,
        phases=phases,
        after={"audio": 4, "subtitle": 3, "attachment": 2},
        size_after=5_000_000,
    )
