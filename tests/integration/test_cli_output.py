"""What `vpo stats …` prints for people on an 80-column terminal and for scripts: short
ids and id prefixes, paths shortened from the middle, binary sizes, rounded JSON, words
instead of Python values, folders, purge times and shared tool calls."""

import csv
import io
import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import invoke, query
from tests.recorded import EPOCH, RunSpec, days, record
from vpo.db import open_database
from vpo.db.connection import transaction
from vpo.db.stats import ActionResultRecord, ProcessingStatsRecord, insert_run

NARROW = {"COLUMNS": "80"}
LONG_NAME = "The.Expanse.S01E01.Dulcinea.1080p.WEB-DL.mkv"
PATHS = [
    f"/media/nas/video/Series/The Expanse/Season 01/{LONG_NAME}",
    "/media/nas/video/Series/The Expanse/Season 02/The.Expanse.S02E01.mkv",
    "/media/nas/video/Movies/Blade Runner 2049 (2017)/Blade Runner 2049.mkv",
]
AMBIGUOUS = ("3c8427e0-0000-4000-8000-000000000001", "3c8427e0-0000-4000-8000-000000000002")
HASH = "sha256:" + "3f2a" * 16


def _mkvmerge_removes(count: int) -> tuple[ActionResultRecord, ...]:
    """`count` removes done by one mkvmerge call: each span lasted the whole call."""
    return tuple(
        ActionResultRecord(
            action_type="remove",
            success=True,
            track_type="audio",
            track_index=i + 1,
            before_state=json.dumps(
                {"codec": "ac3", "language": "fre", "default": i == 0, "forced": False}
            ),
            after_state='{"removed": true}',
            duration_ms=133 + i % 2,
            rule_reference="phases[0].keep_audio.languages",
            message=f"mkvmerge: remove audio track {i + 1}",
        )
        for i in range(count)
    )


def _write(conn: sqlite3.Connection, runs: list[ProcessingStatsRecord]) -> None:
    with transaction(conn):
        for run in runs:
            insert_run(conn, run)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Runs of three files with long paths: one with 4 actions done by one call and
    float-noisy durations, two sharing the first 8 hex digits of their ids."""
    path = tmp_path / "vpo.db"
    conn = open_database(path)
    try:
        conn.executemany(
            "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (?, ?, 1, 1, 'x')",
            list(enumerate(PATHS, 1)),
        )
        conn.commit()
        noisy = replace(
            record(
                RunSpec(
                    EPOCH + days(3),
                    "language-cleanup",
                    1_000_000,
                    879_014,
                    duration=4.0855288000000005,
                )
            ),
            actions=_mkvmerge_removes(4),
            hash_before=HASH,
            hash_after=HASH,
            video_source_codec=None,
        )
        twins = [
            replace(record(RunSpec(EPOCH + days(1 + i), "hevc", file_id=2 + i)), id=run_id)
            for i, run_id in enumerate(AMBIGUOUS)
        ]
        failed = record(RunSpec(EPOCH + days(4), "hevc", success=False, file_id=3, duration=1 / 3))
        _write(conn, [noisy, *twins, failed])
    finally:
        conn.close()
    return path


def stats(db: Path, *args: str, env: dict[str, str] | None = None):
    return invoke("--db", db, "stats", *args, env=env)


def _run_id(db: Path, file_id: int) -> str:
    return str(query(db, "SELECT id FROM processing_stats WHERE file_id = ?", (file_id,))[0][0])


def test_recent_fits_80_columns_with_short_ids_and_readable_file_names(db: Path) -> None:
    result = stats(db, "recent", env=NARROW)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    noisy = _run_id(db, 1)
    assert re.search(rf"^{noisy[:8]}  2024-11-27 00:00  ok\b", result.stdout, re.M)
    assert noisy[:9] not in result.stdout  # 8 hex digits, not a cut full id
    (path,) = [line.strip() for line in lines if LONG_NAME in line]
    assert path == f"/…/The Expanse/Season 01/{LONG_NAME}"  # cut in the middle, name intact
    assert "language-cleanup" in result.stdout and "118.2 KiB" in result.stdout


def test_detail_takes_a_unique_prefix_and_lists_an_ambiguous_one(db: Path) -> None:
    noisy = _run_id(db, 1)
    for reference in (noisy[:8], noisy[:4], noisy[:13], noisy.upper(), noisy.replace("-", "")):
        result = stats(db, "detail", reference, "--format", "json")
        assert result.exit_code == 0, (reference, result.stderr)
        assert json.loads(result.stdout)["id"] == noisy

    ambiguous = stats(db, "detail", "3c8427e0")
    assert ambiguous.exit_code == 2
    assert "ambiguous" in ambiguous.stderr
    for run_id in AMBIGUOUS:
        assert run_id in ambiguous.stderr
    assert stats(db, "detail", "3c8427e0-0000-4000-8000-000000000002").exit_code == 0

    assert stats(db, "detail", "ffff0000").exit_code == 65
    for bad in ("3c8", "not-hex!", "3c8427e0" * 5):
        result = stats(db, "detail", bad)
        assert result.exit_code == 2 and "is not a run id" in result.stderr


def test_sizes_are_binary_everywhere_in_stats(db: Path) -> None:
    noisy = _run_id(db, 1)
    for args in (("summary",), ("policy",), ("file", "1"), ("recent",), ("detail", noisy)):
        out = stats(db, *args).stdout
        assert "KiB" in out, args
        assert not re.search(r"\d (KB|MB|GB|TB)\b", out), args


def test_json_and_csv_have_no_float_noise(db: Path) -> None:
    summary = json.loads(stats(db, "summary", "--format", "json").stdout)
    assert summary["success_rate"] == 0.75
    assert summary["avg_processing_time"] == round((4.0855288 + 1.5 + 1.5 + 1 / 3) / 4, 3)
    policy = json.loads(stats(db, "policy", "hevc", "--format", "json").stdout)
    assert policy["success_rate"] == 0.6667 and policy["avg_processing_time"] == 1.111
    detail = json.loads(stats(db, "detail", _run_id(db, 1), "--format", "json").stdout)
    assert detail["duration_seconds"] == 4.086
    recent = stats(db, "recent", "--format", "json").stdout
    assert "0.333" in recent and "0.3333333" not in recent
    rows = list(csv.DictReader(io.StringIO(stats(db, "policy", "--format", "csv").stdout)))
    assert {row["success_rate"] for row in rows} == {"1.0", "0.6667"}
    for command in (("summary",), ("policy",), ("recent",), ("file", "1")):
        for output_format in ("json", "csv"):
            text = stats(db, *command, "--format", output_format).stdout
            assert not re.search(r"(?<![\d:])\d+\.\d{5,}", text), (command, output_format)


def test_detail_writes_words_not_python_values(db: Path) -> None:
    out = stats(db, "detail", _run_id(db, 1), "--show-actions", env=NARROW).stdout
    assert "fre, default → removed" in out and "ac3, fre → removed" in out
    assert not re.search(r"\b(True|False|None)\b|\?", out), out
    assert "video not transcoded" in out


def test_detail_labels_the_partial_hash(db: Path) -> None:
    out = stats(db, "detail", _run_id(db, 1), env=NARROW).stdout
    assert "sha256:" not in out
    assert re.search(r"Partial hash before\s+│ 3f2a3f2a3f2a3f2a… \(sha256 of the size \+", out)


def test_detail_shows_a_tool_call_shared_by_several_actions_once(db: Path) -> None:
    out = stats(db, "detail", _run_id(db, 1), "--show-actions", env=NARROW).stdout
    assert "mkvmerge: 133 ms for 4 actions" in out
    assert out.count("133 ms") == 1 and "134 ms" not in out
    assert "remove audio track" not in out  # the tool's usual description is not repeated
    assert len(re.findall(r"^\s+ok\s+remove audio \d", out, re.M)) == 4
    assert max(len(line) for line in out.splitlines()) <= 80


def test_stats_file_of_a_folder_lists_the_runs_under_it(db: Path, tmp_path: Path) -> None:
    folder = "/media/nas/video/Series/The Expanse"
    result = stats(db, "file", folder, env=NARROW)
    assert result.exit_code == 0, result.stderr
    assert "is not in the library" not in result.stderr
    assert f"{folder} (a folder: runs of its 2 library files)" in result.stdout
    assert result.stdout.index("Season 01/") < result.stdout.index("Season 02/")  # newest first
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    data = json.loads(stats(db, "file", folder, "--format", "json").stdout)
    assert data["folder_path"] == folder and data["files"] == 2
    assert [h["file_id"] for h in data["history"]] == [1, 2]
    limited = stats(db, "file", folder + "/", "--limit", "1", "--format", "csv").stdout
    assert len(limited.splitlines()) == 2

    empty = tmp_path / "nothing here"
    empty.mkdir()
    unknown = stats(db, "file", str(empty))
    assert unknown.exit_code == 64
    assert f"{empty} is a folder, and no file under it is in the library" in unknown.stderr


def test_purge_says_the_time_it_used_to_the_second(db: Path) -> None:
    result = stats(db, "purge", "--before", "2024-11-26T18:56:30", "--dry-run")
    assert result.exit_code == 0
    assert "started before 2024-11-26 18:56:30 UTC" in result.stdout
    windowed = stats(
        db, "summary", "--since", "2024-11-26T18:56:30", "--until", "2024-11-26T19:00:00"
    )
    assert "since 2024-11-26 18:56:30 UTC" in windowed.stderr


def test_db_goes_before_or_after_the_group_name(db: Path) -> None:
    for args in (
        ("stats", "--db", db, "summary"),
        ("stats", "summary", "--db", db),
        ("--db", "elsewhere.db", "stats", "--db", db, "summary"),
    ):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert "Processing summary" in result.stdout


def test_policy_list_fits_80_columns_without_cutting_names(db: Path) -> None:
    out = stats(db, "policy", env=NARROW).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    assert re.search(r"^language-cleanup +1 +100\.0% +118\.2 KiB .* 2024-11-27$", out, re.M)
    assert "…" not in out


def test_a_recorded_tool_call_groups_actions_exactly() -> None:
    from vpo.cli.stats_tables import _tool_calls

    def action(call: int, duration: int) -> dict[str, object]:
        return {"tool_call": call, "tool": "mkvmerge", "duration_ms": duration, "success": True}

    rows = [action(1, 133), action(1, 150), action(2, 133)]  # durations do not decide
    assert [len(group) for group in _tool_calls(rows)] == [2, 1]


def test_a_long_policy_name_moves_to_the_next_line_instead_of_being_cut(db: Path) -> None:
    name = "keep-english-and-japanese-audio-only-v2"
    conn = open_database(db)
    try:
        _write(conn, [record(RunSpec(EPOCH + days(9), name, 3 * 1024**3, 1024**3, file_id=3))])
    finally:
        conn.close()
    for args in (("file", "3"), ("recent",)):
        out = stats(db, *args, env=NARROW).stdout
        assert max(len(line) for line in out.splitlines()) <= 80, out
        assert re.search(r"^stats id .* saved(  time)?\n {10}policy\n", out, re.M), out
        assert re.search(rf"^ {{10}}{name}\b", out, re.M), out


def test_two_calls_of_one_tool_are_shown_apart_by_their_recorded_numbers(db: Path) -> None:
    """Same tool, time and outcome: only the recorded `tool_call` tells the calls apart."""
    from vpo.db.stats import InvalidRecordError

    removes = _mkvmerge_removes(5)
    calls = tuple(
        replace(action, duration_ms=133, tool="mkvmerge", tool_call=1 if i < 2 else 2)
        for i, action in enumerate(removes)
    )
    run = replace(record(RunSpec(EPOCH + days(8), "language-cleanup", file_id=3)), actions=calls)
    conn = open_database(db)
    try:
        with pytest.raises(InvalidRecordError, match="tool_call"):  # numbers start at 1
            _write(conn, [replace(run, actions=(replace(calls[0], tool_call=0),))])
        _write(conn, [run])
    finally:
        conn.close()

    out = stats(db, "detail", run.id, "--show-actions", env=NARROW).stdout
    assert "mkvmerge: 133 ms for 2 actions (tool call 1)" in out
    assert "mkvmerge: 133 ms for 3 actions (tool call 2)" in out
    assert out.count("133 ms") == 2 and "5 actions" not in out
    data = json.loads(stats(db, "detail", run.id, "--format", "json").stdout)
    assert [a["tool_call"] for a in data["action_results"]] == [1, 1, 2, 2, 2]
    assert {a["tool"] for a in data["action_results"]} == {"mkvmerge"}
