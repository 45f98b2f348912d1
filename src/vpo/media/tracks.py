"""The track model: what VPO knows about one stream of a video file.

Attachments (fonts, cover art) are tracks too, of type `attachment`, so a policy can
count and remove them like any other track.
"""

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class TrackType(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    SUBTITLE = "subtitle"
    ATTACHMENT = "attachment"


@dataclass(frozen=True)
class Track:
    """One stream as ffprobe numbers it (`index` is ffprobe's stream index)."""

    index: int
    track_type: TrackType
    codec: str | None
    language: str = "und"
    title: str | None = None
    is_default: bool = False
    is_forced: bool = False
    channels: int | None = None
    width: int | None = None
    height: int | None = None
    bitrate: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["track_type"] = str(self.track_type)
        return data


@dataclass(frozen=True)
class MediaInfo:
    """A probed file: its container, duration and tracks."""

    path: str
    container: str
    duration_seconds: float | None
    size_bytes: int
    tracks: tuple[Track, ...] = field(default_factory=tuple)

    def tracks_of(self, track_type: TrackType) -> list[Track]:
        return [t for t in self.tracks if t.track_type == track_type]

    def count(self, track_type: TrackType) -> int:
        return len(self.tracks_of(track_type))

    @property
    def video_codec(self) -> str | None:
        """Codec of the first video track, the one a transcode policy looks at."""
        videos = self.tracks_of(TrackType.VIDEO)
        return videos[0].codec if videos else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "container": self.container,
            "duration_seconds": self.duration_seconds,
            "size_bytes": self.size_bytes,
            "tracks": [t.to_dict() for t in self.tracks],
        }
