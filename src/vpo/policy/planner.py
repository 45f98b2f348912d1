"""The planner: (a file's tracks, a policy) → the ordered actions of each phase.

Phases apply in order, each to the tracks the previous one left, so the planner keeps
a running state of the file's tracks. Every action names the track it touches by its
index before the run, its before and after state, and the policy rule that caused it.
A file that already conforms gets a plan with no actions.
"""

from dataclasses import dataclass, field, replace
from typing import Any

from vpo.media.tracks import MediaInfo, Track, TrackType
from vpo.policy.schema import (
    AudioTranscode,
    DefaultFlags,
    Phase,
    Policy,
    SkipIf,
    VideoTranscode,
)

STRUCTURAL = frozenset({"remove", "reorder", "transcode"})
RESOLUTION_LIMITS = {  # class → (max width, max height)
    "480p": (854, 480),
    "576p": (1024, 576),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "1440p": (2560, 1440),
    "2160p": (3840, 2160),
}


@dataclass(frozen=True)
class TrackState:
    """A track as the plan sees it: its index before the run and its current properties."""

    original_index: int
    track: Track

    @property
    def kind(self) -> TrackType:
        return self.track.track_type


@dataclass(frozen=True)
class PlannedAction:
    action_type: str
    track_type: str | None
    track_index: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    rule: str
    settings: dict[str, Any] = field(default_factory=dict)  # transcode parameters

    def describe(self) -> str:
        track = f"{self.track_type} track {self.track_index}" if self.track_type else "file"
        change = ""
        if self.before is not None and self.after is not None:
            parts = []
            for key, new in self.after.items():
                old = self.before.get(key)
                if old == new:
                    continue
                if isinstance(new, bool):
                    parts.append(f"{_word(key, bool(old))} → {_word(key, new)}")
                elif old is None:  # a setting the track had no value for: crf, preset
                    parts.append(_word(key, new))
                else:
                    parts.append(f"{key} {old} → {new}")
            change = " " + ", ".join(parts)
        elif self.before is not None:
            shown = [
                _word(k, v) for k, v in self.before.items() if v is not None and v is not False
            ]
            change = " (" + ", ".join(shown) + ")"
        return f"{self.action_type} {track}{change}  [{self.rule}]"


def _word(key: str, value: Any) -> str:
    """A state value as a person reads it: a flag as `default` / `not default`."""
    if isinstance(value, bool):
        return key if value else f"not {key}"
    return f"{key} {value}"


@dataclass(frozen=True)
class PhasePlan:
    name: str
    actions: tuple[PlannedAction, ...]
    tracks_after: tuple[TrackState, ...]  # in output order

    @property
    def structural(self) -> bool:
        """Whether the phase must write a new file (remux or transcode)."""
        return any(a.action_type in STRUCTURAL for a in self.actions)

    @property
    def transcodes(self) -> bool:
        return any(a.action_type == "transcode" for a in self.actions)


@dataclass(frozen=True)
class Plan:
    phases: tuple[PhasePlan, ...]
    video_skip_reason: str | None = None
    video_target_codec: str | None = None
    audio_transcoded: int = 0
    audio_preserved: int = 0

    @property
    def actions(self) -> list[PlannedAction]:
        return [a for p in self.phases for a in p.actions]

    @property
    def empty(self) -> bool:
        return not self.actions


def plan(media: MediaInfo, policy: Policy) -> Plan:
    """The whole plan of `policy` for the file `media` describes."""
    state = [TrackState(t.index, t) for t in media.tracks]
    phases = []
    summary: dict[str, Any] = {"skip": None, "target": None, "audio_t": 0, "audio_p": 0}
    for position, phase in enumerate(policy.phases):
        planner = _PhasePlanner(policy, phase, f"phases[{position}]", state, summary)
        state = planner.run()
        phases.append(PhasePlan(phase.name, tuple(planner.actions), tuple(state)))
    return Plan(
        phases=tuple(phases),
        video_skip_reason=summary["skip"],
        video_target_codec=summary["target"],
        audio_transcoded=summary["audio_t"],
        audio_preserved=summary["audio_p"],
    )


class _PhasePlanner:
    """Applies one phase's operations, in the order docs/policies.md gives, to the running state."""

    def __init__(
        self,
        policy: Policy,
        phase: Phase,
        where: str,
        state: list[TrackState],
        summary: dict[str, Any],
    ) -> None:
        self.policy = policy
        self.phase = phase
        self.where = where
        self.state = list(state)
        self.summary = summary
        self.actions: list[PlannedAction] = []

    def run(self) -> list[TrackState]:
        phase = self.phase
        if phase.keep_audio is not None:
            self._keep_audio(phase.keep_audio.languages, phase.keep_audio.minimum)
        if phase.keep_subtitles is not None:
            self._keep_subtitles()
        if phase.filter_attachments is not None and phase.filter_attachments.remove_all:
            for ts in self._of(TrackType.ATTACHMENT):
                self._remove(ts, f"{self.where}.filter_attachments.remove_all")
        if phase.track_order is not None:
            self._reorder(phase.track_order)
        if phase.default_flags is not None:
            self._default_flags(phase.default_flags)
        for number, rule in enumerate(phase.set_language):
            for ts in self._of(TrackType(rule.track_type)):
                if ts.track.language == rule.from_:
                    self._change(
                        ts,
                        "set_language",
                        {"language": rule.to},
                        f"{self.where}.set_language[{number}]",
                    )
        if phase.transcode is not None:
            if phase.transcode.video is not None:
                self._transcode_video(phase.transcode.video)
            if phase.transcode.audio is not None:
                self._transcode_audio(phase.transcode.audio)
        return self.state

    # -- helpers -----------------------------------------------------------------------

    def _of(self, kind: TrackType) -> list[TrackState]:
        return [ts for ts in self.state if ts.kind == kind]

    def _add(
        self,
        action_type: str,
        ts: TrackState,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        rule: str,
        **settings: Any,
    ) -> None:
        self.actions.append(
            PlannedAction(
                action_type, ts.kind.value, ts.original_index, before, after, rule, settings
            )
        )

    def _remove(self, ts: TrackState, rule: str) -> None:
        self._add("remove", ts, _describe(ts.track), None, rule)
        self.state.remove(ts)

    def _change(self, ts: TrackState, action_type: str, values: dict[str, Any], rule: str) -> None:
        names = {"language": "language", "default": "is_default", "forced": "is_forced"}
        before = {k: getattr(ts.track, names[k]) for k in values}
        if before == values:
            return
        self._add(action_type, ts, before, dict(values), rule)
        updated = replace(ts, track=replace(ts.track, **{names[k]: v for k, v in values.items()}))
        self.state[self.state.index(ts)] = updated

    # -- operations --------------------------------------------------------------------

    def _keep_audio(self, languages: list[str], minimum: int) -> None:
        audio = self._of(TrackType.AUDIO)
        doomed = [ts for ts in audio if ts.track.language not in languages]
        kept = len(audio) - len(doomed)
        while kept < minimum and doomed:  # never fewer than minimum: keep the first ones
            doomed.pop(0)
            kept += 1
        for ts in doomed:
            self._remove(ts, f"{self.where}.keep_audio.languages")

    def _keep_subtitles(self) -> None:
        rule = self.phase.keep_subtitles
        assert rule is not None
        for ts in self._of(TrackType.SUBTITLE):
            if rule.preserve_forced and ts.track.is_forced:
                continue
            if rule.remove_all:
                self._remove(ts, f"{self.where}.keep_subtitles.remove_all")
            elif ts.track.language not in rule.languages:
                self._remove(ts, f"{self.where}.keep_subtitles.languages")

    def _reorder(self, order: list[str]) -> None:
        preferred = {
            TrackType.AUDIO: self.policy.config.audio_languages,
            TrackType.SUBTITLE: self.policy.config.subtitle_languages,
        }

        def key(item: tuple[int, TrackState]) -> tuple[int, int, int, int]:
            position, ts = item
            kind = ts.kind.value
            group = order.index(kind) if kind in order else len(order)
            # Types left out of the list follow the listed ones, still each in its own
            # group (video, audio, subtitle), so language ranks never interleave them.
            unlisted = _TYPE_ORDER.index(ts.kind) if kind not in order else 0
            if ts.kind is TrackType.ATTACHMENT:
                group = len(order) + 1  # attachments are not tracks: always last
            languages = preferred.get(ts.kind, [])
            rank = (
                languages.index(ts.track.language)
                if ts.track.language in languages
                else len(languages)
            )
            return group, unlisted, rank, position

        new_order = [ts for _pos, ts in sorted(enumerate(self.state), key=key)]
        for new_position, ts in enumerate(new_order):
            old_position = self.state.index(ts)
            if old_position != new_position and ts.kind is not TrackType.ATTACHMENT:
                self._add(
                    "reorder",
                    ts,
                    {"position": old_position},
                    {"position": new_position},
                    f"{self.where}.track_order",
                )
        self.state = new_order

    def _default_flags(self, flags: DefaultFlags) -> None:
        config = self.policy.config
        if flags.audio != "keep":
            audio = self._of(TrackType.AUDIO)
            chosen = audio[0] if audio else None
            if flags.audio == "preferred":
                chosen = _preferred(audio, config.audio_languages) or chosen
            self._set_defaults(audio, chosen, f"{self.where}.default_flags.audio")
        if flags.subtitle != "keep":
            subtitles = self._of(TrackType.SUBTITLE)
            chosen = None
            if flags.subtitle == "preferred":
                chosen = _preferred(subtitles, config.subtitle_languages)
            elif flags.subtitle == "forced":
                chosen = next((ts for ts in subtitles if ts.track.is_forced), None)
            self._set_defaults(subtitles, chosen, f"{self.where}.default_flags.subtitle")

    def _set_defaults(self, tracks: list[TrackState], chosen: TrackState | None, rule: str) -> None:
        for ts in tracks:
            wanted = ts is chosen
            action = "set_default" if wanted else "clear_default"
            self._change(ts, action, {"default": wanted}, rule)

    def _transcode_video(self, rule: VideoTranscode) -> None:
        videos = self._of(TrackType.VIDEO)
        if not videos:
            return
        first = videos[0]
        reason = skip_reason(first.track, rule)
        if reason is not None:
            self.summary["skip"] = reason
            return
        self.summary["skip"] = None
        self.summary["target"] = rule.to
        for ts in videos:
            self._transcode(
                ts, rule.to, f"{self.where}.transcode.video", crf=rule.crf, preset=rule.preset
            )

    def _transcode_audio(self, rule: AudioTranscode) -> None:
        for ts in self._of(TrackType.AUDIO):
            if ts.track.codec in rule.preserve or ts.track.codec == rule.to:
                self.summary["audio_p"] += 1
                continue
            self.summary["audio_t"] += 1
            self._transcode(ts, rule.to, f"{self.where}.transcode.audio", bitrate=rule.bitrate)

    def _transcode(self, ts: TrackState, codec: str, rule: str, **settings: Any) -> None:
        before = {"codec": ts.track.codec}
        self._add("transcode", ts, before, {"codec": codec, **settings}, rule, **settings)
        updated = replace(ts, track=replace(ts.track, codec=codec, bitrate=None))
        self.state[self.state.index(ts)] = updated


def skip_reason(video: Track, rule: VideoTranscode) -> str | None:
    """The first skip condition that holds for `video`, or None to transcode it."""
    conditions: SkipIf = rule.skip_if or SkipIf()
    if video.codec in conditions.codec_matches or video.codec == rule.to:
        return "codec_matches"
    if conditions.resolution_within is not None and video.width and video.height:
        max_w, max_h = RESOLUTION_LIMITS[conditions.resolution_within]
        if video.width <= max_w and video.height <= max_h:
            return "resolution_within"
    under = conditions.bitrate_under
    if under is not None and video.bitrate is not None and video.bitrate < under:
        return "bitrate_under"
    return None


def _preferred(tracks: list[TrackState], languages: list[str]) -> TrackState | None:
    for language in languages:
        for ts in tracks:
            if ts.track.language == language:
                return ts
    return None


_TYPE_ORDER = (TrackType.VIDEO, TrackType.AUDIO, TrackType.SUBTITLE, TrackType.ATTACHMENT)


def _describe(track: Track) -> dict[str, Any]:
    state: dict[str, Any] = {"codec": track.codec, "language": track.language}
    if track.title:
        state["title"] = track.title
    if track.track_type is not TrackType.ATTACHMENT:
        state["default"] = track.is_default
        state["forced"] = track.is_forced
    if track.channels:
        state["channels"] = track.channels
    return state
