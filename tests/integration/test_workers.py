"""Per worker (issue #14): every run row names the host that ran it (schema version 7),
`vpo stats workers` / GET /api/stats/workers count runs per worker, and `vpo stats summary
--worker NAME` / GET /api/stats/summary?worker=NAME sum one worker's runs
(docs/statistics.md, "Workers"; docs/cli.md)."""

import csv
import io
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import database_with_files, invoke, query
from tests.integration.test_server_api import Server, start_server
from tests.recorded import EPOCH, RunSpec, days, write_runs
from vpo.db import SCHEMA_VERSION, open_database
from vpo.db.aggregates import summary
from vpo.db.interrupted import RunMarker, record_interrupted
from vpo.db.workers import worker_stats, workers_answer
from vpo.telemetry import attributes as attr
from vpo.telemetry.rows import build_run

WORKERS = ("nas", "gpu-box", "laptop", None)
NOW = EPOCH + days(100)


def _specs() -> list[RunSpec]:
    """60 runs over ~90 days from three workers and some of no known worker."""
    specs = []
    for i in range(60):
        specs.append(
            RunSpec(
                EPOCH + days(i * 1.5) + timedelta(minutes=i * 7),
                policy=("cleanup", "hevc")[i % 2],
                size_before=1_000_000 + i * 1000,
                size_after=900_000 - (i % 5) * 50_000 + (300_000 if i % 11 == 0 else 0),
                success=i % 7 != 3,
                file_id=1 + i % 3,
                duration=0.5 + (i % 9) * 1.25,
                worker=WORKERS[(i * 7) % 4],
            )
        )
    return specs


@pytest.fixture
def runs_db(tmp_path: Path) -> Path:
    db = database_with_files(tmp_path / "vpo.db", count=3)
    conn = open_database(db)
    try:
        write_runs(conn, _specs())
    finally:
        conn.close()
    return db


def _stats(db: Path, *args: str) -> Any:
    return invoke("--db", db, "stats", *args)


# -- the migration -----------------------------------------------------------------------------


def test_a_version_6_database_upgrades_with_its_runs_of_no_known_worker(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    conn = open_database(path, migrate_to=6)
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (1, '/a', 1, 1, 'x')"
    )
    write_runs(conn, [RunSpec(EPOCH + days(i)) for i in range(5)])
    conn.close()
    before = [tuple(r) for r in query(path, "SELECT * FROM processing_stats ORDER BY id")]
    assert query(path, "PRAGMA user_version")[0][0] == 6

    conn = open_database(path)
    try:
        assert query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
        after = query(path, "SELECT * FROM processing_stats ORDER BY id")
        assert [tuple(r)[:-1] for r in after] == before  # every value kept, in place
        assert {r["worker"] for r in after} == {None}  # not known then
        (row,) = worker_stats(conn)
        assert (row.worker, row.runs, row.last_seen) == (
            None,
            5,
            max(r["processed_at"] for r in after),
        )
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM processing_stats "
            "WHERE worker = 'x' AND processed_at >= '2025'"
        ).fetchall()
        assert any("idx_stats_worker" in str(tuple(step)) for step in plan)
    finally:
        conn.close()
    result = _stats(path, "workers")
    assert result.exit_code == 0, result.stderr
    assert "(unknown)" in result.stdout


# -- the worker of a run, as the exporter and the reconciliation record it --------------------


def _root_span(resource: Resource, worker: str | None = None) -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(attr.PROCESS_FILE) as span:
        span.set_attribute(attr.STATS_ID, "0c0ffee0-0000-4000-8000-000000000001")
        span.set_attribute(attr.FILE_ID, 1)
        span.set_attribute(attr.POLICY_NAME, "cleanup")
        span.set_attribute(attr.SIZE_BEFORE, 10)
        if worker is not None:
            span.set_attribute(attr.WORKER, worker)
    provider.shutdown()
    (root,) = exporter.get_finished_spans()
    return root


def test_the_worker_comes_from_the_span_its_resource_or_the_local_host() -> None:
    remote = Resource.create({attr.HOST_NAME: "worker-7"})
    assert build_run(_root_span(remote), [], []).record.worker == "worker-7"
    named = _root_span(remote, worker="explicit")
    assert build_run(named, [], [], default_worker="here").record.worker == "explicit"
    bare = _root_span(Resource.get_empty())
    assert build_run(bare, [], [], default_worker="here").record.worker == "here"
    assert build_run(bare, [], []).record.worker is None


def test_a_local_run_records_this_host_through_the_telemetry(tmp_path: Path) -> None:
    from vpo.telemetry.setup import build_telemetry

    db = database_with_files(tmp_path / "vpo.db")
    telemetry = build_telemetry(db, otlp=False)
    try:
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span(attr.PROCESS_FILE) as span:
            span.set_attribute(attr.STATS_ID, "0c0ffee0-0000-4000-8000-000000000002")
            span.set_attribute(attr.FILE_ID, 1)
            span.set_attribute(attr.POLICY_NAME, "cleanup")
            span.set_attribute(attr.SIZE_BEFORE, 10)
        assert telemetry.tracer_provider.force_flush()
    finally:
        telemetry.shutdown()
    (row,) = query(db, "SELECT worker FROM processing_stats")
    assert row["worker"] == socket.gethostname()


def test_an_interrupted_run_gets_the_host_of_its_marker(tmp_path: Path) -> None:
    db = database_with_files(tmp_path / "vpo.db")
    conn = open_database(db)
    try:
        marker = RunMarker(
            stats_id="0c0ffee0-0000-4000-8000-000000000003",
            file_id=1,
            file_path="/library/file-1.mkv",
            policy_name="cleanup",
            started_at="2026-01-01T00:00:00.000000Z",
            last_seen_at="2026-01-01T00:00:05.000000Z",
            trace_id=None,
            host="render-node-2",
            pid=4242,
            pid_started=None,
            attributes={"size_before": 100},
        )
        assert record_interrupted(conn, marker)
    finally:
        conn.close()
    (row,) = query(db, "SELECT worker, success FROM processing_stats")
    assert (row["worker"], row["success"]) == ("render-node-2", 0)


# -- the view ------------------------------------------------------------------------------------


def _plain(db: Path, since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    """Per worker, added up in Python from every row (independent of the view's SQL)."""
    rows = query(
        db,
        "SELECT worker, processed_at, success, size_before, size_after, duration_seconds "
        "FROM processing_stats",
    )
    low = None if since is None else since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    high = None if until is None else until.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    found: dict[str | None, dict[str, Any]] = {}
    for r in rows:
        if (low is not None and r["processed_at"] < low) or (
            high is not None and r["processed_at"] >= high
        ):
            continue
        w = found.setdefault(
            r["worker"],
            {"worker": r["worker"], "runs": 0, "successes": 0, "failures": 0,
             "total_size_saved": 0, "busy_seconds": 0.0, "first_seen": None, "last_seen": None},
        )  # fmt: skip
        w["runs"] += 1
        w["successes"] += r["success"]
        w["failures"] += 1 - r["success"]
        w["total_size_saved"] += r["size_before"] - r["size_after"]
        w["busy_seconds"] += r["duration_seconds"]
        w["first_seen"] = min(filter(None, (w["first_seen"], r["processed_at"])))
        w["last_seen"] = max(filter(None, (w["last_seen"], r["processed_at"])))
    ordered = sorted(found.values(), key=lambda w: (w["worker"] is None, w["worker"] or ""))
    for w in ordered:
        w["busy_seconds"] = round(w["busy_seconds"], 3)
    return ordered


WINDOWS = [
    (None, None),
    (EPOCH + days(10), None),
    (None, EPOCH + days(30)),
    (EPOCH + days(20.5), EPOCH + days(61.25)),
    (EPOCH + days(500), None),  # nothing in it
]


@pytest.mark.parametrize(("since", "until"), WINDOWS)
def test_worker_stats_equal_the_runs_added_up(
    runs_db: Path, since: datetime | None, until: datetime | None
) -> None:
    conn = open_database(runs_db)
    try:
        answer = workers_answer(worker_stats(conn, since, until))
    finally:
        conn.close()
    assert answer == {"workers": _plain(runs_db, since, until)}
    if since is None and until is None:
        assert [w["worker"] for w in answer["workers"]] == ["gpu-box", "laptop", "nas", None]
        assert sum(w["runs"] for w in answer["workers"]) == len(_specs())


# -- the CLI -------------------------------------------------------------------------------------


def test_stats_workers_table_json_and_csv(runs_db: Path) -> None:
    table = _stats(runs_db, "workers")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "worker",
        "runs",
        "failed",
        "saved",
        "busy",
        "last",
        "seen",
        "(UTC)",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["gpu-box", "laptop", "nas", "(unknown)"]

    expected = _plain(runs_db, None, None)
    as_json = _stats(runs_db, "workers", "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"workers": expected}

    as_csv = _stats(runs_db, "workers", "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == list(expected[0])
    assert [r["worker"] for r in rows] == ["gpu-box", "laptop", "nas", ""]
    assert [int(r["runs"]) for r in rows] == [w["runs"] for w in expected]
    assert [float(r["busy_seconds"]) for r in rows] == [w["busy_seconds"] for w in expected]

    windowed = _stats(runs_db, "workers", "--since", "2024-12-20", "--format", "json")
    since = datetime(2024, 12, 20, tzinfo=UTC)
    assert json.loads(windowed.stdout) == {"workers": _plain(runs_db, since, None)}


def test_stats_workers_with_nothing_recorded_exits_65(runs_db: Path, tmp_path: Path) -> None:
    late = _stats(runs_db, "workers", "--since", "2030-01-01")
    assert late.exit_code == 65
    assert "No processing runs recorded since" in late.stderr
    empty = database_with_files(tmp_path / "empty.db")
    result = _stats(empty, "workers", "--format", "json")
    assert result.exit_code == 65 and "No processing runs recorded" in result.stderr
    backwards = _stats(runs_db, "workers", "--since", "2025-02-01", "--until", "2025-01-01")
    assert backwards.exit_code == 2


def _only(tmp_path: Path, worker: str | None) -> Path:
    """A database holding only `worker`'s runs of _specs()."""
    db = database_with_files(tmp_path / f"only-{worker}.db", count=3)
    conn = open_database(db)
    try:
        write_runs(conn, [s for s in _specs() if s.worker == worker])
    finally:
        conn.close()
    return db


@pytest.mark.parametrize("worker", ["nas", "gpu-box"])
def test_summary_of_a_worker_is_the_summary_of_only_its_runs(
    runs_db: Path, tmp_path: Path, worker: str
) -> None:
    only = _only(tmp_path, worker)
    everything, alone = open_database(runs_db), open_database(only)
    try:
        for since, until in WINDOWS[:4]:
            filtered = summary(everything, since, until, NOW, worker=worker).to_dict()
            assert filtered == summary(alone, since, until, NOW).to_dict()
        assert summary(everything, now=NOW, worker=worker).rolling  # rolling totals too
    finally:
        everything.close()
        alone.close()
    for window in ((), ("--since", "2024-12-20", "--until", "2025-02-01")):
        cli = _stats(runs_db, "summary", "--worker", worker, *window, "--format", "json")
        reference = _stats(only, "summary", *window, "--format", "json")
        assert cli.exit_code == reference.exit_code == 0, cli.stderr
        got, expected = json.loads(cli.stdout), json.loads(reference.stdout)
        if not window:  # rolling totals are relative to now: the same now for both
            assert [r["runs"] for r in got.pop("rolling")] == [
                r["runs"] for r in expected.pop("rolling")
            ]
        assert got == expected


def test_summary_of_an_unknown_worker_exits_65(runs_db: Path) -> None:
    result = _stats(runs_db, "summary", "--worker", "nowhere")
    assert result.exit_code == 65
    assert "No processing runs recorded for the worker 'nowhere'" in result.stderr


# -- the API -------------------------------------------------------------------------------------


@pytest.fixture
def served(runs_db: Path) -> Iterator[Server]:
    server = start_server(runs_db, runs_db.parent)
    try:
        yield server
    finally:
        server.stop()


def _cli_json(db: Path, *args: str) -> Any:
    result = _stats(db, *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_the_api_answers_as_the_cli(served: Server, runs_db: Path) -> None:
    status, data, body = served.get("/api/stats/workers")
    assert status == 200, body
    assert data == _cli_json(runs_db, "workers")
    window = "since=2024-12-20&until=2025-02-01"
    status, data, _ = served.get(f"/api/stats/workers?{window}")
    assert data == _cli_json(runs_db, "workers", "--since", "2024-12-20", "--until", "2025-02-01")
    status, data, _ = served.get("/api/stats/workers?since=2030-01-01")
    assert (status, data) == (200, {"workers": []})

    status, data, body = served.get(f"/api/stats/summary?worker=nas&{window}")
    assert status == 200, body
    assert data == _cli_json(
        runs_db, "summary", "--worker", "nas", "--since", "2024-12-20", "--until", "2025-02-01"
    )
    status, data, _ = served.get("/api/stats/summary?worker=nas")
    cli = _cli_json(runs_db, "summary", "--worker", "nas")
    assert data["total_files_processed"] == cli["total_files_processed"]
    assert data["total_size_saved"] == cli["total_size_saved"]

    for bad in ("/api/stats/workers?policy=x", "/api/stats/workers?since=soon",
                f"/api/stats/summary?worker={'x' * 300}"):  # fmt: skip
        status, data, _ = served.get(bad)
        assert status == 400 and data["error"], bad
