"""The policy format (docs/policies.md) as pydantic models.

Strict on purpose: an unknown key is an error (a typo must not silently do nothing),
languages must be ISO 639 codes (stored in their canonical ISO 639-2/B form, so `fra`
and `fre` are one language), and phase names are unique because they are recorded.
"""

import re
import reprlib
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from vpo.media.languages import lookup_language

TrackKind = Literal["video", "audio", "subtitle"]
VideoCodec = Literal["hevc", "h264", "av1", "vp9"]
AudioCodec = Literal["aac", "ac3", "eac3", "opus", "flac"]
ResolutionClass = Literal["480p", "576p", "720p", "1080p", "1440p", "2160p"]

SHOWN_CHARS = 60  # of a value quoted back in a message
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4


def shown(value: object) -> str:
    """`value` as a message quotes it: a repr of at most SHOWN_CHARS characters.

    reprlib stops after a few items and levels, so a huge value (a hostile policy's
    expanded aliases) costs nothing to show; a whole repr of it could exhaust memory.
    """
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


# Codec names people write, as ffprobe reports them.
CODEC_ALIASES = {"h265": "hevc", "x265": "hevc", "avc": "h264", "x264": "h264", "mpeg4": "mpeg4"}


def _language(value: str) -> str:
    code = lookup_language(value) if isinstance(value, str) else None
    if code is None or len(value.strip()) not in (2, 3):
        raise ValueError(
            f"unknown language code {shown(value)} (use ISO 639 codes like eng, jpn, fre)"
        )
    return code


def _codec(value: str) -> str:
    name = str(value).strip().lower()
    return CODEC_ALIASES.get(name, name)


_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*(?:bps|b/s)?\s*$")


MAX_BITRATE = 100_000_000_000  # 100G: anything above is a typo, and would overflow later


def _bitrate(value: object) -> int:
    """`192k`, `8M`, `8000000` → bits per second."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a bitrate like 192k or 8M")
    if isinstance(value, str):
        match = _BITRATE.match(value)
        if not match:
            raise ValueError(f"{shown(value)} is not a bitrate like 192k or 8M")
        unit = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}[match.group(2).lower()]
        value = float(match.group(1)) * unit
    if not 0 < value <= MAX_BITRATE or int(value) == 0:  # also refuses NaN and infinity
        raise ValueError("a bitrate must be positive and at most 100G")
    return int(value)


Language = Annotated[str, AfterValidator(_language)]
Codec = Annotated[str, AfterValidator(_codec)]
Bitrate = Annotated[int, BeforeValidator(_bitrate)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KeepAudio(_Strict):
    languages: list[Language] = Field(min_length=1)
    minimum: int = Field(default=1, ge=0)


class KeepSubtitles(_Strict):
    languages: list[Language] = Field(default_factory=list)
    preserve_forced: bool = False
    remove_all: bool = False

    @model_validator(mode="after")
    def _says_what_to_keep(self) -> "KeepSubtitles":
        if not self.remove_all and not self.languages:
            raise ValueError("give languages to keep, or remove_all: true")
        return self


class FilterAttachments(_Strict):
    remove_all: bool = False


class DefaultFlags(_Strict):
    audio: Literal["preferred", "first", "keep"] = "keep"
    subtitle: Literal["none", "preferred", "forced", "keep"] = "keep"


class SetLanguage(_Strict):
    track_type: TrackKind
    from_: Language = Field(alias="from")
    to: Language


class SkipIf(_Strict):
    codec_matches: list[Codec] = Field(default_factory=list)
    resolution_within: ResolutionClass | None = None
    bitrate_under: Bitrate | None = None


MAX_X26X_CRF = 51


class VideoTranscode(_Strict):
    to: VideoCodec
    crf: int = Field(default=23, ge=0, le=63)
    preset: Literal[
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
    ] = "medium"
    skip_if: SkipIf | None = None

    @model_validator(mode="after")
    def _crf_in_the_encoders_range(self) -> "VideoTranscode":
        """x264 and x265 stop at 51: a higher crf would fail only inside ffmpeg, mid-batch."""
        if self.to in ("hevc", "h264") and self.crf > MAX_X26X_CRF:
            raise ValueError(f"crf {self.crf} is out of range for {self.to} (0 to {MAX_X26X_CRF})")
        return self


class AudioTranscode(_Strict):
    to: AudioCodec
    bitrate: Bitrate = 192_000
    preserve: list[Codec] = Field(default_factory=list)


class Transcode(_Strict):
    video: VideoTranscode | None = None
    audio: AudioTranscode | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> "Transcode":
        if self.video is None and self.audio is None:
            raise ValueError("give video, audio or both")
        return self


OPERATIONS = (
    "keep_audio",
    "keep_subtitles",
    "filter_attachments",
    "track_order",
    "default_flags",
    "set_language",
    "transcode",
)


class Phase(_Strict):
    name: str = Field(min_length=1, max_length=100)
    keep_audio: KeepAudio | None = None
    keep_subtitles: KeepSubtitles | None = None
    filter_attachments: FilterAttachments | None = None
    track_order: list[TrackKind] | None = None
    default_flags: DefaultFlags | None = None
    set_language: list[SetLanguage] = Field(default_factory=list)
    transcode: Transcode | None = None

    @model_validator(mode="after")
    def _does_something(self) -> "Phase":
        if not any(getattr(self, op) for op in OPERATIONS):
            raise ValueError(f"a phase needs at least one of: {', '.join(OPERATIONS)}")
        if self.track_order is not None and len(set(self.track_order)) != len(self.track_order):
            raise ValueError("track_order lists a track type twice")
        return self


class Config(_Strict):
    audio_languages: list[Language] = Field(default_factory=list)
    subtitle_languages: list[Language] = Field(default_factory=list)
    on_error: Literal["skip", "fail"] = "skip"


class Policy(_Strict):
    schema_version: Literal[1]
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    config: Config = Field(default_factory=Config)
    phases: list[Phase] = Field(min_length=1)

    @field_validator("phases")
    @classmethod
    def _unique_phase_names(cls, phases: list[Phase]) -> list[Phase]:
        problem = duplicate_phase(phase.name for phase in phases)
        if problem is not None:
            raise ValueError(problem[1])
        return phases


def duplicate_phase(names: Iterable[object]) -> tuple[int, str] | None:
    """(position, sentence) of the first phase whose name was used before, or None.

    Only text names are compared: a list or mapping given as a name is not hashable, and
    validation reports it as that phase's wrong `name`.
    """
    seen: dict[str, int] = {}
    for position, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in seen:
            return position, f"duplicate phase name {shown(name)} (also phases[{seen[name]}].name)"
        seen[name] = position
    return None
