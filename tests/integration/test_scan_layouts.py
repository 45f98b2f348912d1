"""After `vpo scan`, the database holds exactly the tracks each sample was made with
(real ffmpeg/mkvmerge made them, real ffprobe read them)."""

from pathlib import Path

import pytest

from tests.helpers import invoke, query
from vpo.media.tracks import TrackType
from vpo.samples import LAYOUTS, SampleFile, SampleLayout


@pytest.fixture
def scanned(library: Path, db_path: Path) -> Path:
    result = invoke("--db", db_path, "scan", library)
    assert result.exit_code == 0, result.stderr
    assert f"{len(LAYOUTS)} added, 0 updated, 0 unchanged, 0 failed" in result.stdout
    return library


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_tracks_match_the_declared_layout(
    scanned: Path, db_path: Path, layout: SampleLayout
) -> None:
    (file_row,) = query(
        db_path, "SELECT * FROM files WHERE path = ?", (str(scanned / layout.filename),)
    )
    assert file_row["scan_error"] is None
    assert file_row["container"] == layout.container
    assert file_row["size_bytes"] == (scanned / layout.filename).stat().st_size
    assert 1.5 <= file_row["duration_seconds"] <= 2.5
    assert file_row["content_hash"].startswith("sha256:")

    rows = query(
        db_path, "SELECT * FROM tracks WHERE file_id = ? ORDER BY track_index", (file_row["id"],)
    )
    stored = [
        (
            r["track_type"],
            r["codec"],
            r["language"],
            r["title"],
            bool(r["is_default"]),
            bool(r["is_forced"]),
        )
        for r in rows
    ]
    declared = [
        (t.track_type.value, t.codec, t.language, t.title, t.default, t.forced)
        for t in layout.tracks
    ]
    assert stored == declared
    assert [r["track_index"] for r in rows] == list(range(len(layout.tracks)))
    attachments = sum(1 for r in rows if r["track_type"] == "attachment")
    assert attachments == layout.count(TrackType.ATTACHMENT)
    for row, track in zip(rows, layout.tracks, strict=True):
        if track.channels is not None:
            assert row["channels"] == track.channels
        if track.track_type is TrackType.VIDEO:
            assert (row["width"], row["height"]) == (320, 240)
            assert row["bitrate"] > 0


def test_generator_covers_what_the_issue_asks_for(sample_files: list[SampleFile]) -> None:
    """The layouts hold every kind of track the tests and the demo rely on."""
    video_codecs = {
        t.codec for s in sample_files for t in s.layout.tracks if t.track_type is TrackType.VIDEO
    }
    audio_codecs = {
        t.codec for s in sample_files for t in s.layout.tracks if t.track_type is TrackType.AUDIO
    }
    subtitle_codecs = {
        t.codec for s in sample_files for t in s.layout.tracks if t.track_type is TrackType.SUBTITLE
    }
    assert video_codecs == {"h264", "hevc"}
    assert audio_codecs >= {"aac", "ac3", "flac"}
    assert subtitle_codecs == {"subrip", "ass"}
    containers = {s.layout.container for s in sample_files}
    assert containers == {"mkv", "mp4"}
    assert any(s.layout.count(TrackType.AUDIO) == 0 for s in sample_files)
    mp4 = next(s for s in sample_files if s.layout.container == "mp4")
    assert mp4.layout.count(TrackType.AUDIO) == 2
    multi = max(sample_files, key=lambda s: s.layout.count(TrackType.AUDIO))
    languages = [t.language for t in multi.layout.tracks if t.track_type is TrackType.AUDIO]
    assert "und" in languages and len(set(languages)) == len(languages) >= 3
    assert any(t.forced for t in multi.layout.tracks if t.track_type is TrackType.SUBTITLE)
    assert multi.layout.count(TrackType.ATTACHMENT) >= 1
    for sample in sample_files:
        assert sample.path.stat().st_size < 2 * 1024 * 1024
