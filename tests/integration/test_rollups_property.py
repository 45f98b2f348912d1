"""Property: every aggregate answered from the rollups equals plain SQL over
`processing_stats`, for random histories, random windows and after random purges."""

import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import database_with_files
from tests.recorded import EPOCH, RunSpec, record, write_runs
from vpo.db import open_database
from vpo.db.aggregates import (
    Totals,
    plain_totals,
    policy_stats,
    summary,
    trends,
    window_totals,
)
from vpo.db.connection import transaction
from vpo.db.measures import MEASURES
from vpo.db.purge import PurgeFilter, count_purge, purge
from vpo.db.stats import insert_checked_runs
from vpo.timefmt import format_utc

TWO_YEARS = 2 * 366 * 86400
POLICIES = ["cleanup", "hevc", "anime", "ünïcode policy"]


def _near_edge(base: datetime) -> st.SearchStrategy[datetime]:
    """Times at or right beside the start of an hour, a day or a month."""
    return st.sampled_from(
        [timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1)]
    ).map(lambda d: base + d)


def _bucket_starts() -> st.SearchStrategy[datetime]:
    return st.one_of(
        st.integers(0, 24).map(
            lambda m: datetime(2024 + (10 + m) // 12, (10 + m) % 12 + 1, 1, tzinfo=UTC)
        ),
        st.integers(0, 2 * 366).map(lambda d: EPOCH + timedelta(days=d)),
        st.integers(0, 2 * 366 * 24).map(lambda h: EPOCH + timedelta(hours=h)),
    )


MOMENTS = st.one_of(
    st.integers(0, TWO_YEARS * 1_000_000).map(lambda us: EPOCH + timedelta(microseconds=us)),
    _bucket_starts().flatmap(_near_edge),
)

RUNS = st.builds(
    RunSpec,
    at=MOMENTS,
    policy=st.sampled_from(POLICIES),
    size_before=st.integers(0, 80 * 10**9),
    size_after=st.integers(0, 80 * 10**9),  # grown as well as shrunk
    success=st.booleans(),
    audio_removed=st.integers(0, 4),
    subtitles_removed=st.integers(0, 6),
    attachments_removed=st.integers(0, 3),
    transcoded=st.booleans(),
    skipped=st.booleans(),
    audio_transcoded=st.integers(0, 3),
    duration=st.floats(0, 50_000, allow_nan=False),
    actions=st.integers(0, 2),
    phases=st.integers(0, 2),
)
WINDOWS = st.tuples(st.none() | MOMENTS, st.none() | MOMENTS).map(
    lambda w: w if None in w or w[0] <= w[1] else (w[1], w[0])
)
PURGES = st.one_of(
    st.builds(PurgeFilter, before=MOMENTS),
    st.builds(PurgeFilter, policy=st.sampled_from(POLICIES)),
    st.builds(PurgeFilter, before=MOMENTS, policy=st.sampled_from(POLICIES)),
)


def _check_window(conn, since, until) -> None:
    for by in (None, "policy", "day"):
        assert window_totals(conn, since, until, by=by) == plain_totals(conn, since, until, by=by)
    where, params = ["1"], []
    if since is not None:
        where.append("processed_at >= ?")
        params.append(format_utc(since))
    if until is not None:
        where.append("processed_at < ?")
        params.append(format_utc(until))
    sql_where = " AND ".join(where)
    plain = conn.execute(
        f"SELECT count(*), coalesce(sum(success), 0), coalesce(sum(size_change), 0), "
        f"min(processed_at), max(processed_at), avg(duration_seconds) "
        f"FROM processing_stats WHERE {sql_where}",
        params,
    ).fetchone()
    result = summary(conn, since, until)
    assert (result.total_files_processed, result.total_successful, result.total_size_saved) == (
        plain[0],
        plain[1],
        plain[2],
    )
    assert (result.earliest_processing, result.latest_processing) == (plain[3], plain[4])
    if plain[0]:
        assert abs(result.avg_processing_time - plain[5]) < 1e-6  # whole µs per run
    by_policy = {
        row[0]: (row[1], row[2], row[3])
        for row in conn.execute(
            f"SELECT policy_name, count(*), sum(size_change), max(processed_at) "
            f"FROM processing_stats WHERE {sql_where} GROUP BY policy_name",
            params,
        )
    }
    assert {
        p.policy_name: (p.files_processed, p.total_size_saved, p.last_used)
        for p in policy_stats(conn, since, until)
    } == by_policy
    for bucket, key in (
        # SQLite's date() would round 23:59:59.999999 up to the next day: cut the text.
        ("day", "substr(processed_at, 1, 10)"),
        ("week", "date(substr(processed_at, 1, 10), '-6 days', 'weekday 1')"),
        ("month", "substr(processed_at, 1, 7) || '-01'"),
    ):
        plain_trend = [
            tuple(row)
            for row in conn.execute(
                f"SELECT {key} AS b, count(*), sum(success), sum(size_before), sum(size_after) "
                f"FROM processing_stats WHERE {sql_where} GROUP BY b ORDER BY b",
                params,
            )
        ]
        assert [
            (t.bucket, t.runs, t.successes, t.size_before, t.size_after)
            for t in trends(conn, since, until, bucket)
        ] == plain_trend


def _check_rollup_table(conn) -> None:
    """The rollup rows themselves equal a rebuild from scratch (no empty leftovers)."""
    names = ", ".join(MEASURES)
    stored = sorted(
        tuple(r)
        for r in conn.execute(f"SELECT span, bucket, policy_name, {names} FROM stats_rollups")
    )
    rebuilt = []
    for span, length in (("hour", 13), ("day", 10), ("month", 7)):
        sums = ", ".join(f"sum({e.format(r='s')})" for e in MEASURES.values())
        rebuilt += [
            tuple(r)
            for r in conn.execute(
                f"SELECT '{span}', substr(processed_at, 1, {length}) AS b, policy_name, {sums} "
                f"FROM processing_stats s GROUP BY b, policy_name"
            )
        ]
    assert stored == sorted(rebuilt)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    runs=st.lists(RUNS, min_size=0, max_size=60),
    windows=st.lists(WINDOWS, min_size=1, max_size=4),
    purges=st.lists(PURGES, max_size=2),
    batch=st.integers(0, 25),
)
def test_rollups_equal_plain_sql(runs, windows, purges, batch) -> None:
    """`batch` 0: the runs written one by one (`insert_run`); else in writes of `batch`
    runs (`insert_checked_runs`, the exporter's batches), two writes per transaction."""
    with tempfile.TemporaryDirectory() as folder:
        path = database_with_files(Path(folder) / "vpo.db")
        conn = open_database(path)
        try:
            if batch:
                records = [record(spec) for spec in runs]
                for first in range(0, len(records), 2 * batch):
                    with transaction(conn):
                        insert_checked_runs(conn, records[first : first + batch])
                        insert_checked_runs(conn, records[first + batch : first + 2 * batch])
            else:
                write_runs(conn, runs)
            _check_rollup_table(conn)
            _check_window(conn, None, None)
            for since, until in windows:
                _check_window(conn, since, until)
            for which in purges:
                expected = count_purge(conn, which)
                where, params = which.where()
                assert (
                    expected.runs
                    == conn.execute(
                        f"SELECT count(*) FROM processing_stats WHERE {where}", params
                    ).fetchone()[0]
                )
                assert purge(conn, which) == expected
                assert count_purge(conn, which).runs == 0
                _check_rollup_table(conn)
                _check_window(conn, None, None)
                for since, until in windows:
                    _check_window(conn, since, until)
        finally:
            conn.close()


def test_empty_database_answers_zero(tmp_path: Path) -> None:
    conn = open_database(database_with_files(tmp_path / "vpo.db"))
    assert window_totals(conn) == {} == plain_totals(conn)
    result = summary(conn, now=datetime(2026, 11, 24, tzinfo=UTC))
    assert result.total_files_processed == 0 and result.earliest_processing is None
    assert [r.runs for r in result.rolling] == [0, 0, 0, 0, 0]
    assert Totals().success_rate == 0.0 and Totals().savings_percent == 0.0


def test_a_real_run_replacing_its_interrupted_row_is_counted_once(tmp_path: Path) -> None:
    """The exporter replaces a run recorded as interrupted (while it was alive) by its real
    row: a delete, then an insert in the same transaction. The interrupted row is the last
    one, so the real row takes its rowid again — and must still be added to the rollups
    (they are added by rowid above the largest before the insert)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tests.synthetic import SyntheticRun, emit
    from vpo.telemetry.exporter import StatsSpanExporter

    path = database_with_files(tmp_path / "vpo.db")
    conn = open_database(path)
    write_runs(conn, [RunSpec(EPOCH + timedelta(hours=1))])
    run = SyntheticRun(file_id=1, size_before=5_000_000, size_after=3_000_000)
    guess = record(RunSpec(EPOCH, size_after=5_000_000, success=False))
    with transaction(conn):  # what the reconciliation of a run thought dead writes
        insert_checked_runs(
            conn, [replace(guess, id=run.stats_id, error_message="interrupted: killed")]
        )
    last = conn.execute("SELECT max(rowid) FROM processing_stats").fetchone()[0]
    exporter = StatsSpanExporter(path)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        emit(provider.get_tracer("test"), None, run)
        assert exporter.problems == []
    finally:
        provider.shutdown()
    row = conn.execute(
        "SELECT rowid, success, size_after FROM processing_stats WHERE id = ?", (run.stats_id,)
    ).fetchone()
    assert tuple(row) == (last, 1, 3_000_000)  # the same rowid, the real values
    _check_rollup_table(conn)
    totals = plain_totals(conn)
    assert window_totals(conn) == totals
    assert sum(t.runs for t in totals.values()) == 2
    assert sum(t.successes for t in totals.values()) == 2
    conn.close()
