"""Schema versions: an older database is upgraded keeping every row; a newer one is
refused and left byte-for-byte as it was."""

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import query, run_vpo
from vpo.db import SCHEMA_VERSION, open_database
from vpo.db.migrations import migrate
from vpo.errors import DatabaseError

STATS_COLUMNS = {
    "processing_stats": [
        "id",
        "file_id",
        "processed_at",
        "policy_name",
        "size_before",
        "size_after",
        "size_change",
        "audio_tracks_before",
        "subtitle_tracks_before",
        "attachments_before",
        "audio_tracks_after",
        "subtitle_tracks_after",
        "attachments_after",
        "audio_tracks_removed",
        "subtitle_tracks_removed",
        "attachments_removed",
        "duration_seconds",
        "phases_completed",
        "phases_total",
        "total_changes",
        "video_source_codec",
        "video_target_codec",
        "video_transcode_skipped",
        "video_skip_reason",
        "audio_tracks_transcoded",
        "audio_tracks_preserved",
        "hash_before",
        "hash_after",
        "success",
        "error_message",
        "trace_id",
    ],
    "action_results": [
        "id",
        "stats_id",
        "action_type",
        "track_type",
        "track_index",
        "before_state",
        "after_state",
        "success",
        "duration_ms",
        "rule_reference",
        "message",
    ],
    "performance_metrics": [
        "id",
        "stats_id",
        "phase_name",
        "wall_time_seconds",
        "bytes_read",
        "bytes_written",
        "encoding_fps",
        "encoding_bitrate",
    ],
}
STATS_INDEXES = {  # DATA-MODEL.md's indexes; version 4 adds the time to three of them
    "processing_stats": [
        ["file_id", "processed_at"],
        ["policy_name", "processed_at"],
        ["processed_at"],
        ["success", "processed_at"],
    ],
    "action_results": [["stats_id"], ["action_type"], ["track_type"]],
    "performance_metrics": [["stats_id"], ["phase_name"]],
}
PARENTS = {
    "processing_stats": "files",
    "action_results": "processing_stats",
    "performance_metrics": "processing_stats",
}


def _make_version_1(path: Path) -> None:
    """A database as the VPO before the statistics tables left it, with a library in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, container, duration_seconds, "
        "content_hash, scanned_at) VALUES (7, '/lib/a.mkv', 1000, 1.5, 'mkv', 2.0, "
        "'sha256:00', '2026-01-01T00:00:00.000000Z')"
    )
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at, scan_error) "
        "VALUES (8, '/lib/b.mkv', 3, 2.5, '2026-01-01T00:00:00.000000Z', 'broken')"
    )
    conn.executemany(
        "INSERT INTO tracks (file_id, track_index, track_type, codec, language, is_default) "
        "VALUES (7, ?, ?, ?, ?, ?)",
        [
            (0, "video", "h264", "und", 1),
            (1, "audio", "aac", "eng", 1),
            (2, "subtitle", "ass", "jpn", 0),
        ],
    )
    conn.close()


def test_version_1_database_is_upgraded_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _make_version_1(path)
    files_sql = (
        "SELECT id, path, size_bytes, mtime, container, duration_seconds, content_hash, "
        "scanned_at, scan_error FROM files ORDER BY id"
    )
    before_files = [tuple(r) for r in query(path, files_sql)]
    before_tracks = [tuple(r) for r in query(path, "SELECT * FROM tracks ORDER BY id")]
    assert query(path, "PRAGMA user_version")[0][0] == 1
    assert not query(path, "SELECT name FROM sqlite_master WHERE name = 'processing_stats'")

    open_database(path).close()

    assert query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert [tuple(r) for r in query(path, files_sql)] == before_files
    assert [tuple(r) for r in query(path, "SELECT * FROM tracks ORDER BY id")] == before_tracks
    for table, columns in STATS_COLUMNS.items():
        assert [r["name"] for r in query(path, f"PRAGMA table_info({table})")] == columns
        indexed = [
            [c["name"] for c in query(path, f"PRAGMA index_info({idx['name']})")]
            for idx in query(path, f"PRAGMA index_list({table})")
            if idx["origin"] == "c"
        ]
        assert sorted(indexed) == sorted(STATS_INDEXES[table])
        (fk,) = query(path, f"PRAGMA foreign_key_list({table})")
        assert (fk["table"], fk["on_delete"]) == (PARENTS[table], "CASCADE")


RUN_SQL = (
    "INSERT INTO processing_stats (id, file_id, processed_at, policy_name, size_before, "
    "size_after, size_change, duration_seconds, success) VALUES (?, ?, 't', 'p', ?, ?, ?, 1.0, 1)"
)


def test_upgrade_backfills_the_library_totals(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _make_version_1(path)
    open_database(path).close()
    (video,) = query(path, "SELECT video_codec, video_width FROM files WHERE id = 7")
    assert tuple(video) == ("h264", None)
    totals = {tuple(r) for r in query(path, "SELECT * FROM library_file_totals")}
    assert totals == {("mkv", "h264", "unknown", 1, 1000), ("unknown", "none", "unknown", 1, 3)}
    tracks = {tuple(r) for r in query(path, "SELECT * FROM library_track_totals")}
    assert tracks == {("video", "h264", 1), ("audio", "aac", 1), ("subtitle", "ass", 1)}


def test_new_tables_cascade_and_check(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "new.db")
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (1, '/a', 5, 1, 'x')"
    )
    conn.execute(RUN_SQL, ("s1", 1, 10, 4, 6))
    conn.execute(
        "INSERT INTO action_results (stats_id, action_type, success) VALUES ('s1', 'x', 1)"
    )
    conn.execute(
        "INSERT INTO performance_metrics (stats_id, phase_name, wall_time_seconds) "
        "VALUES ('s1', 'p1', 0.5)"
    )
    with pytest.raises(sqlite3.IntegrityError):  # size_change must equal before - after
        conn.execute(RUN_SQL, ("s2", 1, 10, 4, 5))
    with pytest.raises(sqlite3.IntegrityError):  # no run of an unknown file
        conn.execute(RUN_SQL, ("s3", 99, 1, 1, 0))
    conn.execute("DELETE FROM files WHERE id = 1")
    for table in ("processing_stats", "action_results", "performance_metrics"):
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert count == 0, table
    conn.close()


def test_connection_pragmas(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "p.db")
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    conn.close()


def test_newer_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something_new (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(DatabaseError, match="newer VPO"):
        open_database(path)
    result = run_vpo("--db", path, "scan", tmp_path)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: {path} was written by a newer VPO (schema version {SCHEMA_VERSION + 5}, this VPO "
        f"knows up to {SCHEMA_VERSION}); upgrade VPO to use it. The file was not changed."
    )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.db"]  # no -wal, no -shm


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not sqlite " * 200)
    result = run_vpo("--db", path, "scan", tmp_path)
    assert result.returncode == 1
    assert "is not a VPO database" in result.stderr
    assert path.read_text() == "not sqlite " * 200


def test_upgrade_to_version_4_fills_the_rollups_from_recorded_runs(tmp_path: Path) -> None:
    from tests.recorded import EPOCH, RunSpec, days, write_runs
    from vpo.db.aggregates import plain_totals, window_totals

    path = tmp_path / "v3.db"
    conn = open_database(path, migrate_to=3)
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (1, '/a.mkv', 1, 1, 'x')"
    )
    specs = [
        RunSpec(EPOCH + days(i * 7.3), policy=("a", "b")[i % 2], size_after=i * 1000)
        for i in range(40)
    ]
    write_runs(conn, specs)
    conn.close()
    assert query(path, "PRAGMA user_version")[0][0] == 3

    conn = open_database(path)
    try:
        months = query(path, "SELECT count(*) FROM stats_rollups WHERE span = 'month'")[0][0]
        assert months >= 9  # 40 weekly-ish runs over ~10 months, two policies
        assert query(path, "SELECT sum(runs) FROM stats_rollups WHERE span = 'hour'")[0][0] == 40
        for since, until in [(None, None), (EPOCH + days(30.5), EPOCH + days(200.25))]:
            for by in (None, "policy", "day"):
                assert window_totals(conn, since, until, by=by) == plain_totals(
                    conn, since, until, by=by
                )
        write_runs(conn, [RunSpec(EPOCH + days(1), policy="a")])  # triggers now keep them
        assert query(path, "SELECT sum(runs) FROM stats_rollups WHERE span = 'day'")[0][0] == 41
    finally:
        conn.close()
