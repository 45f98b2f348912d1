"""The per-file processor: one policy run on one file, described only through spans.

    vpo.process_file (root: before values at start, running after values per phase)
      └─ vpo.phase (one per policy phase: I/O, fps, bitrate)
           └─ vpo.action (one per planned action: type, track, before/after, rule)

Before a run starts, the file must exist, be a regular file, and be claimed by this
process (`vpo.ownership.claim`): a file another VPO is working on is skipped, not run.
A run that starts is always recorded — a failure of any kind, even an interruption,
ends it as failed with its reason (docs/statistics.md). The processor also records the
live metrics and refreshes the file's `files`/`tracks` rows; it never writes a
statistics row — the exporter builds those from the spans.
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, Status, StatusCode

from vpo.errors import VpoError
from vpo.executor.matroska import identify_json
from vpo.executor.phase import TOOL_CALLS, PhaseExecutor, PhaseOutcome
from vpo.executor.process import Cancellation
from vpo.executor.safe_replace import remove_stale_temporaries
from vpo.media import edit_journal
from vpo.media.identity import FileIdentity
from vpo.media.probe import ProbeError, probe
from vpo.media.tracks import MediaInfo, TrackType
from vpo.ownership import FileClaimedError, LocksFolderError, claim
from vpo.pathnames import path_text
from vpo.policy.planner import PhasePlan, Plan, PlannedAction, plan
from vpo.policy.schema import Policy
from vpo.telemetry import attributes as attr
from vpo.telemetry.inflight import UNMARKED_PHASES
from vpo.telemetry.instruments import RunMetrics, RunOutcome
from vpo.workflow.library_store import LibraryStore, RecordingError

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]  # (phase name, fraction of the phase done)


@dataclass(frozen=True)
class RunResult:
    """What one file came to, for the command's progress lines and summary: a run
    (recorded, `stats_id` set) or a skip (`skipped` says why; nothing recorded)."""

    path: Path
    stats_id: str | None
    success: bool
    error: str | None
    size_before: int = 0
    size_after: int = 0
    changes: int = 0
    skipped: bool = False
    fatal: bool = False  # the database refused a write: the batch must stop
    trace_id: str | None = None  # 32 hex digits: the run's trace, for log lines and links
    hash_before: str | None = None  # the file's partial hash when the run began

    @property
    def saved(self) -> int:
        return self.size_before - self.size_after

    @classmethod
    def skip(cls, path: Path, reason: str) -> "RunResult":
        return cls(path, None, False, reason, skipped=True)


class FileProcessor:
    """Applies one policy to files, one run per call to `process`."""

    def __init__(
        self,
        policy: Policy,
        store: LibraryStore,
        tracer: trace.Tracer,
        metrics: RunMetrics,
        executor: PhaseExecutor | None = None,
        *,
        cancellation: Cancellation | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.tracer = tracer
        self.metrics = metrics
        self.cancellation = cancellation or Cancellation()
        self.executor = executor or PhaseExecutor(cancellation=self.cancellation)

    def process(self, path: Path, on_progress: ProgressCallback | None = None) -> RunResult:
        """Run the policy on `path`; raises only `RecordingError` (the batch must stop)."""
        resolved, problem = resolve_file(path)
        if resolved is None:
            return RunResult.skip(path, problem or "cannot be read")
        if self.cancellation.cancelled:
            return RunResult.skip(resolved, f"not started: {self.cancellation.reason}")
        try:
            with claim(self.store.db_path, resolved):
                self._clean_up_after_dead_runs(resolved)
                file_id, fresh = self._file_id(resolved)
                run = _Run(self, resolved, file_id, str(uuid.uuid4()), on_progress, fresh)
                return run.execute()
        except FileClaimedError as exc:
            return RunResult.skip(resolved, exc.message)
        except LocksFolderError as exc:  # the library's own folder refuses writes
            raise RecordingError(exc.message) from exc
        except RecordingError:
            raise
        except VpoError as exc:  # e.g. being written while VPO fingerprinted it
            return RunResult.skip(resolved, exc.message)
        except FileNotFoundError:
            return RunResult.skip(resolved, "no longer exists (moved or deleted)")

    def _clean_up_after_dead_runs(self, path: Path) -> None:
        """What a VPO that died mid-write left: this file's edit journal (restored under
        our claim, after the dead runs are recorded, so that an edit a dead run recorded
        is kept), and stale temporary files in its folder."""
        if edit_journal.stale_for(path):
            self.store.reconcile()
            sentence = edit_journal.recover(path)
            if sentence:
                log.warning("%s", sentence)
        remove_stale_temporaries(path.parent)

    def _file_id(self, path: Path) -> tuple[int, MediaInfo | None]:
        """The file's id, scanning it first when it is new (that probe is then fresh)."""
        known = self.store.known(path)
        if known is not None:
            return known.file_id, None
        try:
            content_hash = FileIdentity.of(path).partial_hash
        except FileNotFoundError:
            raise
        except OSError as exc:
            return self.store.save(path, None, None, scan_error=_unreadable(path, exc)), None
        try:
            media = probe(path)
        except ProbeError as exc:
            return self.store.save(path, None, content_hash, scan_error=exc.message), None
        return self.store.save(path, media, content_hash), media


class _Run:
    """The state of one run while it executes."""

    def __init__(
        self,
        processor: FileProcessor,
        path: Path,
        file_id: int,
        stats_id: str,
        on_progress: ProgressCallback | None,
        fresh: MediaInfo | None = None,
    ) -> None:
        self.p = processor
        self.fresh = fresh  # a probe taken just now, when the file was new
        self.path = path
        self.file_id = file_id
        self.stats_id = stats_id
        self.on_progress = on_progress
        self.size_before = 0
        self.size_after = 0
        self.identity: FileIdentity | None = None  # the file as this run last knew it
        self.before: MediaInfo | None = None
        self.after: MediaInfo | None = None  # the last verified probe of a phase's result
        self.identified: dict[str, Any] | None = None  # mkvmerge -J of the file as it is
        self.completed = 0
        self.changes = 0
        self.plan: Plan | None = None
        self.tool_calls = 0  # tool calls made so far; numbers each phase's call

    def execute(self) -> RunResult:
        policy = self.p.policy
        # The before values are measured before the run starts, so even a run killed
        # at once is recorded with the file's real size (never 0).
        self.size_before = self.size_after = self.path.stat().st_size
        unreadable: str | None = None
        try:
            self.identity = FileIdentity.of(self.path)
            self.size_before = self.size_after = self.identity.size
        except FileNotFoundError:
            raise
        except OSError as exc:
            unreadable = _unreadable(self.path, exc)
        except VpoError as exc:  # written to while being fingerprinted
            unreadable = exc.message
        start_attributes: dict[str, Any] = {
            attr.STATS_ID: self.stats_id,
            attr.FILE_ID: self.file_id,
            attr.FILE_PATH: path_text(self.path),
            attr.POLICY_NAME: policy.name,
            attr.PHASES_TOTAL: len(policy.phases),
            attr.SIZE_BEFORE: self.size_before,
        }
        if self.identity is not None:
            start_attributes[attr.HASH_BEFORE] = self.identity.partial_hash
        self.p.metrics.run_started()
        started = time.monotonic()
        error: str | None = None
        escaped: BaseException | None = None
        fatal = False
        with self.p.tracer.start_as_current_span(
            attr.PROCESS_FILE,
            attributes=start_attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as root:
            try:
                if unreadable is not None:
                    raise VpoError(unreadable)
                self.p.cancellation.check()
                self._measure_before(root)
                self.plan = plan(self.before, policy)  # type: ignore[arg-type]
                self._run_phases(root)
                self._measure_after(root, failed=False)
            except BaseException as exc:  # every failure is recorded on the run
                error = _describe(exc)
                root.record_exception(exc)
                root.set_status(Status(StatusCode.ERROR, error))
                self._measure_after(root, failed=True)
                fatal = isinstance(exc, RecordingError)
                if not isinstance(exc, Exception):
                    escaped = exc  # recorded; still the caller's to handle
            root.set_attributes(
                {attr.PHASES_COMPLETED: self.completed, attr.CHANGES_TOTAL: self.changes}
            )
            trace_id = format(root.get_span_context().trace_id, "032x")
        self._record_metrics(error is None, time.monotonic() - started, root.get_span_context())
        if escaped is not None:
            raise escaped
        return RunResult(
            self.path,
            self.stats_id,
            error is None,
            error,
            self.size_before,
            self.size_after,
            self.changes,
            fatal=fatal,
            trace_id=trace_id,
            hash_before=self.identity.partial_hash if self.identity is not None else None,
        )

    def _measure_before(self, root: Span) -> None:
        fresh = self.fresh
        unchanged = fresh is not None and fresh.size_bytes == self.size_before
        # mkvmerge's view of a Matroska file is needed to edit it; ask alongside ffprobe
        # (when the scan's probe is reused, the executor asks only if a phase needs it).
        identifying = (
            _background().submit(identify_json, str(self.path))
            if not unchanged and self.path.suffix.lower() in MATROSKA_SUFFIXES
            else None
        )
        self.before = fresh if unchanged else probe(self.path)
        self.identified = _result_or_none(identifying)
        root.set_attributes(
            {
                attr.AUDIO_BEFORE: self.before.count(TrackType.AUDIO),
                attr.SUBTITLE_BEFORE: self.before.count(TrackType.SUBTITLE),
                attr.ATTACHMENT_BEFORE: self.before.count(TrackType.ATTACHMENT),
                **(
                    {attr.VIDEO_SOURCE_CODEC: self.before.video_codec}
                    if self.before.video_codec
                    else {}
                ),
            }
        )

    def _run_phases(self, root: Span) -> None:
        assert self.plan is not None and self.before is not None
        media = self.before
        current = {t.index: t.index for t in media.tracks}
        for phase in self.plan.phases:
            self.p.cancellation.check()
            outcome = self._run_phase(root, phase, media, current)
            media, current = outcome.media, outcome.current

    def _run_phase(
        self, root: Span, phase: PhasePlan, media: MediaInfo, current: dict[int, int]
    ) -> PhaseOutcome:
        before = (self.after, self.identity, self.size_after, self.completed, self.changes)
        unmarked: list[str] = []
        marking = UNMARKED_PHASES.set(unmarked)
        try:
            outcome = self._phase_span(root, phase, media, current)
        finally:
            UNMARKED_PHASES.reset(marking)
        if unmarked and outcome.journal is not None:
            # Its after values did not reach the run's marker: a kill now would leave an
            # edit no record knows. Put the original back instead, and fail the run.
            outcome.journal.restore()
            outcome.settle()
            self.after, self.identity, self.size_after, self.completed, self.changes = before
            raise VpoError(
                "the in-place edit was undone: its progress could not be marked in "
                "the run-markers file (see the warning above), so a crash could not be "
                "recorded truly"
            )
        outcome.settle()  # an in-place edit's journal goes only once the phase is recorded
        return outcome

    def _phase_span(
        self, root: Span, phase: PhasePlan, media: MediaInfo, current: dict[int, int]
    ) -> PhaseOutcome:
        tracer, metrics = self.p.tracer, self.p.metrics
        with tracer.start_as_current_span(
            attr.PHASE,
            attributes={attr.PHASE_NAME: phase.name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.monotonic()
            # One tool call does all of a phase's actions, so each action's span covers it
            # and carries the call's number (docs/statistics.md).
            actions = [
                (a, tracer.start_span(attr.ACTION, attributes=_action_attributes(a)))
                for a in phase.actions
            ]
            started_tools: list[str] = []
            token = TOOL_CALLS.set(started_tools)
            try:
                outcome = self.p.executor.run(
                    self.path,
                    media,
                    current,
                    phase,
                    self._phase_progress(phase.name),
                    self.identified,
                    identity=self.identity,
                )
                if phase.structural:
                    self.identified = None  # a new file: mkvmerge's numbering may differ
            except BaseException as exc:
                seconds = time.monotonic() - started
                message = _describe(exc)
                call: dict[str, Any] = {}
                if actions and started_tools:  # a tool was started: that call failed
                    self.tool_calls += 1
                    call = {
                        attr.ACTION_TOOL: started_tools[-1],
                        attr.ACTION_TOOL_CALL: self.tool_calls,
                    }
                for action, action_span in actions:
                    action_span.set_attributes(call)
                    action_span.set_status(Status(StatusCode.ERROR, message))
                    action_span.end()
                    metrics.action_finished(
                        action.action_type, action.track_type, False, seconds / len(actions)
                    )
                span.set_status(Status(StatusCode.ERROR, message))
                metrics.phase_finished(self.p.policy.name, phase.name, seconds)
                raise
            finally:
                TOOL_CALLS.reset(token)
            seconds = time.monotonic() - started
            if outcome.tool is not None and actions:
                self.tool_calls += 1
            for action, action_span in actions:
                action_span.set_attribute(
                    attr.ACTION_MESSAGE, f"{outcome.tool}: {action.describe()}"
                )
                if outcome.tool is not None:
                    action_span.set_attributes(
                        {attr.ACTION_TOOL: outcome.tool, attr.ACTION_TOOL_CALL: self.tool_calls}
                    )
                action_span.end()
                # Each action records its share, so the histogram's sum is the call's time.
                metrics.action_finished(
                    action.action_type, action.track_type, True, seconds / len(actions)
                )
            span.set_attributes(_phase_attributes(outcome))
            self.completed += 1
            self.changes += len(phase.actions)
            # What the file now is, on the root before this phase ends: a run killed
            # later is recorded with the changes it really made.
            if outcome.tool is not None:
                self.after = outcome.media  # probed by the phase's verification
                self.identity = outcome.identity or FileIdentity.of(self.path)
                self.size_after = self.identity.size
                root.set_attributes(self._running_after())
            else:
                root.set_attributes(
                    {attr.PHASES_COMPLETED: self.completed, attr.CHANGES_TOTAL: self.changes}
                )
            metrics.phase_finished(
                self.p.policy.name,
                phase.name,
                time.monotonic() - started,
                outcome.bytes_read,
                outcome.bytes_written,
            )
            if outcome.encoding_fps is not None and self.plan and self.plan.video_target_codec:
                metrics.transcode_finished(self.plan.video_target_codec, outcome.encoding_fps)
        return outcome

    def _running_after(self) -> dict[str, Any]:
        after, identity = self.after, self.identity
        assert after is not None and identity is not None
        return {
            attr.PHASES_COMPLETED: self.completed,
            attr.CHANGES_TOTAL: self.changes,
            attr.SIZE_AFTER: identity.size,
            attr.HASH_AFTER: identity.partial_hash,
            attr.AUDIO_AFTER: after.count(TrackType.AUDIO),
            attr.SUBTITLE_AFTER: after.count(TrackType.SUBTITLE),
            attr.ATTACHMENT_AFTER: after.count(TrackType.ATTACHMENT),
        }

    def _phase_progress(self, name: str) -> Callable[[float], None] | None:
        if self.on_progress is None:
            return None
        callback = self.on_progress
        return lambda fraction: callback(name, fraction)

    def _measure_after(self, root: Span, failed: bool) -> None:
        """After values of the file as this run left it: the last phase's verified
        result, or the untouched original. Never read back from disk after a failure —
        the file may have been changed by someone else (that is one way to fail)."""
        after = self.after or self.before
        if after is None or self.identity is None:
            return  # nothing known beyond the before values, which stand for the after ones
        changed: dict[str, Any] = {
            attr.SIZE_AFTER: self.identity.size,
            attr.HASH_AFTER: self.identity.partial_hash,
            attr.AUDIO_AFTER: after.count(TrackType.AUDIO),
            attr.SUBTITLE_AFTER: after.count(TrackType.SUBTITLE),
            attr.ATTACHMENT_AFTER: after.count(TrackType.ATTACHMENT),
        }
        self.size_after = self.identity.size
        if self.plan is not None and not failed:
            changed |= {
                attr.VIDEO_TRANSCODE_SKIPPED: self.plan.video_skip_reason is not None,
                attr.AUDIO_TRANSCODED: self.plan.audio_transcoded,
                attr.AUDIO_PRESERVED: self.plan.audio_preserved,
            }
            if self.plan.video_skip_reason:
                changed[attr.VIDEO_SKIP_REASON] = self.plan.video_skip_reason
            if self.plan.video_target_codec:
                changed[attr.VIDEO_TARGET_CODEC] = self.plan.video_target_codec
        root.set_attributes(changed)
        self.after = after
        if self.completed and self.after is not self.before:
            try:
                self.p.store.save(self.path, after, self.identity.partial_hash)
            except (RecordingError, OSError):
                if not failed:
                    raise  # the run then fails with this error, and the batch stops

    def _record_metrics(self, success: bool, seconds: float, span: SpanContext) -> None:
        before, after = self.before, self.after
        removed: dict[str, int] = {}
        if before is not None and after is not None:
            for kind in (TrackType.AUDIO, TrackType.SUBTITLE, TrackType.ATTACHMENT):
                removed[kind.value] = max(before.count(kind) - after.count(kind), 0)
        done = success and self.plan is not None
        self.p.metrics.run_finished(
            RunOutcome(
                policy=self.p.policy.name,
                success=success,
                size_before=self.size_before,
                size_after=self.size_after,
                duration_seconds=seconds,
                tracks_removed=removed,
                video_transcoded=bool(done and self.plan.video_target_codec),  # type: ignore[union-attr]
                video_skipped=bool(done and self.plan.video_skip_reason),  # type: ignore[union-attr]
                audio_transcoded=self.plan.audio_transcoded if done else 0,  # type: ignore[union-attr]
                audio_preserved=self.plan.audio_preserved if done else 0,  # type: ignore[union-attr]
                span_context=span,
            )
        )


MATROSKA_SUFFIXES = frozenset({".mkv", ".webm", ".mk3d"})
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _background() -> ThreadPoolExecutor:
    """A few threads for tool calls that run alongside another (they wait on processes)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vpo-aside")
        return _pool


def _result_or_none(future: "Future[dict[str, Any]] | None") -> dict[str, Any] | None:
    """The side call's answer; if it failed, the executor asks again and reports why."""
    if future is None:
        return None
    try:
        return future.result()
    except (VpoError, ValueError):
        return None


def resolve_file(path: Path) -> tuple[Path | None, str | None]:
    """The real file behind `path` (one file, one row, however it is reached), or why
    there is none: dangling or looping symlinks, folders, devices."""
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        if path.is_symlink():
            return None, f"is a dangling symlink (to {path_text(path.readlink())})"
        return None, "no longer exists (moved or deleted)"
    except RuntimeError:
        return None, "is a symlink loop"
    except OSError as exc:
        if exc.errno == 40:  # ELOOP, as Python 3.13 reports a loop
            return None, "is a symlink loop"
        return None, f"cannot be reached: {exc.strerror}"
    if not resolved.is_file():
        return None, "is not a regular file"
    return resolved, None


def _unreadable(path: Path, exc: OSError) -> str:
    return f"cannot read the file: {exc.strerror or exc}"


def _describe(exc: BaseException) -> str:
    """One sentence for the run's error, whatever ended it."""
    if isinstance(exc, VpoError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (keyboard interrupt)"
    if isinstance(exc, SystemExit):
        return "interrupted: the process is exiting"
    if type(exc).__name__ == "CancelledError":
        return "cancelled"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _action_attributes(action: PlannedAction) -> dict[str, Any]:
    values: dict[str, Any] = {attr.ACTION_TYPE: action.action_type, attr.ACTION_RULE: action.rule}
    if action.track_type is not None:
        values[attr.TRACK_TYPE] = action.track_type
    if action.track_index is not None:
        values[attr.TRACK_INDEX] = action.track_index
    if action.before is not None:
        values[attr.ACTION_BEFORE] = json.dumps(action.before, sort_keys=True)
    if action.after is not None:
        values[attr.ACTION_AFTER] = json.dumps(action.after, sort_keys=True)
    return values


def _phase_attributes(outcome: PhaseOutcome) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in (
        (attr.BYTES_READ, outcome.bytes_read),
        (attr.BYTES_WRITTEN, outcome.bytes_written),
        (attr.ENCODING_FPS, outcome.encoding_fps),
        (attr.ENCODING_BITRATE, outcome.encoding_bitrate),
    ):
        if value is not None:
            values[name] = value
    return values
