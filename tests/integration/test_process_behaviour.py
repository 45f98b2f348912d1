"""What `vpo process` does to real files: in-place metadata edits, HEVC transcodes and
skips, repeated runs, dry runs, and bad input."""

from pathlib import Path

import pytest

from tests.helpers import invoke, query, run_vpo
from vpo.media.probe import probe
from vpo.media.tracks import TrackType

METADATA_ONLY = """\
schema_version: 1
name: tags
config: {audio_languages: [jpn, eng]}
phases:
  - name: organize
    default_flags: {audio: preferred, subtitle: none}
    set_language: [{track_type: audio, from: und, to: jpn}]
"""
HEVC = """\
schema_version: 1
name: hevc
phases:
  - name: compress
    transcode:
      video: {to: hevc, crf: 30, preset: ultrafast, skip_if: {codec_matches: [hevc]}}
      audio: {to: aac, bitrate: 128k, preserve: [aac, flac]}
"""


def _policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _runs(db_path: Path) -> list:
    return query(db_path, "SELECT * FROM processing_stats ORDER BY processed_at")


def test_metadata_only_plan_edits_the_mkv_in_place(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    movie = library / "movie-h264-multilang.mkv"
    inode, size = movie.stat().st_ino, movie.stat().st_size
    result = invoke("--db", db_path, "process", "--policy", _policy(tmp_path, METADATA_ONLY), movie)
    assert result.exit_code == 0, result.stderr
    assert movie.stat().st_ino == inode  # changed in place: no copy, no rename
    audio = probe(movie).tracks_of(TrackType.AUDIO)
    assert [(t.language, t.is_default) for t in audio] == [
        ("eng", False),
        ("jpn", True),
        ("fre", False),
        ("jpn", False),  # und → jpn
    ]
    subtitles = probe(movie).tracks_of(TrackType.SUBTITLE)
    assert [t.is_default for t in subtitles] == [False, False, False]
    (run,) = _runs(db_path)
    assert run["total_changes"] == 3
    assert abs(run["size_after"] - size) < 4096  # only header elements were rewritten
    (phase,) = query(db_path, "SELECT * FROM performance_metrics")
    assert phase["bytes_written"] < 64 * 1024  # mkvpropedit wrote kilobytes, not the file


def test_h264_to_hevc_records_codecs_fps_and_bitrate(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    movie = library / "movie-h264-multilang.mkv"
    result = invoke("--db", db_path, "process", "--policy", _policy(tmp_path, HEVC), movie)
    assert result.exit_code == 0, result.stderr
    media = probe(movie)
    assert media.video_codec == "hevc"
    assert [t.codec for t in media.tracks_of(TrackType.AUDIO)] == ["aac", "aac", "aac", "flac"]
    (run,) = _runs(db_path)
    assert (run["video_source_codec"], run["video_target_codec"]) == ("h264", "hevc")
    assert run["video_transcode_skipped"] == 0
    assert (run["audio_tracks_transcoded"], run["audio_tracks_preserved"]) == (1, 3)  # ac3 → aac
    (phase,) = query(db_path, "SELECT * FROM performance_metrics")
    assert phase["encoding_fps"] > 0
    size = movie.stat().st_size
    assert 0 < phase["encoding_bitrate"] <= size * 8 / 1.5  # ≈ size over the 2 s of media


def test_hevc_input_is_skipped_and_left_alone(library: Path, db_path: Path, tmp_path: Path) -> None:
    anime = library / "anime-hevc.mkv"
    content = anime.read_bytes()
    result = invoke("--db", db_path, "process", "--policy", _policy(tmp_path, HEVC), anime)
    assert result.exit_code == 0, result.stderr
    assert anime.read_bytes() == content
    (run,) = _runs(db_path)
    assert (run["video_transcode_skipped"], run["video_skip_reason"]) == (1, "codec_matches")
    assert run["video_target_codec"] is None
    assert (run["audio_tracks_transcoded"], run["audio_tracks_preserved"]) == (0, 2)  # flac, aac
    assert (run["total_changes"], run["size_change"]) == (0, 0)
    assert run["hash_before"] == run["hash_after"]


def test_processing_twice_records_two_runs(library: Path, db_path: Path) -> None:
    policy = Path(__file__).parents[2] / "examples" / "policies" / "cleanup-organize.yaml"
    movie = library / "movie-h264-multilang.mkv"
    assert invoke("--db", db_path, "process", "--policy", policy, movie).exit_code == 0
    assert invoke("--db", db_path, "process", "--policy", policy, movie).exit_code == 0
    first, second = _runs(db_path)
    assert first["total_changes"] > 0 and first["id"] != second["id"]
    assert second["total_changes"] == 0 and second["success"] == 1
    assert second["size_before"] == second["size_after"] == first["size_after"]
    assert (
        query(db_path, "SELECT count(*) FROM action_results WHERE stats_id = ?", (second["id"],))[
            0
        ][0]
        == 0
    )


def test_dry_run_changes_nothing_and_records_nothing(library: Path, db_path: Path) -> None:
    policy = Path(__file__).parents[2] / "examples" / "policies" / "language-cleanup.yaml"
    before = {p: p.read_bytes() for p in library.iterdir()}
    result = invoke("--db", db_path, "process", "--policy", policy, "--dry-run", library)
    assert result.exit_code == 0
    assert {p: p.read_bytes() for p in library.iterdir()} == before
    assert not db_path.exists()
    assert "remove audio track 3 (codec aac, language fre" in result.stdout
    assert "[phases[0].filter_attachments.remove_all]" in result.stdout
    assert "clean-hevc.mkv\n  already conforms: nothing to do" in result.stdout
    assert "nothing was changed or recorded" in result.stdout


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            ("keep_audio", "keep_audoi"),
            "phases[0].keep_audoi: unknown key (did you mean 'keep_audio'?)",
        ),
        (
            ("minimum: 1", "minimum: lots"),
            "phases[0].keep_audio.minimum: Input should be a valid integer",
        ),
        (
            ("[eng, jpn, und]", "[eng, japanese, und]"),
            "phases[0].keep_audio.languages[1]: unknown language code 'japanese'",
        ),
        (
            ("phases:", "phases:\n  - name: cleanup\n    filter_attachments: {remove_all: true}"),
            "phases[1].name: duplicate phase name 'cleanup'",
        ),
    ],
    ids=["typo", "wrong type", "unknown language", "duplicate phase"],
)
def test_invalid_policies_exit_2_naming_the_field(
    library: Path, db_path: Path, tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    text = (
        Path(__file__).parents[2] / "examples" / "policies" / "language-cleanup.yaml"
    ).read_text()
    assert change[0] in text
    policy = _policy(tmp_path, text.replace(change[0], change[1], 1))
    result = run_vpo("--db", db_path, "process", "--policy", policy, library)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: invalid policy {policy}:\n")
    assert field in result.stderr
    assert not db_path.exists()


def test_missing_policy_and_missing_path(library: Path, db_path: Path, tmp_path: Path) -> None:
    policy = Path(__file__).parents[2] / "examples" / "policies" / "language-cleanup.yaml"
    no_policy = run_vpo("--db", db_path, "process", "--policy", tmp_path / "nope.yaml", library)
    assert (no_policy.returncode, no_policy.stderr.strip()) == (
        64,
        f"Error: Policy file not found: {tmp_path / 'nope.yaml'}",
    )
    no_path = run_vpo("--db", db_path, "process", "--policy", policy, tmp_path / "gone")
    assert (no_path.returncode, no_path.stderr.strip()) == (
        64,
        f"Error: Path not found: {tmp_path / 'gone'}",
    )


def test_a_file_with_no_audio(library: Path, db_path: Path) -> None:
    policy = Path(__file__).parents[2] / "examples" / "policies" / "cleanup-organize.yaml"
    silent = library / "silent-h264.mkv"
    result = invoke("--db", db_path, "process", "--policy", policy, silent)
    assert result.exit_code == 0, result.stderr
    (run,) = _runs(db_path)
    assert (run["success"], run["audio_tracks_before"], run["audio_tracks_after"]) == (1, 0, 0)
    assert probe(silent).count(TrackType.AUDIO) == 0


def test_missing_tool_is_named_before_any_file_is_touched(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    from tests.helpers import tool_dir_without

    policy = Path(__file__).parents[2] / "examples" / "policies" / "language-cleanup.yaml"
    before = {p: p.stat().st_mtime_ns for p in library.iterdir()}
    result = run_vpo(
        "--db",
        db_path,
        "process",
        "--policy",
        policy,
        library,
        env={"PATH": tool_dir_without(tmp_path, "mkvpropedit")},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: mkvpropedit is not installed; install the Debian package mkvtoolnix "
        "(sudo apt-get install mkvtoolnix)."
    )
    assert {p: p.stat().st_mtime_ns for p in library.iterdir()} == before
    assert not db_path.exists()
    assert sorted(library.iterdir()) == sorted(before)  # no temporary file either
