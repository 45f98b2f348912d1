"""Bad input to `vpo scan`: unreadable files are recorded and the scan goes on; a missing
path or a missing ffprobe is one sentence and the right exit code."""

from pathlib import Path

from tests.helpers import invoke, query, run_vpo, tool_dir_without
from vpo.samples import LAYOUTS, SampleFile, make_corrupt_samples


def test_corrupt_files_are_recorded_and_the_scan_goes_on(
    library: Path, db_path: Path, sample_files: list[SampleFile]
) -> None:
    biggest = max(sample_files, key=lambda s: s.path.stat().st_size)
    corrupt = make_corrupt_samples(library / "broken", biggest.path)

    result = invoke("--db", db_path, "scan", library)

    assert result.exit_code == 0, result.stderr
    assert f"{len(LAYOUTS)} added, 0 updated, 0 unchanged, 3 failed" in result.stdout
    for name, path in corrupt.items():
        (row,) = query(db_path, "SELECT * FROM files WHERE path = ?", (str(path),))
        assert row["scan_error"], name
        assert row["size_bytes"] == path.stat().st_size
        assert row["content_hash"].startswith("sha256:")
        assert query(db_path, "SELECT * FROM tracks WHERE file_id = ?", (row["id"],)) == []
        assert f"failed: {path}: " in result.stdout
    errors = {
        name: query(db_path, "SELECT scan_error FROM files WHERE path = ?", (str(p),))[0][0]
        for name, p in corrupt.items()
    }
    assert "Invalid data found" in errors["random-bytes"]
    assert "truncated" in errors["truncated-tail"]
    good = query(db_path, "SELECT count(*) FROM files WHERE scan_error IS NULL")[0][0]
    assert good == len(LAYOUTS)


def test_a_file_that_is_not_a_video(tmp_path: Path, db_path: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("these are my notes, not a movie\n")
    result = invoke("--db", db_path, "scan", notes)
    assert result.exit_code == 0
    assert "0 added, 0 updated, 0 unchanged, 1 failed" in result.stdout
    (row,) = query(db_path, "SELECT scan_error FROM files")
    assert "ffprobe cannot read" in row["scan_error"]


def test_a_folder_without_videos(tmp_path: Path, db_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("hello")
    result = invoke("--db", db_path, "scan", empty)
    assert result.exit_code == 0
    assert "Scanned 0 files: 0 added, 0 updated, 0 unchanged, 0 failed." in result.stdout
    assert "No video files found" in result.stdout
    assert query(db_path, "SELECT count(*) FROM files")[0][0] == 0


def test_a_path_that_does_not_exist(tmp_path: Path, db_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = run_vpo("--db", db_path, "scan", missing)
    assert result.returncode == 64
    assert result.stderr.strip() == f"Error: Path not found: {missing}"
    assert result.stdout == ""


def test_missing_ffprobe_names_the_package(library: Path, db_path: Path, tmp_path: Path) -> None:
    result = run_vpo(
        "--db", db_path, "scan", library, env={"PATH": tool_dir_without(tmp_path, "ffprobe")}
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: ffprobe is not installed; install the Debian package ffmpeg "
        "(sudo apt-get install ffmpeg)."
    )
    assert not db_path.exists()  # nothing was touched


def test_plain_progress_lines_when_not_a_terminal(library: Path, db_path: Path) -> None:
    result = run_vpo("--db", db_path, "scan", library)
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == len(LAYOUTS)
    assert lines[-1].startswith(f"[{len(LAYOUTS)}/{len(LAYOUTS)}] added ")
