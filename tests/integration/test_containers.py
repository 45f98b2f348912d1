"""Containers beyond MKV and MP4 are remuxed by ffmpeg with the right muxer."""

import subprocess
from pathlib import Path

from tests.helpers import invoke, query
from vpo.media.probe import probe
from vpo.media.tracks import TrackType
from vpo.samples import SampleFile

KEEP_ENGLISH = """\
schema_version: 1
name: english
phases:
  - name: clean
    keep_audio: {languages: [eng]}
"""


def test_an_mpeg_ts_file_is_remuxed(
    tmp_path: Path, db_path: Path, sample_files: list[SampleFile]
) -> None:
    """`ts` is not an ffmpeg muxer name (`mpegts` is): the remux must still work."""
    (mp4,) = [s.path for s in sample_files if s.path.name == "movie-mp4.mp4"]
    ts = tmp_path / "movie.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(mp4), "-map", "0", "-c", "copy", str(ts)],
        check=True,
    )
    assert probe(ts).count(TrackType.AUDIO) == 2
    policy = tmp_path / "english.yaml"
    policy.write_text(KEEP_ENGLISH)
    result = invoke("--db", db_path, "process", "--policy", policy, ts)
    assert result.exit_code == 0, result.stdout + result.stderr
    after = probe(ts)
    assert after.container == "ts"
    assert [t.language for t in after.tracks_of(TrackType.AUDIO)] == ["eng"]
    (run,) = query(db_path, "SELECT success, audio_tracks_removed FROM processing_stats")
    assert (run["success"], run["audio_tracks_removed"]) == (1, 1)
