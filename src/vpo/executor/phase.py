"""Executing one phase of a plan on a file.

Metadata-only phases on Matroska are applied in place with mkvpropedit (no copy of the
file). Removals and reorders are a mkvmerge remux (Matroska) or an ffmpeg remux (other
containers); transcodes are ffmpeg. Those write a temporary file that must probe with
exactly the tracks the plan expects before it replaces the original.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vpo.errors import VpoError
from vpo.executor import ffmpeg, matroska
from vpo.executor.process import ToolResult, run_tool
from vpo.executor.safe_replace import TemporaryOutput
from vpo.media.probe import ProbeError, probe
from vpo.media.tracks import MediaInfo, Track, TrackType
from vpo.policy.planner import PhasePlan, TrackState

MATROSKA = frozenset({"mkv", "webm"})
PROPEDIT_TIMEOUT_SECONDS = 300
TRANSCODE_TIMEOUT_SECONDS = 48 * 3600
REMUX_BASE_TIMEOUT_SECONDS = 600
REMUX_BYTES_PER_SECOND = 20_000_000  # a slow NAS still remuxes faster than this

ProgressCallback = Callable[[float], None]
PreExec = Callable[[], None]


class VerificationError(VpoError):
    """The tool's output does not hold the tracks the plan expects."""


@dataclass(frozen=True)
class PhaseOutcome:
    """What executing a phase did and measured."""

    tool: str | None
    media: MediaInfo  # the file as probed after the phase
    current: dict[int, int]  # track index before the run → stream index now
    seconds: float = 0.0
    bytes_read: int | None = None
    bytes_written: int | None = None
    encoding_fps: float | None = None
    encoding_bitrate: int | None = None


class PhaseExecutor:
    """Runs phases on one file; `preexec_fn` lets tests put limits on the tools."""

    def __init__(self, preexec_fn: PreExec | None = None) -> None:
        self.preexec_fn = preexec_fn

    def run(
        self,
        path: Path,
        media: MediaInfo,
        current: dict[int, int],
        phase: PhasePlan,
        on_progress: ProgressCallback | None = None,
        identified: dict[str, Any] | None = None,
    ) -> PhaseOutcome:
        """Execute `phase`; `identified` is `mkvmerge -J` of the file as it is now, if known."""
        if not phase.actions:
            return PhaseOutcome(None, media, current)
        wanted = list(phase.tracks_after)
        if media.container in MATROSKA and not phase.structural:
            return self._propedit(path, media, current, wanted, identified)
        output = TemporaryOutput(path)
        try:
            if media.container in MATROSKA and not phase.transcodes:
                outcome = self._mkvmerge(path, output.path, media, current, wanted, identified)
            else:
                outcome = self._ffmpeg(path, output.path, media, current, phase, on_progress)
            _verify(outcome.media, wanted, output.path)
            output.commit()
        except BaseException:
            output.discard()
            raise
        return PhaseOutcome(
            tool=outcome.tool,
            # The verified temporary file is now the original: its probe describes it.
            media=replace(outcome.media, path=str(path)),
            current={ts.original_index: position for position, ts in enumerate(wanted)},
            seconds=outcome.seconds,
            bytes_read=outcome.bytes_read,
            bytes_written=outcome.bytes_written,
            encoding_fps=outcome.encoding_fps,
            encoding_bitrate=outcome.encoding_bitrate,
        )

    def _propedit(
        self,
        path: Path,
        media: MediaInfo,
        current: dict[int, int],
        wanted: list[TrackState],
        identified: dict[str, Any] | None,
    ) -> PhaseOutcome:
        ids = matroska.identify(media, identified)
        args = matroska.propedit_args(str(path), ids, current, wanted, media)
        result = self._tool(args, PROPEDIT_TIMEOUT_SECONDS, ok_codes=(0, 1))
        after = probe(path)
        _verify(after, wanted, path)
        return _outcome("mkvpropedit", after, current, result)

    def _mkvmerge(
        self,
        path: Path,
        temp: Path,
        media: MediaInfo,
        current: dict[int, int],
        wanted: list[TrackState],
        identified: dict[str, Any] | None,
    ) -> PhaseOutcome:
        ids = matroska.identify(media, identified)
        args = matroska.remux_args(str(path), str(temp), ids, current, wanted)
        result = self._tool(args, _remux_timeout(media), ok_codes=(0, 1))  # 1 = warnings
        return _outcome("mkvmerge", _probe_output(temp), current, result)

    def _ffmpeg(
        self,
        path: Path,
        temp: Path,
        media: MediaInfo,
        current: dict[int, int],
        phase: PhasePlan,
        on_progress: ProgressCallback | None,
    ) -> PhaseOutcome:
        transcodes = [a for a in phase.actions if a.action_type == "transcode"]
        args = ffmpeg.ffmpeg_args(
            str(path), str(temp), media.container, current, list(phase.tracks_after), transcodes
        )
        progress = ffmpeg.Progress()
        duration = media.duration_seconds or 0

        def on_line(line: str) -> None:
            progress.feed(line)
            if on_progress is not None and duration and line.startswith("out_time_us="):
                on_progress(min(progress.out_time_us / 1e6 / duration, 1.0))

        timeout = TRANSCODE_TIMEOUT_SECONDS if transcodes else _remux_timeout(media)
        result = self._tool(args, timeout, on_line=on_line)
        output = _probe_output(temp)
        outcome = _outcome("ffmpeg", output, current, result)
        if not transcodes:
            return outcome
        return replace(
            outcome,
            encoding_fps=progress.average_fps(result.seconds),
            encoding_bitrate=progress.average_bitrate(temp.stat().st_size),
        )

    def _tool(
        self,
        args: list[str],
        timeout: float,
        ok_codes: tuple[int, ...] = (0,),
        on_line: Callable[[str], None] | None = None,
    ) -> ToolResult:
        return run_tool(
            args,
            timeout=timeout,
            ok_codes=ok_codes,
            on_stdout_line=on_line,
            preexec_fn=self.preexec_fn,
        )


def _outcome(
    tool: str, media: MediaInfo, current: dict[int, int], result: ToolResult
) -> PhaseOutcome:
    return PhaseOutcome(
        tool, media, current, result.seconds, result.bytes_read, result.bytes_written
    )


def _probe_output(temp: Path) -> MediaInfo:
    try:
        return probe(temp)
    except ProbeError as exc:
        raise VerificationError(f"the new file does not probe: {exc.message}") from exc


def _remux_timeout(media: MediaInfo) -> float:
    return REMUX_BASE_TIMEOUT_SECONDS + media.size_bytes / REMUX_BYTES_PER_SECOND


def _verify(media: MediaInfo, wanted: list[TrackState], path: Path) -> None:
    """The probed file holds exactly `wanted`: kinds, codecs, languages and flags, in order."""
    found = [_signature(t) for t in media.tracks]
    expected = [_signature(ts.track) for ts in wanted]
    if found != expected:
        raise VerificationError(
            f"{path.name} does not hold the planned tracks: expected {_counts(expected)}, "
            f"found {_counts(found)}"
            + (
                ""
                if _counts(found) != _counts(expected)
                else f"; first difference at track {_first_difference(found, expected)}"
            )
        )


def _signature(track: Track) -> tuple[object, ...]:
    if track.track_type is TrackType.ATTACHMENT:
        return (track.track_type.value, track.title)
    return (track.track_type.value, track.codec, track.language, track.is_default, track.is_forced)


def _counts(signatures: list[tuple[object, ...]]) -> str:
    kinds = [s[0] for s in signatures]
    return ", ".join(f"{kinds.count(k)} {k}" for k in ("video", "audio", "subtitle", "attachment"))


def _first_difference(found: list[tuple[object, ...]], expected: list[tuple[object, ...]]) -> str:
    for position, (a, b) in enumerate(zip(found, expected, strict=False)):
        if a != b:
            return f"{position} (expected {b}, found {a})"
    return "?"
