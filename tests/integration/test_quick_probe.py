"""Large files are probed with a small probe size; everything a policy or the library
reads must equal a full probe (only an audio bitrate that ffprobe would compute from
packets, absent from the headers, may be missing)."""

import subprocess
from dataclasses import replace
from pathlib import Path

from vpo.media.probe import QUICK_PROBE_MIN_BYTES, _run_ffprobe, probe
from vpo.samples.large import LargeAudio, make_large_mkv


def test_quick_probe_of_a_large_mkv_equals_the_full_probe(tmp_path: Path) -> None:
    audio = (LargeAudio("ac3", 6, "ger"),)
    remuxed = make_large_mkv(tmp_path / "remuxed.mkv", 3, audio)  # muxed by mkvmerge
    big = tmp_path / "big.mkv"  # and as ffmpeg writes it
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(remuxed), "-map", "0", "-c", "copy", str(big)],
        check=True,
    )
    for path in (big, remuxed):
        assert path.stat().st_size > QUICK_PROBE_MIN_BYTES
        quick, full = probe(path), _run_ffprobe(path.resolve(), 60, [])
        assert (quick.container, quick.duration_seconds, quick.size_bytes) == (
            full.container,
            full.duration_seconds,
            full.size_bytes,
        )
        for fast, slow in zip(quick.tracks, full.tracks, strict=True):
            if fast.track_type.value == "audio":
                assert replace(fast, bitrate=None) == replace(slow, bitrate=None)
                assert fast.bitrate in (None, slow.bitrate)
            else:
                assert fast == slow
        assert [(t.codec, t.width, t.channels, t.language) for t in quick.tracks] == [
            ("h264", 1280, None, "und"),
            ("ac3", None, 6, "ger"),
        ]
