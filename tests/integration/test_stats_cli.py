"""`vpo stats …` on a database with known runs: every subcommand, format and exit code."""

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import database_with_files, invoke, query, run_vpo
from tests.recorded import EPOCH, RunSpec, days, write_runs
from vpo.db import open_database

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"

SUMMARY_FIELDS = {
    "total_files_processed": int,
    "total_successful": int,
    "total_failed": int,
    "success_rate": float,
    "total_size_before": int,
    "total_size_after": int,
    "total_size_saved": int,
    "avg_savings_percent": float,
    "total_audio_removed": int,
    "total_subtitles_removed": int,
    "total_attachments_removed": int,
    "total_videos_transcoded": int,
    "total_videos_skipped": int,
    "total_audio_transcoded": int,
    "avg_processing_time": float,
    "earliest_processing": str,
    "latest_processing": str,
}
POLICY_FIELDS = {
    "policy_name": str,
    "files_processed": int,
    "success_rate": float,
    "total_size_saved": int,
    "avg_savings_percent": float,
    "audio_tracks_removed": int,
    "subtitle_tracks_removed": int,
    "attachments_removed": int,
    "videos_transcoded": int,
    "audio_transcoded": int,
    "avg_processing_time": float,
    "last_used": str,
}
GiB = 1024**3


@pytest.fixture
def stats_db(tmp_path: Path) -> tuple[Path, list[str]]:
    """Five runs over two policies and two files: (database, run ids oldest first)."""
    path = database_with_files(tmp_path / "vpo.db", count=3)
    runs = [
        RunSpec(EPOCH + days(1), "cleanup", 4 * GiB, 3 * GiB, audio_removed=2, actions=2, phases=1),
        RunSpec(EPOCH + days(2), "cleanup", 2 * GiB, 2 * GiB, success=False, file_id=2),
        RunSpec(
            EPOCH + days(40), "hevc", 10 * GiB, 4 * GiB, transcoded=True, phases=2, duration=600
        ),
        RunSpec(EPOCH + days(41), "hevc", 1 * GiB, 1 * GiB, skipped=True, file_id=2),
        RunSpec(
            EPOCH + days(400),
            "cleanup",
            3 * GiB,
            2 * GiB,
            subtitles_removed=3,
            attachments_removed=2,
        ),
    ]
    conn = open_database(path)
    try:
        ids = write_runs(conn, runs)
    finally:
        conn.close()
    return path, ids


def stats(db: Path, *args: str):
    return invoke("--db", db, "stats", *args)


def test_summary_json_carries_the_documented_fields_and_values(stats_db) -> None:
    db, _ = stats_db
    result = stats(db, "summary", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    for name, kind in SUMMARY_FIELDS.items():
        assert isinstance(data[name], kind), name
    assert data["total_files_processed"] == 5
    assert (data["total_successful"], data["total_failed"]) == (4, 1)
    assert data["success_rate"] == pytest.approx(0.8)
    assert data["total_size_saved"] == 8 * GiB
    assert data["avg_savings_percent"] == pytest.approx(100 * 8 / 20)
    assert (data["total_audio_removed"], data["total_subtitles_removed"]) == (2, 3)
    assert data["total_attachments_removed"] == 2
    assert (data["total_videos_transcoded"], data["total_videos_skipped"]) == (1, 1)
    assert data["earliest_processing"] == "2024-11-25T00:00:00.000000Z"
    assert data["latest_processing"] == "2025-12-29T00:00:00.000000Z"
    assert data["avg_processing_time"] == pytest.approx((4 * 1.5 + 600) / 5)
    assert [r["period"] for r in data["rolling"]] == ["today", "7d", "30d", "365d", "all"]
    assert data["rolling"][-1]["runs"] == 5 and data["rolling"][-1]["size_saved"] == 8 * GiB


def test_summary_window_csv_and_table(stats_db) -> None:
    db, _ = stats_db
    result = stats(
        db, "summary", "--since", "2024-12-01", "--until", "2025-01-31", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1 and result.stdout.count("\n") == 2
    assert rows[0]["total_files_processed"] == "2"
    assert int(rows[0]["total_size_saved"]) == 6 * GiB
    assert rows[0]["since"] == "2024-12-01T00:00:00.000000Z"
    assert rows[0]["until"] == "2025-02-01T00:00:00.000000Z"  # a bare --until includes its day

    table = stats(db, "summary").stdout
    assert "8.0 GiB (40.0%)" in table
    assert "5 (4 successful, 1 failed; 80.0% success)" in table
    assert "audio 2 · subtitles 3 · attachments 2" in table
    assert "Rolling totals" in table


def test_policy_list_sorts_and_formats(stats_db) -> None:
    db, _ = stats_db
    data = json.loads(stats(db, "policy", "--format", "json").stdout)
    for row in data["policies"]:
        for name, kind in POLICY_FIELDS.items():
            assert isinstance(row[name], kind), name
    assert [p["policy_name"] for p in data["policies"]] == ["cleanup", "hevc"]  # 3 runs vs 2
    assert [p["files_processed"] for p in data["policies"]] == [3, 2]
    by_savings = json.loads(stats(db, "policy", "--sort", "savings", "--format", "json").stdout)
    assert [p["policy_name"] for p in by_savings["policies"]] == ["hevc", "cleanup"]
    hevc = by_savings["policies"][0]
    assert hevc["total_size_saved"] == 6 * GiB and hevc["videos_transcoded"] == 1
    assert hevc["last_used"] == "2025-01-04T00:00:00.000000Z"

    lines = stats(db, "policy", "--format", "csv").stdout.splitlines()
    assert lines[0].startswith("policy_name,files_processed,") and len(lines) == 3
    table = stats(db, "policy", "--sort", "time").stdout
    assert table.index("hevc") < table.index("cleanup")  # 300.8 s per run on average
    assert "6.0 GiB" in table and "54.5%" in table  # 6 of 11 GiB


def test_one_policy_in_detail_and_unknown_policy(stats_db) -> None:
    db, _ = stats_db
    one = json.loads(stats(db, "policy", "cleanup", "--format", "json").stdout)
    assert one["policy_name"] == "cleanup" and one["files_processed"] == 3
    assert one["failed"] == 1 and one["total_size_saved"] == 2 * GiB
    windowed = json.loads(
        stats(db, "policy", "cleanup", "--since", "2025-06-01", "--format", "json").stdout
    )
    assert windowed["files_processed"] == 1
    assert "Policy cleanup" in stats(db, "policy", "cleanup").stdout
    missing = stats(db, "policy", "nope")
    assert missing.exit_code == 65
    assert missing.stderr.strip() == "Error: No runs recorded for the policy 'nope'."
    assert stats(db, "policy", "hevc", "--since", "2025-06-01").exit_code == 65


def test_file_history_by_id_and_by_path(stats_db) -> None:
    db, ids = stats_db
    by_id = json.loads(stats(db, "file", "2", "--format", "json").stdout)
    assert by_id["file_id"] == 2 and by_id["file_path"] == "/library/file-2.mkv"
    assert [h["stats_id"] for h in by_id["history"]] == [ids[3], ids[1]]  # newest first
    assert by_id["history"][1]["success"] is False
    by_path = json.loads(stats(db, "file", "/library/file-2.mkv", "--format", "json").stdout)
    assert by_path == by_id
    limited = stats(db, "file", "1", "--limit", "1", "--format", "csv").stdout.splitlines()
    assert len(limited) == 2 and limited[1].startswith(ids[4])
    table = stats(db, "file", "1").stdout
    assert "/library/file-1.mkv (file 1)" in table and "4.0 GiB" in table and "1.0 GiB" in table


def test_file_exit_codes(stats_db) -> None:
    db, _ = stats_db
    assert stats(db, "file", "99").exit_code == 64
    missing = stats(db, "file", "/library/none.mkv")
    assert missing.exit_code == 64 and "/library/none.mkv is not in the library" in missing.stderr
    no_runs = stats(db, "file", "3")
    assert no_runs.exit_code == 65
    assert no_runs.stderr.strip() == "Error: /library/file-3.mkv (file 3) has no recorded runs."


def test_detail_json_table_and_exit_codes(stats_db) -> None:
    db, ids = stats_db
    run = json.loads(stats(db, "detail", ids[0], "--format", "json").stdout)
    assert run["id"] == ids[0] and run["file_path"] == "/library/file-1.mkv"
    assert run["success"] is True and run["size_change"] == GiB
    assert len(run["action_results"]) == 2 and len(run["performance_metrics"]) == 1
    action = run["action_results"][0]
    assert action["before_state"] == {"language": "fre"} and action["success"] is True
    assert run["performance_metrics"][0]["phase_name"] == "phase-0"

    table = stats(db, "detail", ids[0], "--show-actions", "--show-performance").stdout
    assert "5 → 3 (-2)" in table  # audio tracks
    assert "phases[0].keep_audio.languages" in table and "phase-0" in table
    assert "4.0 GiB → 3.0 GiB" in table
    plain = stats(db, "detail", ids[0]).stdout
    assert "phases[0].keep_audio.languages" not in plain
    transcoded = stats(db, "detail", ids[2]).stdout
    assert "video h264 → hevc" in transcoded

    bad = stats(db, "detail", "not-a-uuid")
    assert bad.exit_code == 2 and "is not a run id" in bad.stderr
    assert stats(db, "detail", "0b6f3a44-8f1c-4d4e-9a55-0c7c5a1c2d3e").exit_code == 65


def test_recent_lists_newest_first_and_filters_failures(stats_db) -> None:
    db, ids = stats_db
    items = json.loads(stats(db, "recent", "--limit", "3", "--format", "json").stdout)["items"]
    assert [i["stats_id"] for i in items] == [ids[4], ids[3], ids[2]]
    failed = json.loads(stats(db, "recent", "--failed", "--format", "json").stdout)["items"]
    assert [i["stats_id"] for i in failed] == [ids[1]]
    assert failed[0]["error_message"] == "ffmpeg exited with status 1"
    lines = stats(db, "recent", "--format", "csv").stdout.splitlines()
    assert len(lines) == 6 and lines[0].startswith("stats_id,processed_at,")
    table = stats(db, "recent").stdout
    assert "failed" in table and "6.0 GiB" in table


def test_recent_keeps_to_a_window(stats_db) -> None:
    db, ids = stats_db
    since, until = (EPOCH + days(2)).date().isoformat(), (EPOCH + days(40)).date().isoformat()
    window = ("--since", since, "--until", until, "--format", "json")
    items = json.loads(stats(db, "recent", *window).stdout)["items"]
    assert [i["stats_id"] for i in items] == [ids[2], ids[1]]  # a bare --until takes its day
    failed = json.loads(stats(db, "recent", "--failed", *window).stdout)["items"]
    assert [i["stats_id"] for i in failed] == [ids[1]]
    empty = stats(db, "recent", "--failed", "--since", (EPOCH + days(3)).isoformat())
    assert empty.exit_code == 65 and "No failed runs recorded in this window." in empty.stderr
    assert stats(db, "recent", "--since", until, "--until", since).exit_code == 2


def test_dates_that_do_not_parse_name_the_option(stats_db) -> None:
    db, _ = stats_db
    for command, option in (
        ("summary", "--since"),
        ("summary", "--until"),
        ("policy", "--since"),
        ("purge", "--before"),
    ):
        result = stats(db, command, option, "last tuesday")
        assert result.exit_code == 2
        assert f"Invalid value for '{option}': 'last tuesday' is not a date" in result.stderr
    backwards = stats(db, "summary", "--since", "2025-02-01", "--until", "2025-01-01")
    assert backwards.exit_code == 2 and "--since must be earlier than --until" in backwards.stderr


def test_relative_dates(stats_db) -> None:
    db, _ = stats_db
    # Every run is more than 4 weeks old (the newest is from 2025-12-29).
    assert stats(db, "summary", "--since", "4w").exit_code == 65
    data = json.loads(stats(db, "summary", "--until", "24h", "--format", "json").stdout)
    assert data["total_files_processed"] == 5


def _counts(db: Path) -> tuple[int, int, int]:
    return tuple(
        query(db, f"SELECT count(*) FROM {table}")[0][0]
        for table in ("processing_stats", "action_results", "performance_metrics")
    )


def test_purge_refuses_without_a_filter_and_dry_run_deletes_nothing(stats_db) -> None:
    db, _ = stats_db
    before = _counts(db)
    refused = stats(db, "purge", "--yes")
    assert refused.exit_code == 2 and "Say which runs to delete" in refused.stderr
    assert stats(db, "purge", "--all", "--policy", "hevc", "--yes").exit_code == 2
    dry = stats(db, "purge", "--policy", "cleanup", "--dry-run", "--format", "json")
    assert dry.exit_code == 0
    data = json.loads(dry.stdout)
    assert (data["runs"], data["action_results"], data["performance_metrics"]) == (3, 2, 1)
    assert data["deleted_count"] == 0 and data["dry_run"] is True
    assert _counts(db) == before


def test_purge_asks_then_deletes_runs_with_their_rows(stats_db) -> None:
    db, ids = stats_db
    from click.testing import CliRunner

    from vpo.cli import cli

    command = ["--db", str(db), "stats", "purge", "--before", "2024-12-01"]
    declined = CliRunner().invoke(cli, command, input="n\n")
    assert declined.exit_code == 0
    assert "This deletes 2 runs, 2 action rows and 1 phase rows" in declined.stderr
    assert "Nothing deleted." in declined.stderr and _counts(db) == (5, 2, 3)
    unanswered = CliRunner().invoke(cli, command, input="")
    assert unanswered.exit_code == 1 and "use --yes" in unanswered.stderr
    assert _counts(db) == (5, 2, 3)

    accepted = CliRunner().invoke(
        cli, ["--db", str(db), "stats", "purge", "--before", "2024-12-01"], input="y\n"
    )
    assert accepted.exit_code == 0
    assert "Deleted 2 runs, 2 action rows and 1 phase rows" in accepted.stdout
    assert _counts(db) == (3, 0, 2)
    assert not query(db, "SELECT 1 FROM processing_stats WHERE id IN (?, ?)", (ids[0], ids[1]))
    summary = json.loads(stats(db, "summary", "--format", "json").stdout)
    assert summary["total_files_processed"] == 3 and summary["total_size_saved"] == 7 * GiB
    assert query(db, "SELECT sum(runs) FROM stats_rollups WHERE span = 'month'")[0][0] == 3

    by_policy = stats(db, "purge", "--policy", "hevc", "--yes", "--format", "json")
    assert json.loads(by_policy.stdout)["deleted_count"] == 2
    assert _counts(db) == (1, 0, 0)
    nothing = stats(db, "purge", "--policy", "hevc", "--yes")
    assert nothing.exit_code == 0 and "nothing deleted" in nothing.stdout
    assert stats(db, "purge", "--all", "--yes").exit_code == 0
    assert _counts(db) == (0, 0, 0)
    assert query(db, "SELECT count(*) FROM stats_rollups")[0][0] == 0
    assert stats(db, "summary").exit_code == 65


def test_a_missing_database_is_no_statistics_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    for command in ("summary", "policy", "recent"):
        result = stats(db, command)
        assert result.exit_code == 65 and "No statistics yet" in result.stderr
    assert not db.exists()


def test_a_real_run_shows_up_right_after_the_command(library: Path, tmp_path: Path) -> None:
    db = tmp_path / "vpo.db"
    target = library / "movie-h264-multilang.mkv"
    size_before = target.stat().st_size
    processed = run_vpo(
        "--db", db, "process", "--policy", EXAMPLES / "language-cleanup.yaml", target
    )
    assert processed.returncode == 0, processed.stderr
    size_after = target.stat().st_size

    summary = json.loads(run_vpo("--db", db, "stats", "summary", "--format", "json").stdout)
    assert summary["total_files_processed"] == 1 and summary["total_successful"] == 1
    assert summary["total_size_saved"] == size_before - size_after
    assert summary["total_audio_removed"] >= 1

    history = json.loads(run_vpo("--db", db, "stats", "file", target, "--format", "json").stdout)
    (item,) = history["history"]
    assert item["size_before"] == size_before and item["size_after"] == size_after

    run = json.loads(
        run_vpo("--db", db, "stats", "detail", item["stats_id"], "--format", "json").stdout
    )
    assert run["file_path"] == str(target.resolve())
    assert run["action_results"] and all(a["success"] for a in run["action_results"])
    # One remux did the phase's removes: each row names that call.
    assert {(a["tool"], a["tool_call"]) for a in run["action_results"]} == {("mkvmerge", 1)}
    assert [p["phase_name"] for p in run["performance_metrics"]]
    policy = json.loads(run_vpo("--db", db, "stats", "policy", "--format", "json").stdout)
    assert [p["files_processed"] for p in policy["policies"]] == [1]


def test_a_huge_or_zero_limit_is_a_usage_error(stats_db) -> None:
    db, _ = stats_db
    for command in (("recent",), ("file", "1")):
        for limit in ("99999999999999999999999", "0"):
            result = stats(db, *command, "--limit", limit)
            assert result.exit_code == 2
            assert "Invalid value for '--limit'" in result.stderr


def test_detail_links_the_trace_when_vpo_trace_url_is_set(
    stats_db, caplog: pytest.LogCaptureFixture
) -> None:
    db, ids = stats_db
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE processing_stats SET trace_id = ? WHERE id = ?", (trace_id, ids[0]))
    conn.close()
    plain = invoke("--db", db, "stats", "detail", ids[0], env={"COLUMNS": "200"}).stdout
    assert "http" not in plain
    jaeger = "http://localhost:16686/trace/{trace_id}"
    linked = invoke(
        "--db", db, "stats", "detail", ids[0], env={"COLUMNS": "200", "VPO_TRACE_URL": jaeger}
    ).stdout
    assert f"http://localhost:16686/trace/{trace_id}" in linked
    unusable = invoke(
        "--db", db, "stats", "detail", ids[0], env={"COLUMNS": "200", "VPO_TRACE_URL": "http://t/"}
    )
    assert "http://t/" not in unusable.stdout  # no placeholder: no broken link, a warning
    assert "VPO_TRACE_URL is ignored: it must be an http(s) URL holding {trace_id}" in (caplog.text)
