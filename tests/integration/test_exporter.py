"""StatsSpanExporter behind a real BatchSpanProcessor that cuts runs across batches:
every row equals what its spans said, field by field, nothing missing or duplicated."""

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.helpers import database_with_files, query
from tests.synthetic import SyntheticRun, emit, ten_action_run
from vpo.db.interrupted import marker_path
from vpo.telemetry import attributes as attr
from vpo.telemetry.setup import Telemetry, build_telemetry

RUNS = 12


@pytest.fixture
def stats_db(tmp_path: Path) -> Path:
    return database_with_files(tmp_path / "stats.db", 3)


def _telemetry_with_copy(db: Path) -> tuple[Telemetry, InMemorySpanExporter]:
    telemetry = build_telemetry(db, max_export_batch_size=2, schedule_delay_millis=50)
    copy = InMemorySpanExporter()  # the same spans, kept to compute what the rows must be
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(copy))
    return telemetry, copy


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    seconds, rest = divmod(ns, 1_000_000_000)
    return (
        datetime.fromtimestamp(seconds, UTC)
        .replace(microsecond=rest // 1000)
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )


def _expected_stats(
    root: ReadableSpan, phases: list[ReadableSpan], actions: list[ReadableSpan]
) -> dict:
    a = root.attributes
    failed = root.status.status_code is StatusCode.ERROR
    after = {
        k: a.get(f"vpo.tracks.{k}.after", a[f"vpo.tracks.{k}.before"])
        for k in ("audio", "subtitle", "attachment")
    }
    size_after = a.get(attr.SIZE_AFTER, a[attr.SIZE_BEFORE])
    return {
        "id": a[attr.STATS_ID],
        "file_id": a[attr.FILE_ID],
        "processed_at": _iso(root.start_time),
        "policy_name": a[attr.POLICY_NAME],
        "size_before": a[attr.SIZE_BEFORE],
        "size_after": size_after,
        "size_change": a[attr.SIZE_BEFORE] - size_after,
        "audio_tracks_before": a[attr.AUDIO_BEFORE],
        "subtitle_tracks_before": a[attr.SUBTITLE_BEFORE],
        "attachments_before": a[attr.ATTACHMENT_BEFORE],
        "audio_tracks_after": after["audio"],
        "subtitle_tracks_after": after["subtitle"],
        "attachments_after": after["attachment"],
        "audio_tracks_removed": a[attr.AUDIO_BEFORE] - after["audio"],
        "subtitle_tracks_removed": a[attr.SUBTITLE_BEFORE] - after["subtitle"],
        "attachments_removed": a[attr.ATTACHMENT_BEFORE] - after["attachment"],
        "duration_seconds": (root.end_time - root.start_time) / 1e9,
        "phases_completed": a[attr.PHASES_COMPLETED],
        "phases_total": a[attr.PHASES_TOTAL],
        "total_changes": a[attr.CHANGES_TOTAL],
        "video_source_codec": a[attr.VIDEO_SOURCE_CODEC],
        "video_target_codec": a.get(attr.VIDEO_TARGET_CODEC),
        "video_transcode_skipped": 0,
        "video_skip_reason": None,
        "audio_tracks_transcoded": 0,
        "audio_tracks_preserved": a.get(attr.AUDIO_PRESERVED, 0),
        "hash_before": a[attr.HASH_BEFORE],
        "hash_after": a.get(attr.HASH_AFTER),
        "success": 0 if failed else 1,
        "error_message": root.status.description if failed else None,
        "trace_id": f"{root.context.trace_id:032x}",
        "worker": socket.gethostname(),  # a local run: this host (the resource's host.name)
    }


def _run_spans(spans: list[ReadableSpan], root: ReadableSpan) -> tuple[list, list]:
    phases = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
    phase_ids = {p.context.span_id for p in phases}
    actions = [s for s in spans if s.parent is not None and s.parent.span_id in phase_ids]
    return sorted(phases, key=lambda s: s.start_time), sorted(actions, key=lambda s: s.start_time)


def test_runs_split_across_batches_are_stored_exactly(stats_db: Path) -> None:
    telemetry, copy = _telemetry_with_copy(stats_db)
    runs = []
    for i in range(RUNS):
        run = ten_action_run(file_id=1 + i % 3, policy=f"policy-{i % 2}")
        if i == 5:
            run.fail_with = RuntimeError("mkvmerge exited with status 2: disk full")
        runs.append(run)
    workers = [
        threading.Thread(target=emit, args=(telemetry.tracer, telemetry.metrics, r))
        for r in runs[:4]
    ]
    for worker in workers:  # some runs concurrently, as --jobs will make them
        worker.start()
    for worker in workers:
        worker.join()
    for run in runs[4:]:
        emit(telemetry.tracer, telemetry.metrics, run)
    assert telemetry.shutdown() == []

    spans = list(copy.get_finished_spans())
    roots = [s for s in spans if s.name == attr.PROCESS_FILE]
    assert len(roots) == RUNS
    assert len(query(stats_db, "SELECT id FROM processing_stats")) == RUNS
    all_actions = query(stats_db, "SELECT * FROM action_results")
    all_phases = query(stats_db, "SELECT * FROM performance_metrics")
    assert len(all_actions) == (RUNS - 1) * 10 + 6  # the failed run stopped after phase 1
    assert len(all_phases) == (RUNS - 1) * 3 + 1

    for root in roots:
        phases, actions = _run_spans(spans, root)
        stats_id = root.attributes[attr.STATS_ID]
        (row,) = query(stats_db, "SELECT * FROM processing_stats WHERE id = ?", (stats_id,))
        stored = dict(row)
        expected = _expected_stats(root, phases, actions)
        assert stored.pop("duration_seconds") == pytest.approx(
            expected.pop("duration_seconds"), abs=1e-6
        )
        assert stored == expected

        action_rows = query(
            stats_db, "SELECT * FROM action_results WHERE stats_id = ? ORDER BY id", (stats_id,)
        )
        assert len(action_rows) == len(actions)
        for stored_action, span in zip(action_rows, actions, strict=True):
            a = span.attributes
            failed = span.status.status_code is StatusCode.ERROR
            assert dict(stored_action) == {
                "id": stored_action["id"],
                "stats_id": stats_id,
                "action_type": a[attr.ACTION_TYPE],
                "track_type": a.get(attr.TRACK_TYPE),
                "track_index": a.get(attr.TRACK_INDEX),
                "before_state": a.get(attr.ACTION_BEFORE),
                "after_state": a.get(attr.ACTION_AFTER),
                "success": 0 if failed else 1,
                "duration_ms": round((span.end_time - span.start_time) / 1e6),
                "rule_reference": a[attr.ACTION_RULE],
                "message": a[attr.ACTION_MESSAGE],
                "tool": a.get(attr.ACTION_TOOL),
                "tool_call": a.get(attr.ACTION_TOOL_CALL),
            }
            if stored_action["before_state"]:
                assert isinstance(json.loads(stored_action["before_state"]), dict)

        phase_rows = query(
            stats_db,
            "SELECT * FROM performance_metrics WHERE stats_id = ? ORDER BY id",
            (stats_id,),
        )
        assert [
            (
                r["phase_name"],
                r["bytes_read"],
                r["bytes_written"],
                r["encoding_fps"],
                r["encoding_bitrate"],
            )
            for r in phase_rows
        ] == [
            (
                p.attributes[attr.PHASE_NAME],
                p.attributes[attr.BYTES_READ],
                p.attributes[attr.BYTES_WRITTEN],
                p.attributes.get(attr.ENCODING_FPS),
                p.attributes.get(attr.ENCODING_BITRATE),
            )
            for p in phases
        ]
        for stored_phase, span in zip(phase_rows, phases, strict=True):
            assert stored_phase["wall_time_seconds"] == pytest.approx(
                (span.end_time - span.start_time) / 1e9
            )

    failed = query(stats_db, "SELECT * FROM processing_stats WHERE success = 0")
    assert [r["error_message"] for r in failed] == ["mkvmerge exited with status 2: disk full"]
    assert query(marker_path(stats_db), "SELECT count(*) FROM runs_in_progress")[0][0] == 0
    failed_root = next(r for r in roots if r.status.status_code is StatusCode.ERROR)
    assert [e.name for e in failed_root.events] == ["exception"]


def test_invalid_runs_are_refused_and_the_rest_stored(
    stats_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry = build_telemetry(stats_db, max_export_batch_size=2)
    good = ten_action_run(file_id=1)
    negative = SyntheticRun(file_id=2, size_before=-10, phases=[("only", [])])
    grown = ten_action_run(file_id=3)
    emit(telemetry.tracer, None, good)
    emit(telemetry.tracer, None, negative)
    # A run whose actions claim to have removed -1 audio tracks.
    with telemetry.tracer.start_as_current_span(
        attr.PROCESS_FILE,
        attributes={
            attr.STATS_ID: grown.stats_id,
            attr.FILE_ID: 3,
            attr.POLICY_NAME: "p",
            attr.SIZE_BEFORE: 10,
            attr.SIZE_AFTER: 10,
            attr.AUDIO_BEFORE: 1,
            attr.AUDIO_AFTER: 2,
            attr.AUDIO_REMOVED: -1,
        },
    ):
        pass
    # A run of a file the database does not know (foreign key).
    unknown = ten_action_run(file_id=999)
    emit(telemetry.tracer, None, unknown)
    # A run with one action whose before-state is not JSON: only that row goes.
    bad_action = ten_action_run(file_id=1)
    bad_action.phases[0][1][0].before = None
    emit(telemetry.tracer, None, bad_action)
    with (
        telemetry.tracer.start_as_current_span(
            attr.PROCESS_FILE,
            attributes={
                attr.STATS_ID: "5b1d7c8e-2a43-4f7e-9c1d-0a6b2f3e4d5c",
                attr.FILE_ID: 1,
                attr.POLICY_NAME: "p",
                attr.SIZE_BEFORE: 1,
                attr.PHASES_TOTAL: 1,
            },
        ),
        telemetry.tracer.start_as_current_span(attr.PHASE, attributes={attr.PHASE_NAME: "x"}),
    ):
        with telemetry.tracer.start_as_current_span(
            attr.ACTION,
            attributes={
                attr.ACTION_TYPE: "set_language",
                attr.ACTION_BEFORE: "{not json",
            },
        ):
            pass
        with telemetry.tracer.start_as_current_span(
            attr.ACTION, attributes={attr.ACTION_TYPE: "remove"}
        ):
            pass

    problems = telemetry.shutdown()

    stored = {r["id"] for r in query(stats_db, "SELECT id FROM processing_stats")}
    assert stored == {good.stats_id, bad_action.stats_id, "5b1d7c8e-2a43-4f7e-9c1d-0a6b2f3e4d5c"}
    assert len(problems) == 4
    assert any("size_before is negative (-10)" in p for p in problems)
    assert any("audio_tracks_removed is negative (-1)" in p for p in problems)
    assert any(unknown.stats_id in p and "FOREIGN KEY" in p for p in problems)
    assert any("before_state is not a JSON object" in p for p in problems)
    kept = query(
        stats_db,
        "SELECT action_type FROM action_results WHERE stats_id = ?",
        ("5b1d7c8e-2a43-4f7e-9c1d-0a6b2f3e4d5c",),
    )
    assert [r[0] for r in kept] == ["remove"]
    assert "statistics exporter" in caplog.text


def test_a_lock_that_goes_away_is_no_problem(stats_db: Path) -> None:
    telemetry = build_telemetry(stats_db, exporter_busy_timeout=0.2, schedule_delay_millis=60_000)
    run = ten_action_run(file_id=1)
    emit(telemetry.tracer, None, run)  # ended, waiting in the batch processor
    blocker = sqlite3.connect(stats_db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock beyond the timeout
    try:
        assert telemetry.tracer_provider.force_flush() is True  # the spans reach the exporter
        assert telemetry.exporter.force_flush() is False
        assert telemetry.exporter.pending_runs == 1
        problem = telemetry.recording_problem()  # failing for longer than the busy timeout
        assert problem is not None and "database is locked" in problem
        assert telemetry.exporter.problems == []  # not lost: kept for the next try
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert telemetry.exporter.force_flush() is True  # kept, and written once the lock is gone
    assert telemetry.recording_problem() is None
    assert telemetry.shutdown() == []  # a transient lock is not reported as a failure
    assert [r[0] for r in query(stats_db, "SELECT id FROM processing_stats")] == [run.stats_id]


def test_a_flush_never_waits_long_behind_a_locked_write(stats_db: Path) -> None:
    telemetry = build_telemetry(stats_db, schedule_delay_millis=60_000)  # 30 s busy timeout
    first = ten_action_run(file_id=1)
    emit(telemetry.tracer, None, first)
    blocker = sqlite3.connect(stats_db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process writes for long
    patient = threading.Thread(target=telemetry.exporter.force_flush)  # waits up to 30 s
    try:
        started = time.monotonic()
        flushing = threading.Thread(target=telemetry.tracer_provider.force_flush)
        flushing.start()  # the export of the batch: one short attempt, then kept
        flushing.join(timeout=10)
        assert not flushing.is_alive()
        patient.start()
        time.sleep(0.3)
        asked = time.monotonic()
        assert telemetry.recording_problem() is None  # locked for less than the busy timeout
        assert telemetry.exporter.problems == []
        assert telemetry.exporter.force_flush(timeout_millis=200) is False
        assert time.monotonic() - asked < 3  # never behind the patient writer's 30 s
        assert time.monotonic() - started < 6
        assert telemetry.exporter.pending_runs == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    patient.join(timeout=10)
    assert not patient.is_alive()
    assert telemetry.exporter.pending_runs == 0
    assert telemetry.shutdown() == []
    assert [r[0] for r in query(stats_db, "SELECT id FROM processing_stats")] == [first.stats_id]


def test_a_run_sqlite_cannot_hold_is_refused_alone(stats_db: Path) -> None:
    telemetry = build_telemetry(stats_db, max_export_batch_size=4, schedule_delay_millis=50)
    runs = [ten_action_run(file_id=1 + i % 3) for i in range(6)]
    runs[1].size_before = 2**63  # an integer SQLite cannot store
    runs[4].phases[0][1][0].track_index = 2**64
    for run in runs:
        emit(telemetry.tracer, None, run)
    problems = telemetry.shutdown()

    stored = {r[0] for r in query(stats_db, "SELECT id FROM processing_stats")}
    assert stored == {r.stats_id for i, r in enumerate(runs) if i not in (1, 4)}
    assert len(problems) == 2
    for bad in (runs[1], runs[4]):
        assert any(bad.stats_id in p and "OverflowError" in p for p in problems)
    assert query(marker_path(stats_db), "SELECT count(*) FROM runs_in_progress")[0][0] == 0


def test_bookkeeping_is_bounded(stats_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vpo.telemetry import exporter as exporter_module

    monkeypatch.setattr(exporter_module, "MAX_WAITING_SPANS", 20)
    monkeypatch.setattr(exporter_module, "MAX_PROBLEMS", 5, raising=False)
    telemetry = build_telemetry(stats_db, max_export_batch_size=8, schedule_delay_millis=50)
    tracer = telemetry.tracer
    for _ in range(30):  # runs whose roots never end (a bug): children wait, then go
        root = tracer.start_span(attr.PROCESS_FILE, attributes={attr.POLICY_NAME: "p"})
        with trace.use_span(root), tracer.start_as_current_span(attr.PHASE):
            for _ in range(2):
                with tracer.start_as_current_span(attr.ACTION):
                    pass
    for _ in range(12):  # runs of a file the library does not know: each refused
        emit(tracer, None, ten_action_run(file_id=999))
    telemetry.flush()

    exporter = telemetry.exporter
    assert len(exporter._waiting) <= 20
    assert len(exporter._children) <= 20  # no list left behind for roots that never came
    assert set(exporter._parent_of) == set(exporter._waiting)
    problems = telemetry.shutdown()
    assert len(problems) == 6
    assert problems[-1].startswith("… and ") and "more problem(s)" in problems[-1]


def test_a_write_of_many_runs_at_once_makes_the_rows_of_one_run_at_a_time(tmp_path: Path) -> None:
    """The exporter's fast path (`insert_checked_runs`: a few statements for a whole
    batch, no savepoint per run) stores exactly what `insert_run` run by run stores:
    every column of every row, ids included, and the rollups."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from vpo.db import open_database
    from vpo.db.stats import insert_checked_runs, insert_run
    from vpo.telemetry.rows import build_run

    provider = TracerProvider(resource=Resource({}))  # no host.name: some runs lack a worker
    kept = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    runs = [ten_action_run(file_id=1 + i % 3, policy=f"p{i % 2}") for i in range(5)]
    runs.append(SyntheticRun(file_id=2, phases=[]))  # no phase, no action
    runs.append(SyntheticRun(file_id=3, fail_with=RuntimeError("mkvmerge failed")))
    for run in runs:
        emit(provider.get_tracer("t"), None, run)
    spans = list(kept.get_finished_spans())
    records = []
    for n, root in enumerate(s for s in spans if s.name == attr.PROCESS_FILE):
        phases, actions = _run_spans(spans, root)
        worker = None if n % 2 else f"host-{n}"
        records.append(build_run(root, phases, actions, default_worker=worker).record)
    assert {r.worker is None for r in records} == {True, False}

    at_once = database_with_files(tmp_path / "at-once.db", 3)
    one_by_one = database_with_files(tmp_path / "one-by-one.db", 3)
    conn = open_database(at_once)
    conn.execute("BEGIN IMMEDIATE")
    insert_checked_runs(conn, records)
    conn.execute("COMMIT")
    conn.close()
    conn = open_database(one_by_one)
    conn.execute("BEGIN IMMEDIATE")
    for record in records:
        conn.execute("SAVEPOINT run")
        insert_run(conn, record)
        conn.execute("RELEASE run")
    conn.execute("COMMIT")
    conn.close()

    for sql in (
        "SELECT rowid, * FROM processing_stats ORDER BY rowid",
        "SELECT * FROM action_results ORDER BY id",
        "SELECT * FROM performance_metrics ORDER BY id",
        "SELECT * FROM stats_rollups ORDER BY span, bucket, policy_name",
    ):
        expected = [tuple(row) for row in query(one_by_one, sql)]
        assert [tuple(row) for row in query(at_once, sql)] == expected
        assert expected, sql
    assert len(query(at_once, "SELECT id FROM action_results")) == 50  # 5 runs x 10 actions


def test_build_run_makes_the_records_their_constructors_make() -> None:
    """`build_run` fills its records without the frozen dataclasses' `__init__`
    (`trusted_record`): each has every field, and equals, field for field, the record
    the constructor makes from the same values."""
    import dataclasses

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from vpo.telemetry.rows import build_run

    provider = TracerProvider(resource=Resource({}))
    kept = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    for run in (
        ten_action_run(file_id=1),
        SyntheticRun(file_id=2, phases=[]),
        SyntheticRun(file_id=3, fail_with=RuntimeError("mkvmerge failed")),
    ):
        emit(provider.get_tracer("t"), None, run)
    spans = list(kept.get_finished_spans())
    for root in (s for s in spans if s.name == attr.PROCESS_FILE):
        record = build_run(root, *_run_spans(spans, root)).record
        for made in (record, *record.actions, *record.phases):
            names = [f.name for f in dataclasses.fields(made)]
            assert list(vars(made)) == names
            constructed = type(made)(**vars(made))
            assert vars(constructed) == vars(made)
            assert constructed == made
            with pytest.raises(dataclasses.FrozenInstanceError):
                made.success = False  # type: ignore[misc]
