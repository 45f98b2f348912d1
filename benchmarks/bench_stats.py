"""Statistics at scale: `vpo stats` answers at 10k / 100k / 1M / 10M recorded runs.

Each database is filled quickly with bulk SQL: 100,000 files, the runs spread over the
last two years across eight policies (schema version 3, statistics indexes rebuilt after
the bulk insert), then opened by VPO, whose migration to version 4 builds the rollups —
the path a user's database takes. Up to `--actions-up-to` runs, each run also gets four
action rows and two phase rows.

Targets (docs/benchmarks.md): summary, per-policy and a 90-day window <= 20 ms at 1M and <= 50 ms
at 10M; a file's history and a run's detail <= 5 ms; the /metrics scrape <= 50 ms at 1M;
`vpo stats summary` end to end <= 300 ms. The plain SQL over `processing_stats` for the
same question is timed beside each figure, in the same run.
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from vpo.db import open_database
from vpo.db.aggregates import plain_totals, policy_stats, summary, time_range
from vpo.db.history import file_history, run_detail
from vpo.telemetry.collector import LibraryCollector

ROOT = Path(__file__).resolve().parents[1]
VPO = ROOT / ".venv" / "bin" / "vpo"
FILES = 100_000
POLICIES = 8
SPAN_SECONDS = 2 * 365 * 86400
NOW = datetime.now(UTC).replace(microsecond=0)


def _bulk_fill(db: Path, runs: int, with_actions: bool) -> None:
    """Files, runs (and their action and phase rows) at schema version 3, by plain SQL."""
    conn = open_database(db, migrate_to=3)
    start_epoch = int((NOW - timedelta(seconds=SPAN_SECONDS)).timestamp())
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND "
        "tbl_name IN ('processing_stats', 'action_results', 'performance_metrics')"
    ).fetchall()
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.execute(
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?) "
        "INSERT INTO files (id, path, size_bytes, mtime, container, scanned_at, video_codec, "
        "video_width, video_height) "
        "SELECT n, printf('/library/show-%03d/file-%06d.mkv', n % 500, n), "
        "1000000000 + abs(random()) % 4000000000, 1, "
        "CASE WHEN n % 5 = 0 THEN 'mp4' ELSE 'mkv' END, '2026-01-01T00:00:00.000000Z', "
        "CASE n % 3 WHEN 0 THEN 'hevc' ELSE 'h264' END, 1920, 1080 FROM c",
        (FILES,),
    )
    # Sizes, outcomes and durations are hashes of the row number (deterministic, and a
    # flattened subquery cannot draw them twice); a run may grow its file.
    columns = (
        "id, file_id, processed_at, policy_name, size_before, size_after, size_change, "
        "audio_tracks_before, subtitle_tracks_before, attachments_before, audio_tracks_after, "
        "subtitle_tracks_after, attachments_after, audio_tracks_removed, "
        "subtitle_tracks_removed, attachments_removed, duration_seconds, phases_completed, "
        "phases_total, total_changes, video_source_codec, video_target_codec, "
        "video_transcode_skipped, video_skip_reason, audio_tracks_transcoded, "
        "audio_tracks_preserved, hash_before, hash_after, success, error_message, trace_id"
    )
    values = ", ".join(
        [
            "printf('%08x-0000-4000-8000-%012x', n, n)",
            "(n * 7919) % :files + 1",
            "strftime('%Y-%m-%dT%H:%M:%S', :start + n * :span / :runs, 'unixepoch') "
            "|| printf('.%06dZ', n * 37 % 1000000)",
            "'policy-' || (n * 13 % :policies)",
            "b",
            "a",
            "b - a",
            "3, 4, 2, 2, 1, 0, 1, 3, 2",
            "(n * 9973 % 600000) / 1000.0",
            "ok * 2, 2, ok * 6, 'h264'",
            "CASE WHEN n % 4 = 0 THEN 'hevc' END",
            "n % 4 = 1",
            "CASE WHEN n % 4 = 1 THEN 'codec_matches' END",
            "n % 2, 1",
            "'sha256:' || lower(hex(randomblob(32)))",
            "'sha256:' || lower(hex(randomblob(32)))",
            "ok",
            "CASE WHEN ok = 0 THEN 'ffmpeg exited with status 1' END",
            "lower(hex(randomblob(16)))",
        ]
    )
    conn.execute(
        "WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < :runs - 1) "
        f"INSERT INTO processing_stats ({columns}) SELECT {values} FROM ("
        "SELECT n, 1000000000 + (n * 2654435761) % 4000000000 AS b, "
        "500000000 + (n * 40503 + 12345) % 3000000000 AS a, (n * 7 % 20 != 0) AS ok FROM c)",
        {
            "runs": runs,
            "files": FILES,
            "start": start_epoch,
            "span": SPAN_SECONDS,
            "policies": POLICIES,
        },
    )
    if with_actions:
        conn.execute(
            "INSERT INTO action_results (stats_id, action_type, track_type, track_index, "
            "before_state, after_state, success, duration_ms, rule_reference, message) "
            'SELECT s.id, k.t, k.tt, k.i, \'{"language":"fre"}\', \'{"removed":true}\', 1, 12, '
            "'phases[0].keep_audio.languages', 'removed' FROM processing_stats s, "
            "(SELECT 'remove_track' t, 'audio' tt, 2 i "
            "UNION ALL SELECT 'remove_track', 'subtitle', 5 "
            "UNION ALL SELECT 'set_default', 'audio', 1 "
            "UNION ALL SELECT 'remove_attachment', 'attachment', 7) k"
        )
        conn.execute(
            "INSERT INTO performance_metrics (stats_id, phase_name, wall_time_seconds, bytes_read, "
            "bytes_written) SELECT s.id, k.p, 1.5, 2000000000, 1500000000 FROM processing_stats s, "
            "(SELECT 'cleanup' p UNION ALL SELECT 'transcode') k"
        )
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.close()


def _median_ms(function: Callable[[], Any], repeat: int) -> float:
    function()  # warm: page cache and SQLite's statement cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _scrape(db: Path) -> Callable[[], bytes]:
    registry = CollectorRegistry()
    registry.register(LibraryCollector(db))
    return lambda: generate_latest(registry)


def _plain_history_gauges(conn: sqlite3.Connection) -> Callable[[], Any]:
    def run() -> Any:
        conn.execute(
            "SELECT policy_name, success, count(*) FROM processing_stats GROUP BY 1, 2"
        ).fetchall()
        return conn.execute(
            "SELECT policy_name, sum(size_change) FROM processing_stats GROUP BY 1"
        ).fetchall()

    return run


def _end_to_end(db: Path, repeat: int = 7) -> float:
    args = [str(VPO), "--db", str(db), "stats", "summary"]
    subprocess.run(args, capture_output=True, check=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(work: Path, runs: int, with_actions: bool, repeat: int) -> list[str]:
    db = work / f"stats-{runs}.db"
    started = time.perf_counter()
    _bulk_fill(db, runs, with_actions)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    conn = open_database(db)  # migrates to version 4: rollups and indexes
    migrated = time.perf_counter() - started
    size_gb = db.stat().st_size / 1e9
    rollups = conn.execute("SELECT count(*) FROM stats_rollups").fetchone()[0]
    print(
        f"{runs:,} runs: filled in {filled:.1f} s, migrated to v4 in {migrated:.1f} s, "
        f"{size_gb:.2f} GB, {rollups:,} rollup rows"
    )
    since = NOW - timedelta(days=90)
    busy_file = conn.execute(
        "SELECT file_id FROM processing_stats GROUP BY file_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    a_run = conn.execute(
        "SELECT id FROM processing_stats ORDER BY processed_at DESC LIMIT 1"
    ).fetchone()[0]
    naive_repeat = max(3, repeat // 10) if runs >= 1_000_000 else repeat

    def naive_summary() -> Any:
        plain_totals(conn)
        return time_range(conn)

    def naive_history() -> Any:
        return conn.execute(
            "SELECT * FROM processing_stats NOT INDEXED WHERE file_id = ? "
            "ORDER BY processed_at DESC LIMIT 20",
            (busy_file,),
        ).fetchall()

    def naive_detail() -> Any:
        conn.execute("SELECT * FROM processing_stats WHERE id = ?", (a_run,)).fetchall()
        conn.execute(
            "SELECT * FROM action_results NOT INDEXED WHERE stats_id = ?", (a_run,)
        ).fetchall()
        return conn.execute(
            "SELECT * FROM performance_metrics NOT INDEXED WHERE stats_id = ?", (a_run,)
        ).fetchall()

    rows = [
        (
            "summary (with rolling totals)",
            _median_ms(lambda: summary(conn, now=NOW), repeat),
            _median_ms(naive_summary, naive_repeat),
            "all-time plain aggregate + first/last",
        ),
        (
            "per-policy",
            _median_ms(lambda: policy_stats(conn), repeat),
            _median_ms(lambda: plain_totals(conn, by="policy"), naive_repeat),
            "GROUP BY policy_name",
        ),
        (
            "90-day window summary",
            _median_ms(lambda: summary(conn, since, NOW), repeat),
            _median_ms(lambda: plain_totals(conn, since, NOW), naive_repeat),
            "plain aggregate over the window (time index)",
        ),
        (
            "file history (busiest file, 20 runs)",
            _median_ms(lambda: file_history(conn, busy_file, 20), repeat),
            _median_ms(naive_history, naive_repeat),
            "same query without an index",
        ),
        (
            "run detail (run + actions + phases)",
            _median_ms(lambda: run_detail(conn, a_run), repeat),
            _median_ms(naive_detail, naive_repeat),
            "same queries without the stats_id indexes",
        ),
        (
            "/metrics scrape (library collector)",
            _median_ms(_scrape(db), repeat),
            _median_ms(_plain_history_gauges(conn), naive_repeat),
            "history gauges by GROUP BY over the runs",
        ),
    ]
    conn.close()
    lines = []
    for what, ours, naive, how in rows:
        line = f"  {what}: {ours:.2f} ms   (plain SQL: {naive:.1f} ms — {how})"
        print(line)
        lines.append(line)
    e2e = _end_to_end(db)
    print(f"  `vpo stats summary` end to end: {e2e:.0f} ms (process start to exit)")
    lines.append(_purge_oldest_tenth(db, runs))
    return lines


def _purge_oldest_tenth(db: Path, runs: int) -> str:
    """`vpo stats purge --before D --yes` of the oldest tenth of the runs, then a check
    that the rollups still give the plain SQL answer."""
    cutoff = NOW - timedelta(seconds=SPAN_SECONDS * 0.9)
    args = [str(VPO), "--db", str(db), "stats", "purge", "--before", cutoff.isoformat()]
    start = time.perf_counter()
    result = subprocess.run([*args, "--yes"], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    conn = open_database(db)
    try:
        assert summary(conn).total_size_saved == plain_totals(conn)[""].size_saved
        assert policy_stats(conn)[0].files_processed == max(
            t.runs for t in plain_totals(conn, by="policy").values()
        )
    finally:
        conn.close()
    line = f"  purge of the oldest tenth: {seconds:.1f} s; {result.stdout.strip()}"
    print(line)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        default="10000,100000,1000000,10000000",
        help="comma-separated database sizes (runs)",
    )
    parser.add_argument("--actions-up-to", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; sqlite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(prefix="vpo-bench-stats-", dir=ROOT) as work:
        for runs in (int(r) for r in args.runs.split(",")):
            measure(Path(work), runs, runs <= args.actions_up_to, args.repeat)
            for leftover in Path(work).glob("stats-*"):
                leftover.unlink()


if __name__ == "__main__":
    main()
