"""Schema versions: an older database is upgraded keeping every row; a newer one is
refused and left byte-for-byte as it was."""

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import query, run_vpo
from vpo.db import SCHEMA_VERSION, open_database
from vpo.db.migrations import migrate
from vpo.db.rollups import adding_runs
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
        "worker",
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
        "tool",
        "tool_call",
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
STATS_INDEXES = {  # the statistics indexes; version 4 adds the time to three of them
    "processing_stats": [
        ["worker", "processed_at"],  # version 7
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
        write_runs(conn, [RunSpec(EPOCH + days(1), policy="a")])  # the writer now adds them
        assert query(path, "SELECT sum(runs) FROM stats_rollups WHERE span = 'day'")[0][0] == 41
    finally:
        conn.close()


# --- Every past version upgrades to exactly the schema of a new database ---------------

# sha256 of each released step's SQL, token by token (whitespace may be re-flowed, nothing
# else): a released migration is never edited, a change is a new step.
RELEASED_STEPS = {
    1: "2dae02a8814df85a784180daba6ef7352dde7a6c1e2a5cf6879b3872d3339d8a",
    2: "4855ce278e2fdde50bea0e64be9f7518404ee081af9d1dfab78329d1507c5841",
    3: "17d56eed4f748f663ffc893db2706872b0b373c733118084437f46a12529eb1c",
    4: "b727c112890b9581a37426f3a383f89bc9584e1de69de94ee90f9e943d8bee24",
    5: "e7b4f0394ffb1651c4263cfbd93139fbfd477679d4035cddcce0c9ec99ae5816",
    6: "e99f542aa13c9cd8c65c060d250dad002e9c3944dcfa0b373386faaacdc051b7",
    7: "4790400687c94ef9e5274eb6d105589674f389f08e55012f345da2f155a4e19a",
    8: "ed607646b63f8bc5182df6061905d606b635029b47cdbf272f153f8b51f449a7",
}

FILES = [  # id, path, size, container, scan_error, first video track (codec, width, height)
    (1, "/lib/a.mkv", 5_000_000, "mkv", None, ("h264", 1920, 1080)),
    (2, "/lib/b.mp4", 9_000_000, "mp4", None, ("hevc", 3840, 1600)),
    (3, "/lib/c.mkv", 12, None, "not a media file", None),
    (4, "/lib/d.mkv", 700, "mkv", None, ("mpeg4", 720, 576)),
]
TRACKS = [  # file_id, index, type, codec, language, width, height
    (1, 0, "video", "h264", "und", 1920, 1080),
    (1, 1, "audio", "aac", "eng", None, None),
    (1, 2, "audio", "ac3", "fre", None, None),
    (1, 3, "subtitle", "ass", "jpn", None, None),
    (2, 0, "video", "hevc", "und", 3840, 1600),
    (2, 1, "audio", "eac3", "eng", None, None),
    (4, 0, "video", "mpeg4", "und", 720, 576),
    (4, 1, "attachment", None, "und", None, None),
]
# From version 7 on, a run names its worker (host); r5 has none (an older VPO wrote it).
WORKERS = {"r1": "nas", "r2": "nas", "r3": "gpu-box", "r4": "gpu-box"}
RUNS = [  # id, file_id, processed_at, policy, size before/after, removed audio, target, ok
    ("r1", 1, "2025-12-31T23:59:59.999999Z", "cleanup", 6_000_000, 5_000_000, 1, None, 1),
    ("r2", 1, "2026-01-01T00:00:00.000000Z", "cleanup", 5_000_000, 5_000_000, 0, None, 0),
    ("r3", 2, "2026-01-01T00:30:00.000000Z", "compress", 20_000_000, 9_000_000, 0, "hevc", 1),
    ("r4", 2, "2026-02-14T13:05:09.123456Z", "compress", 9_000_000, 9_000_000, 0, None, 1),
    ("r5", 4, "2026-02-14T13:59:00.000000Z", "cleanup", 900, 700, 1, None, 1),
]


def _tokens(sql: str) -> str:
    import re

    return " ".join(re.findall(r"'[^']*'|\w+|[^\s\w]", sql))


def test_released_migrations_are_frozen() -> None:
    from vpo.db.migrations import MIGRATIONS

    released = {
        step.version: hashlib.sha256(_tokens(step.sql).encode()).hexdigest()
        for step in MIGRATIONS
        if step.version in RELEASED_STEPS
    }
    assert released == RELEASED_STEPS


def test_the_rollups_are_what_the_live_measures_generate(tmp_path: Path) -> None:
    """Queries sum the live MEASURES over stats_rollups. A change of MEASURES needs a new
    migration that rebuilds the rollups (its text generated once by
    statistics_rollups_sql and pasted as a literal); then point this test at it."""
    from vpo.db.measures import MEASURE_NAMES, MEASURES, SPANS
    from vpo.db.rollup_sql import statistics_rollups_sql
    from vpo.db.schema import V4_STATISTICS_ROLLUPS

    assert statistics_rollups_sql(MEASURES, SPANS) == V4_STATISTICS_ROLLUPS
    open_database(tmp_path / "fresh.db").close()
    columns = [r["name"] for r in query(tmp_path / "fresh.db", "PRAGMA table_info(stats_rollups)")]
    assert columns == ["span", "bucket", "policy_name", *MEASURE_NAMES]


def _fill(
    conn: sqlite3.Connection,
    version: int,
    *,
    runs: bool = True,
    tools: bool | None = None,
    workers: bool | None = None,
) -> None:
    """The same library (and runs), written as a VPO at `version` would have stored them;
    `tools`: whether the action rows name their tool call (a VPO at version 5 or later);
    `workers`: whether the runs name their worker (a VPO at version 7 or later)."""
    tools = version >= 5 if tools is None else tools
    workers = version >= 7 if workers is None else workers
    conn.execute("BEGIN")
    # From version 3 on, the scan stores the first video track on the file row too.
    video_columns = ", video_codec, video_width, video_height" if version >= 3 else ""
    for file_id, path, size, container, error, video in FILES:
        extra = tuple(video or (None, None, None)) if version >= 3 else ()
        conn.execute(
            "INSERT INTO files (id, path, size_bytes, mtime, container, duration_seconds, "
            f"content_hash, scanned_at, scan_error{video_columns}) VALUES (?, ?, ?, 1.5, ?, "
            f"20.0, ?, '2025-12-01T00:00:00.000000Z', ?{', ?' * len(extra)})",
            (file_id, path, size, container, f"sha256:{file_id}", error, *extra),
        )
    conn.executemany(
        "INSERT INTO tracks (file_id, track_index, track_type, codec, language, width, height, "
        "is_default) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
        TRACKS,
    )
    if runs and version >= 2:
        # From version 7 on, a run names the host that ran it; from version 8 on, the
        # writer adds runs to the rollups (before, a trigger did; no-op then).
        worker = (", worker", ", ?") if workers else ("", "")
        with adding_runs(conn):
            _fill_runs(conn, worker, workers, tools)
    conn.execute("COMMIT")


def _fill_runs(
    conn: sqlite3.Connection, worker: tuple[str, str], workers: bool, tools: bool
) -> None:
    """The RUNS, as `_fill` writes them."""
    for run_id, file_id, at, policy, before, after, removed, target, ok in RUNS:
        conn.execute(
            "INSERT INTO processing_stats (id, file_id, processed_at, policy_name, "
            "size_before, size_after, size_change, audio_tracks_before, audio_tracks_after, "
            "audio_tracks_removed, duration_seconds, phases_completed, phases_total, "
            "total_changes, video_source_codec, video_target_codec, success, "
            f"error_message{worker[0]}) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, 2, ?, ?, 1.25, ?, 2, ?, 'h264', ?, ?, ?{worker[1]})",
            (
                run_id,
                file_id,
                at,
                policy,
                before,
                after,
                before - after,
                2 - removed,
                removed,
                2 if ok else 1,
                removed,
                target,
                ok,
                None if ok else "mkvmerge failed",
                *((WORKERS.get(run_id),) if workers else ()),
            ),
        )
        # From version 5 on, an action row names the tool call that did it.
        call = (", tool, tool_call", ", 'mkvmerge', 1") if tools else ("", "")
        conn.execute(
            "INSERT INTO action_results (stats_id, action_type, track_type, track_index, "
            f"before_state, after_state, success, duration_ms, message{call[0]}) "
            "VALUES (?, 'remove_track', 'audio', 2, '{\"language\": \"fre\"}', NULL, ?, 4, "
            f"'removed'{call[1]})",
            (run_id, ok),
        )
        conn.execute(
            "INSERT INTO performance_metrics (stats_id, phase_name, wall_time_seconds, "
            "bytes_read, bytes_written) VALUES (?, 'cleanup', 1.25, ?, ?)",
            (run_id, before, after),
        )


def _schema(path: Path) -> list[tuple[str, str, str, str]]:
    """Every table, index, trigger and view, its SQL with whitespace normalised."""
    return [
        (r["type"], r["name"], r["tbl_name"], " ".join((r["sql"] or "").split()))
        for r in query(path, "SELECT * FROM sqlite_master ORDER BY type, name")
    ]


def _contents(path: Path) -> dict[str, list[tuple[object, ...]]]:
    tables = [r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        table: sorted((tuple(r) for r in query(path, f"SELECT * FROM {table}")), key=repr)
        for table in tables
    }


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_a_database_of_every_past_version_upgrades_to_the_fresh_schema(
    tmp_path: Path, version: int
) -> None:
    old = tmp_path / f"v{version}.db"
    conn = sqlite3.connect(old, isolation_level=None)
    assert migrate(conn, target=version) == list(range(1, version + 1))
    _fill(conn, version)
    conn.close()
    fresh = tmp_path / "fresh.db"
    conn = open_database(fresh)
    # what the old one holds
    _fill(conn, SCHEMA_VERSION, runs=version >= 2, tools=version >= 5, workers=version >= 7)
    conn.close()

    open_database(old).close()

    assert query(old, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert _schema(old) == _schema(fresh)
    upgraded, expected = _contents(old), _contents(fresh)
    assert upgraded == expected  # rows kept; totals and rollups backfilled as triggers keep them
    assert len(upgraded["files"]) == len(FILES) and len(upgraded["tracks"]) == len(TRACKS)
    if version >= 2:
        assert len(upgraded["processing_stats"]) == len(RUNS)
        assert len(upgraded["action_results"]) == len(upgraded["performance_metrics"]) == len(RUNS)
        spans = query(old, "SELECT span, sum(runs), sum(size_saved) FROM stats_rollups GROUP BY 1")
        saved = sum(run[4] - run[5] for run in RUNS)
        assert {tuple(r) for r in spans} == {
            (s, len(RUNS), saved) for s in ("hour", "day", "month")
        }
    assert query(old, "PRAGMA foreign_key_check") == []
    assert query(old, "PRAGMA integrity_check")[0][0] == "ok"


def _make_version_4_with_a_shared_call(path: Path) -> None:
    """A version 4 database holding a run whose 4 removes one mkvmerge call did, as a VPO
    before version 5 recorded them: each with the call's whole time, no call number."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=4)
    _fill(conn, 4, runs=False)
    conn.execute(
        "INSERT INTO processing_stats (id, file_id, processed_at, policy_name, size_before, "
        "size_after, size_change, audio_tracks_before, audio_tracks_after, "
        "audio_tracks_removed, duration_seconds, phases_completed, phases_total, total_changes, "
        "success) VALUES ('4c0ffee0-0000-4000-8000-000000000004', 1, "
        "'2026-01-02T03:04:05.000006Z', 'cleanup', 900, 700, 200, 4, 0, 4, 0.25, 1, 1, 4, 1)"
    )
    conn.executemany(
        "INSERT INTO action_results (stats_id, action_type, track_type, track_index, "
        "before_state, after_state, success, duration_ms, rule_reference, message) "
        "VALUES ('4c0ffee0-0000-4000-8000-000000000004', 'remove', 'audio', ?, "
        "'{\"language\": \"fre\"}', NULL, 1, ?, 'phases[0].keep_audio.languages', ?)",
        [(i, 133 + (i + 1) % 2, f"mkvmerge: remove audio track {i}") for i in range(1, 5)],
    )
    conn.close()


def test_version_4_action_rows_upgrade_to_5_without_a_tool_call(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    _make_version_4_with_a_shared_call(path)
    rows_sql = "SELECT * FROM action_results ORDER BY id"
    before = [tuple(r) for r in query(path, rows_sql)]
    assert query(path, "PRAGMA user_version")[0][0] == 4

    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn) == [5, 6, 7, 8]
    conn.close()

    after = query(path, rows_sql)
    assert [tuple(r)[:-2] for r in after] == before  # every value kept, in place
    assert {(r["tool"], r["tool_call"]) for r in after} == {(None, None)}  # not known then
    # `stats detail` still shows the one call once, recognised from the rows' messages.
    result = run_vpo(
        "--db", path, "stats", "detail", "4c0ffee0", "--show-actions", env={"COLUMNS": "80"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("mkvmerge: 133 ms for 4 actions") == 1
    assert "tool call" not in result.stdout.replace("per tool call", "")
    conn = open_database(path)
    try:
        with pytest.raises(sqlite3.IntegrityError):  # call numbers start at 1
            conn.execute(
                "INSERT INTO action_results (stats_id, action_type, success, tool, tool_call) "
                "VALUES ('4c0ffee0-0000-4000-8000-000000000004', 'remove', 1, 'mkvmerge', 0)"
            )
        conn.execute(
            "INSERT INTO action_results (stats_id, action_type, success, tool, tool_call) "
            "VALUES ('4c0ffee0-0000-4000-8000-000000000004', 'remove', 1, 'mkvmerge', 1)"
        )
    finally:
        conn.close()


def test_released_migrations_do_not_follow_a_later_change_of_the_measures() -> None:
    """A VPO whose measures gained one still creates version 4 as it was released."""
    program = """
import hashlib, importlib.util, json, re, sys
from pathlib import Path
package = Path(importlib.util.find_spec("vpo").origin).parent
spec = importlib.util.spec_from_file_location("vpo.db.measures", package / "db" / "measures.py")
measures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(measures)
measures.MEASURES["files_renamed"] = "0"  # the change a later version might make
sys.modules["vpo.db.measures"] = measures
from vpo.db.migrations import MIGRATIONS
tokens = lambda sql: " ".join(re.findall(r"'[^']*'|\\w+|[^\\s\\w]", sql))
print(json.dumps({s.version: hashlib.sha256(tokens(s.sql).encode()).hexdigest()
                  for s in MIGRATIONS}))
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    hashes = {int(k): v for k, v in json.loads(result.stdout).items()}
    assert {v: hashes[v] for v in RELEASED_STEPS} == RELEASED_STEPS
