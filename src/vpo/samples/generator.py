"""Make the sample files of `layouts.py` with the real tools: ffmpeg encodes each
elementary stream once, mkvmerge assembles MKV files (languages, titles, default and
forced flags, font attachments), ffmpeg assembles MP4 files.

Files are written under a temporary name and renamed into place, so a half-made
sample never sits in the library.
"""

import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from vpo.errors import VpoError
from vpo.media.tools import require_tool
from vpo.media.tracks import TrackType
from vpo.samples.layouts import LAYOUTS, DeclaredTrack, SampleLayout

DURATION_SECONDS = 2
VIDEO_SIZE = "320x240"
TOOL_TIMEOUT_SECONDS = 120
MANIFEST_NAME = "vpo-samples.json"
FONT_DIRECTORIES = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype"),
    Path("/usr/share/fonts"),
)

_VIDEO_ENCODERS = {
    "h264": ["-c:v", "libx264", "-preset", "ultrafast"],
    "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
}
_AUDIO_ENCODERS = {"aac": "aac", "ac3": "ac3", "flac": "flac"}
_SUBTITLE_TEXT = {
    "eng": "Hello there.",
    "spa": "Hola.",
    "ger": "Guten Tag.",
    "fre": "Bonjour.",
    "jpn": "Konnichiwa.",
}
# One tone per language, so the audio tracks of a sample really differ.
_TONES = {"eng": 440, "jpn": 523, "fre": 659, "spa": 587, "ger": 698, "und": 330}


@dataclass(frozen=True)
class SampleFile:
    """A generated file and the layout it was made to have."""

    path: Path
    layout: SampleLayout


class SampleError(VpoError):
    """A tool failed while making a sample."""


def make_samples(
    directory: str | os.PathLike[str],
    count: int | None = None,
    on_file: Callable[[SampleFile], None] | None = None,
) -> list[SampleFile]:
    """Write `count` sample files (default: one per layout) into `directory`.

    Beyond one file per layout, further files are copies named `<layout>-NNN.<ext>`,
    for trying VPO on a bigger library without waiting for encoders.
    """
    require_tool("ffmpeg")
    require_tool("mkvmerge")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    wanted = len(LAYOUTS) if count is None else count
    if wanted < 0:
        raise SampleError("The number of samples cannot be negative.")
    made: list[SampleFile] = []
    with tempfile.TemporaryDirectory(prefix="vpo-samples-") as work:
        builder = _Builder(Path(work))
        for position in range(wanted):
            layout = LAYOUTS[position % len(LAYOUTS)]
            round_number = position // len(LAYOUTS)
            destination = target / layout.filename
            if round_number == 0:
                builder.build(layout, destination)
            else:
                destination = target / f"{layout.name}-{round_number + 1:03d}.{layout.container}"
                _copy_atomically(made[position % len(LAYOUTS)].path, destination)
            sample = SampleFile(destination, layout)
            made.append(sample)
            if on_file is not None:
                on_file(sample)
    _write_manifest(target, made)
    return made


def make_corrupt_samples(directory: str | os.PathLike[str], source: Path) -> dict[str, Path]:
    """Files ffprobe cannot read, for testing how VPO reports them.

    `random-bytes.mkv` is noise with a video extension; `truncated-header.mkv` keeps only
    the first 4 KiB of `source`; `truncated-tail.mkv` loses the last tenth of it (its
    header still parses, its clusters end early).
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    noise = random.Random(2).randbytes(64 * 1024)  # noqa: S311 - seeded test noise, not a secret
    files = {
        "random-bytes": (target / "random-bytes.mkv", noise),
        "truncated-header": (target / "truncated-header.mkv", data[:4096]),
        "truncated-tail": (target / "truncated-tail.mkv", data[: len(data) * 9 // 10]),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {name: path for name, (path, _content) in files.items()}


def find_font(filename: str) -> Path:
    """A font file from the system (Debian: fonts-dejavu-core) to attach."""
    for directory in FONT_DIRECTORIES:
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    for directory in FONT_DIRECTORIES:
        if directory.is_dir():
            found = sorted(directory.rglob("*.ttf"))
            if found:
                return found[0]
    raise SampleError(
        f"No font to attach ({filename}); install the Debian package fonts-dejavu-core "
        "(sudo apt-get install fonts-dejavu-core)."
    )


class _Builder:
    """Encodes each distinct stream once and assembles files from them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.ffmpeg = require_tool("ffmpeg")
        self.mkvmerge = require_tool("mkvmerge")
        self._streams: dict[tuple[object, ...], Path] = {}

    def build(self, layout: SampleLayout, destination: Path) -> None:
        partial = destination.with_name(f".{destination.name}.partial")
        try:
            if layout.container == "mkv":
                self._build_mkv(layout, partial)
            else:
                self._build_with_ffmpeg(layout, partial)
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)

    def _build_mkv(self, layout: SampleLayout, output: Path) -> None:
        args = [self.mkvmerge, "--quiet", "--output", str(output)]
        for track in layout.tracks:
            if track.track_type is TrackType.ATTACHMENT:
                args += [
                    "--attachment-mime-type",
                    "font/ttf",
                    "--attachment-name",
                    track.title or "font.ttf",
                    "--attach-file",
                    str(find_font(track.title or "")),
                ]
                continue
            args += ["--language", f"0:{track.language}"]
            if track.title:
                args += ["--track-name", f"0:{track.title}"]
            args += [
                "--default-track-flag",
                f"0:{_yes_no(track.default)}",
                "--forced-display-flag",
                f"0:{_yes_no(track.forced)}",
                str(self._stream(track)),
            ]
        _run(args, "mkvmerge", ok_codes=(0, 1))  # 1 = finished with warnings

    def _build_with_ffmpeg(self, layout: SampleLayout, output: Path) -> None:
        inputs: list[str] = []
        options: list[str] = []
        per_type: dict[TrackType, int] = {}
        for position, track in enumerate(layout.tracks):
            inputs += ["-i", str(self._stream(track))]
            type_index = per_type.get(track.track_type, 0)
            per_type[track.track_type] = type_index + 1
            spec = f"{track.track_type.value[0]}:{type_index}"
            options += [
                "-map",
                f"{position}:0",
                f"-metadata:s:{spec}",
                f"language={track.language}",
            ]
            options += [f"-disposition:{spec}", "default" if track.default else "0"]
        args = [
            self.ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-y",
            *inputs,
            *options,
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            "-f",
            layout.container,
            str(output),
        ]
        _run(args, "ffmpeg")

    def _stream(self, track: DeclaredTrack) -> Path:
        """An elementary stream file for `track`, encoded on first use."""
        key = (track.track_type, track.codec, track.language, track.channels)
        if key not in self._streams:
            path = self.work / f"stream-{len(self._streams)}"
            self._streams[key] = self._encode(track, path)
        return self._streams[key]

    def _encode(self, track: DeclaredTrack, base: Path) -> Path:
        if track.track_type is TrackType.SUBTITLE:
            return _write_subtitle(track, base)
        seconds = str(DURATION_SECONDS)
        if track.track_type is TrackType.VIDEO:
            output = base.with_suffix(".mkv")
            source = f"testsrc2=size={VIDEO_SIZE}:rate=24:duration={seconds}"
            codec_args = [*_VIDEO_ENCODERS[track.codec], "-pix_fmt", "yuv420p"]
        else:
            output = base.with_suffix(".mka")
            tone = _TONES.get(track.language, 440)
            source = f"sine=frequency={tone}:duration={seconds}:sample_rate=48000"
            codec_args = ["-ac", str(track.channels or 2), "-c:a", _AUDIO_ENCODERS[track.codec]]
        _run(
            [
                self.ffmpeg,
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                source,
                *codec_args,
                str(output),
            ],
            "ffmpeg",
        )
        return output


def _write_subtitle(track: DeclaredTrack, base: Path) -> Path:
    text = _SUBTITLE_TEXT.get(track.language, "Hello.")
    if track.codec == "subrip":
        path = base.with_suffix(".srt")
        path.write_text(f"1\n00:00:00,000 --> 00:00:01,500\n{text}\n\n", encoding="utf-8")
        return path
    path = base.with_suffix(".ass")
    path.write_text(
        "[Script Info]\nScriptType: v4.00+\nPlayResX: 320\nPlayResY: 240\n\n"
        "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic, "
        "Alignment, MarginL, MarginR, MarginV, Encoding\n"
        "Style: Default,DejaVu Sans Mono,20,&H00FFFFFF,0,0,2,10,10,10,1\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, "
        f"Effect, Text\nDialogue: 0,0:00:00.00,0:00:01.50,Default,,0,0,0,,{text}\n",
        encoding="utf-8",
    )
    return path


def _run(
    args: list[str],
    tool: str,
    ok_codes: Iterable[int] = (0,),
    timeout: float = TOOL_TIMEOUT_SECONDS,
) -> None:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SampleError(f"{tool} took longer than {timeout:.0f} s making a sample.") from exc
    if result.returncode not in tuple(ok_codes):
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {result.returncode}"
        raise SampleError(f"{tool} failed while making a sample: {reason}")


def _copy_atomically(source: Path, destination: Path) -> None:
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        shutil.copyfile(source, partial)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _write_manifest(directory: Path, samples: list[SampleFile]) -> None:
    """`vpo-samples.json`: each file with its declared layout, for people and scripts."""
    manifest = [
        {
            "file": s.path.name,
            "layout": s.layout.name,
            "description": s.layout.description,
            "tracks": [{**asdict(t), "track_type": t.track_type.value} for t in s.layout.tracks],
        }
        for s in samples
    ]
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
