"""One large, high-bitrate MKV: for what only shows on big files (the quick probe of
files above 64 MiB, in-place edits against a full remux in the benchmarks).

Noisy 720p H.264 at ~36 MB/s of media compresses badly on purpose, so a few seconds make
a file of the wanted size quickly. It is encoded by ffmpeg and then muxed by mkvmerge,
as most MKVs in a library are (cues and seek head where mkvmerge puts them).
"""

from dataclasses import dataclass
from pathlib import Path

from vpo.media.tools import require_tool
from vpo.samples.generator import _run

BYTES_PER_SECOND = 35.7e6  # of the video below, measured


@dataclass(frozen=True)
class LargeAudio:
    codec: str  # an ffmpeg encoder: aac, ac3, flac
    channels: int
    language: str
    default: bool = False


def make_large_mkv(
    destination: Path,
    seconds: float,
    audio: tuple[LargeAudio, ...] = (
        LargeAudio("aac", 2, "eng", True),
        LargeAudio("aac", 2, "und"),
    ),
) -> Path:
    """Write the file (about `seconds` times 36 MB) and return its path."""
    ffmpeg, mkvmerge = require_tool("ffmpeg"), require_tool("mkvmerge")
    encoded = destination.with_name(f".{destination.name}.encoded.mkv")
    args = [ffmpeg, "-v", "error", "-y", "-f", "lavfi"]
    args += ["-i", "testsrc2=size=1280x720:rate=24,noise=alls=60:allf=t"]
    for i, _ in enumerate(audio):
        args += ["-f", "lavfi", "-i", f"sine=frequency={440 + 83 * i}:sample_rate=48000"]
    args += ["-t", f"{seconds:g}"]
    for i in range(len(audio) + 1):
        args += ["-map", str(i)]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "8"]
    for i, track in enumerate(audio):
        args += [f"-c:a:{i}", track.codec, f"-ac:a:{i}", str(track.channels)]
        args += [f"-metadata:s:a:{i}", f"language={track.language}"]
        args += [f"-disposition:a:{i}", "default" if track.default else "0"]
    timeout = 120 + seconds * 4
    try:
        _run([*args, str(encoded)], "ffmpeg", timeout=timeout)
        _run([mkvmerge, "-q", "-o", str(destination), str(encoded)], "mkvmerge", (0, 1), timeout)
    finally:
        encoded.unlink(missing_ok=True)
    return destination


def seconds_for(gigabytes: float) -> int:
    """How many seconds of the video above make about `gigabytes` GB."""
    return max(1, round(gigabytes * 1e9 / BYTES_PER_SECOND))
