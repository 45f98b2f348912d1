"""What each sample file must contain, declared up front so tests can compare.

Codec names are ffprobe's (`h264`, `hevc`, `aac`, `ac3`, `flac`, `subrip`, `ass`,
`ttf`); languages are the canonical ISO 639-2 codes VPO stores.
"""

from dataclasses import dataclass

from vpo.media.tracks import TrackType

FONT_SANS_MONO = "DejaVuSansMono.ttf"
FONT_SERIF = "DejaVuSerif.ttf"


@dataclass(frozen=True)
class DeclaredTrack:
    """One track a sample must have, in file order."""

    track_type: TrackType
    codec: str
    language: str = "und"
    title: str | None = None
    default: bool = False
    forced: bool = False
    channels: int | None = None


@dataclass(frozen=True)
class SampleLayout:
    """A sample file: its name, container and tracks (attachments last, as mkvmerge writes)."""

    name: str
    container: str
    tracks: tuple[DeclaredTrack, ...]
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.container}"

    def count(self, track_type: TrackType) -> int:
        return sum(1 for t in self.tracks if t.track_type == track_type)


def _video(codec: str) -> DeclaredTrack:
    return DeclaredTrack(TrackType.VIDEO, codec, default=True)


def _font(filename: str) -> DeclaredTrack:
    return DeclaredTrack(TrackType.ATTACHMENT, "ttf", title=filename)


A, S = TrackType.AUDIO, TrackType.SUBTITLE

LAYOUTS: tuple[SampleLayout, ...] = (
    SampleLayout(
        name="movie-h264-multilang",
        container="mkv",
        description="H.264, four audio languages (one und), SRT + forced ASS subtitles, two fonts",
        tracks=(
            _video("h264"),
            DeclaredTrack(A, "aac", "eng", "English", default=True, channels=2),
            DeclaredTrack(A, "ac3", "jpn", "Japanese 5.1", channels=6),
            DeclaredTrack(A, "aac", "fre", "French", channels=2),
            DeclaredTrack(A, "flac", "und", "Commentary", channels=2),
            DeclaredTrack(S, "subrip", "eng", "English"),
            DeclaredTrack(S, "subrip", "spa", "Spanish"),
            DeclaredTrack(S, "ass", "eng", "Signs", forced=True),
            _font(FONT_SANS_MONO),
            _font(FONT_SERIF),
        ),
    ),
    SampleLayout(
        name="anime-hevc",
        container="mkv",
        description="HEVC, Japanese FLAC + English AAC, ASS + German SRT subtitles, one font",
        tracks=(
            _video("hevc"),
            DeclaredTrack(A, "flac", "jpn", "Japanese", default=True, channels=2),
            DeclaredTrack(A, "aac", "eng", "English dub", channels=2),
            DeclaredTrack(S, "ass", "eng", "Full subtitles", default=True),
            DeclaredTrack(S, "subrip", "ger", "Deutsch", forced=True),
            _font(FONT_SANS_MONO),
        ),
    ),
    SampleLayout(
        name="movie-mp4",
        container="mp4",
        description="MP4, H.264 with English and Spanish AAC audio",
        tracks=(
            _video("h264"),
            DeclaredTrack(A, "aac", "eng", default=True, channels=2),
            DeclaredTrack(A, "aac", "spa", channels=2),
        ),
    ),
    SampleLayout(
        name="silent-h264",
        container="mkv",
        description="H.264 with no audio and one English SRT subtitle",
        tracks=(
            _video("h264"),
            DeclaredTrack(S, "subrip", "eng", "English", default=True),
        ),
    ),
    SampleLayout(
        name="clean-hevc",
        container="mkv",
        description="HEVC with one English AC3 track: already tidy",
        tracks=(
            _video("hevc"),
            DeclaredTrack(A, "ac3", "eng", "English 5.1", default=True, channels=6),
        ),
    ),
)
