"""ffmpeg command lines for a phase (transcodes, and remuxes of non-Matroska files) and
the reading of its `-progress` output for the phase's fps and bitrate."""

from dataclasses import dataclass, field

from vpo.media.tools import require_tool
from vpo.media.tracks import TrackType
from vpo.policy.planner import PlannedAction, TrackState

VIDEO_ENCODERS = {"hevc": "libx265", "h264": "libx264", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
AUDIO_ENCODERS = {"aac": "aac", "ac3": "ac3", "eac3": "eac3", "opus": "libopus", "flac": "flac"}
# Matroska statistics tags (written by mkvmerge) describe the old encoding; ffmpeg would
# copy them onto a re-encoded stream, so they are cleared there.
STATISTICS_TAGS = ("BPS", "DURATION", "NUMBER_OF_BYTES", "NUMBER_OF_FRAMES")
# Container (as `vpo.media.probe.container_name` says it) → ffmpeg muxer, where they differ.
MUXERS = {
    "mkv": "matroska",
    "m4v": "mp4",
    "ts": "mpegts",
    "mpg": "mpeg",
    "wmv": "asf",
}


@dataclass
class Progress:
    """What `ffmpeg -progress pipe:1` said last."""

    frames: int = 0
    out_time_us: int = 0
    total_size: int = 0
    ended: bool = False
    values: dict[str, str] = field(default_factory=dict)

    def feed(self, line: str) -> None:
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        self.values[key] = value
        if key == "frame" and value.isdigit():
            self.frames = int(value)
        elif key == "out_time_us" and value.lstrip("-").isdigit():
            self.out_time_us = max(int(value), 0)
        elif key == "total_size" and value.isdigit():
            self.total_size = int(value)
        elif key == "progress":
            self.ended = value == "end"

    def average_fps(self, wall_seconds: float) -> float | None:
        return self.frames / wall_seconds if self.frames and wall_seconds > 0 else None

    def average_bitrate(self, output_bytes: int) -> int | None:
        """Bits per second of the output over the media time written."""
        seconds = self.out_time_us / 1e6
        return round(output_bytes * 8 / seconds) if seconds > 0 else None


def ffmpeg_args(
    source: str,
    output: str,
    container: str,
    current: dict[int, int],
    wanted: list[TrackState],
    transcodes: list[PlannedAction],
) -> list[str]:
    """Keep `wanted` in order, re-encode the tracks `transcodes` names, copy the rest."""
    settings = {
        a.track_index: a.settings | {"codec": a.after["codec"]} for a in transcodes if a.after
    }
    args = [
        require_tool("ffmpeg"),
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        "-y",
        "-i",
        f"file:{source}",
        "-map_metadata",
        "0",
        "-map_chapters",
        "0",
    ]
    per_type: dict[TrackType, int] = {}
    codec_args: list[str] = ["-c", "copy"]
    for position, ts in enumerate(wanted):
        args += ["-map", f"0:{current[ts.original_index]}"]
        if ts.kind is TrackType.ATTACHMENT:
            continue
        wish = settings.get(ts.original_index)
        if wish is not None:
            codec_args += _encoder_args(position, ts.kind, wish)
            for tag in STATISTICS_TAGS:
                for name in (tag, f"{tag}-eng"):
                    codec_args += [f"-metadata:s:{position}", f"{name}="]
        dispositions = [
            name
            for name, on in (("default", ts.track.is_default), ("forced", ts.track.is_forced))
            if on
        ]
        codec_args += [
            f"-metadata:s:{position}",
            f"language={ts.track.language}",
            f"-disposition:{position}",
            "+".join(dispositions) or "0",
        ]
        per_type[ts.kind] = per_type.get(ts.kind, 0) + 1
    muxer = MUXERS.get(container, container)
    extra = ["-movflags", "+faststart"] if muxer in ("mp4", "mov") else []
    # `file:` keeps a name like `.a:b.mkv` from being read as a protocol.
    return [
        *args,
        *codec_args,
        *extra,
        "-progress",
        "pipe:1",
        "-nostats",
        "-f",
        muxer,
        f"file:{output}",
    ]


def _encoder_args(position: int, kind: TrackType, wish: dict[str, object]) -> list[str]:
    codec = str(wish["codec"])
    if kind is TrackType.VIDEO:
        encoder = VIDEO_ENCODERS[codec]
        args = [f"-c:{position}", encoder, f"-crf:{position}", str(wish.get("crf", 23))]
        if encoder in ("libx264", "libx265"):
            args += [f"-preset:{position}", str(wish.get("preset", "medium"))]
        if encoder == "libx265":
            args += ["-x265-params", "log-level=error"]
        if encoder == "libvpx-vp9":
            args += [f"-b:{position}", "0"]  # constant quality mode
        return [*args, f"-pix_fmt:{position}", "yuv420p"]
    return [
        f"-c:{position}",
        AUDIO_ENCODERS[codec],
        f"-b:{position}",
        str(wish.get("bitrate", 192_000)),
    ]
