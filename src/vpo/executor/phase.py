"""Executing one phase of a plan on a file.

Metadata-only phases on Matroska are applied in place with mkvpropedit (no copy of the
file). Removals and reorders are a mkvmerge remux (Matroska) or an ffmpeg remux (other
containers); transcodes are ffmpeg. Those write a temporary file that must probe with
exactly the tracks the plan expects before it replaces the original.
"""

import contextlib
import json
import subprocess
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vpo.errors import VpoError
from vpo.executor import ffmpeg, matroska
from vpo.executor.process import Cancellation, RunInterrupted, ToolResult, run_tool
from vpo.executor.safe_replace import TemporaryFileError, TemporaryOutput
from vpo.media import edit_journal
from vpo.media.edit_journal import EditJournal, JournalError
from vpo.media.identity import FileIdentity, SourceChanged
from vpo.media.probe import ProbeError, probe
from vpo.media.tools import require_tool
from vpo.media.tracks import MediaInfo, Track, TrackType
from vpo.policy.planner import PhasePlan, TrackState

__all__ = [
    "Cancellation",
    "FileIdentity",
    "PhaseExecutor",
    "PhaseOutcome",
    "RunInterrupted",
    "SourceChanged",
    "VerificationError",
]

MATROSKA = frozenset({"mkv", "webm"})
PROPEDIT_TIMEOUT_SECONDS = 300
TRANSCODE_TIMEOUT_SECONDS = 48 * 3600
REMUX_BASE_TIMEOUT_SECONDS = 600
REMUX_BYTES_PER_SECOND = 20_000_000  # a slow NAS still remuxes faster than this
DURATION_TOLERANCE_SECONDS = 0.1  # at least; two frames when the frame rate is known
DURATION_PROBE_TIMEOUT_SECONDS = 60
RESTORED = "the original was restored byte for byte"

ProgressCallback = Callable[[float], None]
# The tools a phase started, in order, for whoever set it (the workflow numbers the calls
# and names the tool of a failed phase from it); per thread, so parallel runs stay apart.
TOOL_CALLS: ContextVar[list[str] | None] = ContextVar("vpo_tool_calls", default=None)
PreExec = Callable[[], None]


class VerificationError(VpoError):
    """The tool's output does not hold the tracks (or the duration) the plan expects."""


@dataclass(frozen=True)
class PhaseOutcome:
    """What executing a phase did and measured.

    `identity` is the file's identity after the phase: the next phase's `run` gets it.
    An in-place edit leaves its journal pending (`journal`): `settle()` must be called
    once the phase is recorded; until then a kill makes the next VPO restore the
    original, so no change is ever on disk without its record."""

    tool: str | None
    media: MediaInfo  # the file as probed after the phase
    current: dict[int, int]  # track index before the run → stream index now
    seconds: float = 0.0
    bytes_read: int | None = None
    bytes_written: int | None = None
    encoding_fps: float | None = None
    encoding_bitrate: int | None = None
    identity: FileIdentity | None = None
    journal: EditJournal | None = field(default=None, compare=False)

    def settle(self) -> None:
        """The phase is recorded: drop the in-place edit's journal (no-op otherwise)."""
        if self.journal is not None:
            self.journal.settle()


class PhaseExecutor:
    """Runs phases on one file; `preexec_fn` lets tests put limits on the tools, and
    `cancellation` (raised by VPO's signal handlers) stops them."""

    def __init__(
        self, preexec_fn: PreExec | None = None, cancellation: Cancellation | None = None
    ) -> None:
        self.preexec_fn = preexec_fn
        self.cancellation = cancellation

    def run(
        self,
        path: Path,
        media: MediaInfo,
        current: dict[int, int],
        phase: PhasePlan,
        on_progress: ProgressCallback | None = None,
        identified: dict[str, Any] | None = None,
        identity: FileIdentity | None = None,
    ) -> PhaseOutcome:
        """Execute `phase`; `identified` is `mkvmerge -J` of the file as it is now, if known;
        `identity` is that of the file `media` was probed from (taken now when None).

        Raises `SourceChanged` when the file is no longer the one probed (before an
        in-place edit, or before the result would replace it): the file is left alone.
        """
        if identity is None:
            identity = FileIdentity.of(path)
        if not phase.actions:
            return PhaseOutcome(None, media, current, identity=identity)
        self._check_cancelled()
        wanted = list(phase.tracks_after)
        if media.container in MATROSKA and not phase.structural:
            outcome = self._propedit(path, media, current, wanted, identified, identity)
            if outcome is not None:
                return outcome
            # The file's layout cannot be journaled: a remux does the same change safely.
        output = TemporaryOutput(path)
        try:
            if media.container in MATROSKA and not phase.transcodes:
                outcome = self._mkvmerge(path, output.path, media, current, wanted, identified)
            else:
                outcome = self._ffmpeg(path, output.path, media, current, phase, on_progress)
            _verify(outcome.media, wanted, output.path)
            _verify_duration(media, outcome.media, wanted, current, output.path)
            self._check_cancelled()
            _check_unchanged(identity, path, "the result was discarded")
            # Taken before the swap, which keeps inode, size and mtime: nothing may fail
            # after it (the original is already replaced by then).
            replaced = FileIdentity.of(output.path)
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
            identity=replaced,
        )

    def _propedit(
        self,
        path: Path,
        media: MediaInfo,
        current: dict[int, int],
        wanted: list[TrackState],
        identified: dict[str, Any] | None,
        identity: FileIdentity,
    ) -> PhaseOutcome | None:
        """Edit in place under a journal; None when the file cannot be journaled."""
        ids = matroska.identify(media, identified)
        args = matroska.propedit_args(str(path), ids, current, wanted, media)
        try:
            journal = edit_journal.begin(path, identity.partial_hash)
        except (OSError, JournalError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TemporaryFileError(
                f"cannot write the edit journal beside {path.name}: {reason}; it was not edited"
            ) from exc
        if journal is None:
            return None
        try:
            _check_unchanged(identity, path, "it was not edited")  # journaled what we probed
        except BaseException:
            journal.settle()  # nothing was edited: the journal has nothing to undo
            raise
        try:
            result = self._tool(args, PROPEDIT_TIMEOUT_SECONDS, ok_codes=(0, 1))
            try:
                after = probe(path)
            except ProbeError as exc:
                raise VerificationError(f"the edited file does not probe: {exc.message}") from exc
            _verify(after, wanted, path)
            identity_after = FileIdentity.of(path)
        except VpoError as exc:
            message = _restore(journal, exc.message)
            try:
                error = type(exc)(message, exc.exit_code)
            except TypeError:
                error = VpoError(message, exc.exit_code)
            raise error from exc
        except BaseException:
            _restore(journal, "")
            raise
        outcome = _outcome("mkvpropedit", after, current, result)
        return replace(outcome, identity=identity_after, journal=journal)

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
        calls = TOOL_CALLS.get()
        if calls is not None:
            calls.append(Path(args[0]).name)
        return run_tool(
            args,
            timeout=timeout,
            ok_codes=ok_codes,
            on_stdout_line=on_line,
            preexec_fn=self.preexec_fn,
            cancellation=self.cancellation,
        )

    def _check_cancelled(self) -> None:
        if self.cancellation is not None:
            self.cancellation.check()


def _check_unchanged(identity: FileIdentity, path: Path, consequence: str) -> None:
    try:
        identity.check(path)
    except SourceChanged as exc:
        raise SourceChanged(f"{exc.message}; {consequence} and the file left as it is") from None


def _restore(journal: EditJournal, message: str) -> str:
    """Undo a failed in-place edit; `message` with what became of the file."""
    try:
        journal.restore()
    except JournalError as exc:
        if journal.held is not None:
            journal.held.release()  # stale now: the next VPO tries again
        return f"{message}; restoring the original failed: {exc}"
    journal.settle()
    return f"{message}; {RESTORED}" if message else RESTORED


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


def _verify_duration(
    source: MediaInfo,
    output: MediaInfo,
    wanted: list[TrackState],
    current: dict[int, int],
    path: Path,
) -> None:
    """The output lasts as long as the source (a cut-off output can hold every track).

    The tolerance is two frames, at least 0.1 s. An output shorter than the source
    is accepted only when the tracks it dropped were the longer ones: then the
    streams of the source are probed for their own durations."""
    if source.duration_seconds is None or output.duration_seconds is None:
        return
    if output.duration_seconds >= source.duration_seconds - DURATION_TOLERANCE_SECONDS:
        return
    streams = _stream_timing(Path(source.path))
    kept = [  # attachments have no length of their own (ffprobe gives the container's)
        streams.get(current[ts.original_index])
        for ts in wanted
        if ts.kind is not TrackType.ATTACHMENT
    ]
    expected = source.duration_seconds
    if kept and all(k is not None and k[0] is not None for k in kept):
        expected = max(k[0] for k in kept if k is not None and k[0] is not None)
    rates = [k[1] for k in kept if k is not None and k[1]]
    tolerance = max(DURATION_TOLERANCE_SECONDS, 2 / rates[0] if rates else 0.0)
    if output.duration_seconds < expected - tolerance:
        raise VerificationError(
            f"{path.name} is cut short: it lasts {output.duration_seconds:.2f} s, "
            f"the source {expected:.2f} s"
        )


def _stream_timing(path: Path) -> dict[int, tuple[float | None, float | None]]:
    """For each stream index of `path`: its duration in seconds and its frame rate."""
    args = [
        require_tool("ffprobe"),
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_entries",
        "stream=index,codec_type,duration,avg_frame_rate:stream_tags",
        "-i",
        f"file:{path}",
    ]
    try:
        result = subprocess.run(
            args, capture_output=True, timeout=DURATION_PROBE_TIMEOUT_SECONDS, check=False
        )
        streams = json.loads(result.stdout or b"{}").get("streams", [])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}
    timing = {}
    for stream in streams:
        if stream.get("codec_type") not in ("video", "audio", "subtitle"):
            continue  # attachments and data report the container's length, not their own
        tags = {str(k).upper(): v for k, v in (stream.get("tags") or {}).items()}
        duration = _seconds(stream.get("duration")) or _clock(tags.get("DURATION"))
        rate = _rate(stream.get("avg_frame_rate")) if stream.get("codec_type") == "video" else None
        timing[int(stream["index"])] = (duration, rate)
    return timing


def _seconds(value: object) -> float | None:
    with contextlib.suppress(TypeError, ValueError):
        return float(value)  # type: ignore[arg-type]
    return None


def _clock(value: object) -> float | None:
    """`HH:MM:SS.fraction` (Matroska's DURATION tag) in seconds."""
    with contextlib.suppress(AttributeError, ValueError):
        hours, minutes, seconds = str(value).split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _rate(value: object) -> float | None:
    with contextlib.suppress(AttributeError, ValueError, ZeroDivisionError):
        numerator, denominator = str(value).split("/")
        rate = int(numerator) / int(denominator)
        return rate if rate > 0 else None
    return None


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
