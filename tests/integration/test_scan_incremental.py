"""Incremental scans: unchanged files are not probed again; a changed one is, alone."""

import os
import shutil
from pathlib import Path

from tests.helpers import invoke, query
from vpo.db import open_database
from vpo.samples import LAYOUTS
from vpo.workflow.scan import Outcome, scan_paths


class Recorder:
    """A `ScanProgress` that remembers what the scan said about each file."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, path: str, outcome: Outcome, error: str | None) -> None:
        self.outcomes[path] = outcome


def _scanned_at(db_path: Path) -> dict[str, str]:
    return {
        r["path"]: r["scanned_at"] for r in query(db_path, "SELECT path, scanned_at FROM files")
    }


def test_second_scan_probes_nothing(library: Path, db_path: Path) -> None:
    assert invoke("--db", db_path, "scan", library).exit_code == 0
    first = _scanned_at(db_path)
    result = invoke("--db", db_path, "scan", library)
    assert result.exit_code == 0
    assert f"0 added, 0 updated, {len(LAYOUTS)} unchanged, 0 failed" in result.stdout
    assert _scanned_at(db_path) == first  # no row was rewritten


def test_changing_one_file_reprobes_only_it(library: Path, db_path: Path) -> None:
    conn = open_database(db_path)
    try:
        scan_paths(conn, [library])
        first = _scanned_at(db_path)
        ids = {r["path"]: r["id"] for r in query(db_path, "SELECT id, path FROM files")}

        # Replace the HEVC sample by the content of the silent one: other size, other tracks.
        target = library / "anime-hevc.mkv"
        shutil.copyfile(library / "silent-h264.mkv", target)
        os.utime(target, (1_700_000_000, 1_700_000_000))

        recorder = Recorder()
        report = scan_paths(conn, [library], progress=recorder)
    finally:
        conn.close()

    assert (report.added, report.updated, report.unchanged, report.failed) == (
        0,
        1,
        len(LAYOUTS) - 1,
        0,
    )
    assert recorder.outcomes[str(target)] is Outcome.UPDATED
    after = _scanned_at(db_path)
    changed = {path for path in after if after[path] != first[path]}
    assert changed == {str(target)}
    (row,) = query(db_path, "SELECT * FROM files WHERE path = ?", (str(target),))
    assert row["id"] == ids[str(target)]  # same row, so its history stays attached
    assert row["size_bytes"] == (library / "silent-h264.mkv").stat().st_size
    assert row["mtime"] == 1_700_000_000
    kinds = [
        r["track_type"]
        for r in query(
            db_path,
            "SELECT track_type FROM tracks WHERE file_id = ? ORDER BY track_index",
            (row["id"],),
        )
    ]
    assert kinds == ["video", "subtitle"]


def test_touching_mtime_alone_reprobes(library: Path, db_path: Path) -> None:
    assert invoke("--db", db_path, "scan", library).exit_code == 0
    os.utime(library / "clean-hevc.mkv", (1_600_000_000, 1_600_000_000))
    result = invoke("--db", db_path, "scan", library)
    assert f"0 added, 1 updated, {len(LAYOUTS) - 1} unchanged, 0 failed" in result.stdout


def test_vanished_files_are_counted_and_kept(library: Path, db_path: Path) -> None:
    assert invoke("--db", db_path, "scan", library).exit_code == 0
    (library / "movie-mp4.mp4").unlink()
    result = invoke("--db", db_path, "scan", library)
    assert result.exit_code == 0
    assert "1 known file is no longer on disk" in result.stdout
    assert len(query(db_path, "SELECT id FROM files")) == len(LAYOUTS)


def test_db_option_after_the_command_and_environment(library: Path, tmp_path: Path) -> None:
    after = tmp_path / "after.db"
    env_db = tmp_path / "env.db"
    assert invoke("scan", "--db", after, library).exit_code == 0
    assert invoke("scan", library, env={"VPO_DB": str(env_db)}).exit_code == 0
    assert len(query(after, "SELECT id FROM files")) == len(LAYOUTS)
    assert len(query(env_db, "SELECT id FROM files")) == len(LAYOUTS)
