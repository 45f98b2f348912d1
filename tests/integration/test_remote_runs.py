"""A remote worker's runs in progress on the server (issue #14, docs/workers.md): the
worker's `RunAnnouncer` sends `vpo.run.heartbeat` spans, the server's OTLP ingest keeps
them as markers, and a run whose heartbeats stop is recorded as interrupted with what
it had applied. Driven in-process through the real encoder, parser and exporter on a
real SQLite file; the worker processes themselves are in test_queue_interrupts.py."""

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

from tests.helpers import database_with_files, query
from vpo.db.connection import open_database
from vpo.db.interrupted import MarkerStore
from vpo.db.last_run import IN_PROGRESS, RECORDED, LastRun
from vpo.queue.announce import RunAnnouncer
from vpo.server.otlp_ingest import PROTOBUF, Ingest
from vpo.telemetry import attributes as attr
from vpo.telemetry.exporter import StatsSpanExporter

TIMEOUT = 0.5
RUN_1, RUN_2, RUN_3 = (str(uuid.uuid4()) for _ in range(3))
HOST = "worker-7"
BEFORE = {
    attr.FILE_ID: 1,
    attr.FILE_PATH: "/library/file-1.mkv",
    attr.POLICY_NAME: "cleanup",
    attr.PHASES_TOTAL: 2,
    attr.SIZE_BEFORE: 5_000_000,
    attr.AUDIO_BEFORE: 4,
    attr.SUBTITLE_BEFORE: 3,
    attr.ATTACHMENT_BEFORE: 2,
    attr.HASH_BEFORE: "sha256:" + "a" * 64,
    attr.VIDEO_SOURCE_CODEC: "h264",
}
AFTER_FIRST_PHASE = {
    attr.SIZE_AFTER: 4_000_000,
    attr.AUDIO_AFTER: 2,
    attr.SUBTITLE_AFTER: 3,
    attr.ATTACHMENT_AFTER: 2,
    attr.HASH_AFTER: "sha256:" + "b" * 64,
    attr.PHASES_COMPLETED: 1,
    attr.CHANGES_TOTAL: 2,
}


class Worker:
    """A worker's tracer whose announcements go straight into `ingest` (in this thread:
    the heartbeat thread's interval is an hour), and whose finished spans are kept."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.finished = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({attr.HOST_NAME: HOST}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.finished))
        self.announcer = RunAnnouncer(self._post, self.provider.resource, interval=3600)
        self.provider.add_span_processor(self.announcer)
        self.tracer = self.provider.get_tracer("test")
        self.posts = 0

    def _post(self, body: bytes) -> str | None:
        self.posts += 1
        self.ingest._receive(body, PROTOBUF)
        return None

    def start_run(self, stats_id: str) -> trace.Span:
        """A run that has completed its first phase of two (and is still going)."""
        root = self.tracer.start_span(attr.PROCESS_FILE, attributes={attr.STATS_ID: stats_id})
        root.set_attributes(BEFORE)  # set after the start, as the workflow does
        with trace.use_span(root), self.tracer.start_as_current_span(attr.PHASE) as phase:
            phase.set_attribute(attr.PHASE_NAME, "clean")
            root.set_attributes(AFTER_FIRST_PHASE)
        return root


@pytest.fixture
def server_db(tmp_path: Path) -> Path:
    return database_with_files(tmp_path / "server.db")


@pytest.fixture
def ingest(server_db: Path) -> Iterator[Ingest]:
    ingest = _ingest(server_db)
    yield ingest
    ingest.close()


def _ingest(db: Path) -> Ingest:
    return Ingest(db, StatsSpanExporter(db), "token", owns_exporter=True, worker_timeout=TIMEOUT)


def _markers(db: Path) -> list[str]:
    store = MarkerStore(db)
    try:
        return [marker.stats_id for marker in store.read()]
    finally:
        store.close()


def test_a_silent_workers_run_is_recorded_interrupted_with_what_it_applied(
    server_db: Path, ingest: Ingest
) -> None:
    worker = Worker(ingest)
    root = worker.start_run(RUN_1)
    assert worker.posts == 3  # the start, the first phase's start and its end
    assert _markers(server_db) == [RUN_1]
    # What a next worker is told the file should be: as the first phase left it.
    assert ingest._last_run(1) == (True, _last(RUN_1, IN_PROGRESS, None, AFTER_FIRST_PHASE))
    assert ingest._last_run(99) == (False, None)  # not in the library
    assert ingest.reap() == 0  # heard just now
    # A local VPO opening the database leaves a remote worker's marker to the server.
    open_database(server_db).close()
    assert _markers(server_db) == [RUN_1]
    assert not query(server_db, "SELECT id FROM processing_stats")

    time.sleep(TIMEOUT + 0.2)  # the worker is gone: no more heartbeats
    assert ingest.reap() == 1
    [row] = query(server_db, "SELECT * FROM processing_stats")
    assert row["id"] == RUN_1 and row["success"] == 0
    assert row["error_message"].startswith(
        f"interrupted: worker {HOST} (pid {os.getpid()}) fell silent: no heartbeat for"
    )
    assert "after 1 of 2 phase(s)" in row["error_message"]
    assert (row["size_before"], row["size_after"]) == (5_000_000, 4_000_000)
    assert (row["audio_tracks_before"], row["audio_tracks_removed"]) == (4, 2)
    assert row["hash_after"] == "sha256:" + "b" * 64
    assert row["worker"] == HOST
    assert row["trace_id"] == format(root.get_span_context().trace_id, "032x")
    assert _markers(server_db) == []
    assert ingest.reap() == 0  # once
    assert ingest._last_run(1) == (True, _last(RUN_1, RECORDED, False, AFTER_FIRST_PHASE))

    # The worker was only cut off: a beat of the recorded run makes no marker again, and
    # its real spans, when they come, replace the interrupted row.
    worker.announcer._send([root])
    assert _markers(server_db) == []
    with trace.use_span(root), worker.tracer.start_as_current_span(attr.PHASE) as phase:
        phase.set_attribute(attr.PHASE_NAME, "tags")
    root.set_attributes({attr.PHASES_COMPLETED: 2, attr.CHANGES_TOTAL: 3})
    root.end()
    outcome = ingest.ingest(worker.finished.get_finished_spans())
    assert outcome.stored and outcome.runs == 1 and not outcome.rejected, outcome
    [row] = query(server_db, "SELECT * FROM processing_stats")
    assert (row["id"], row["success"], row["phases_completed"]) == (RUN_1, 1, 2)
    assert row["error_message"] is None
    assert ingest._last_run(1) == (True, _last(RUN_1, RECORDED, True, AFTER_FIRST_PHASE))
    worker.provider.shutdown()


def test_the_last_run_of_a_file_before_any_phase_left_it_as_it_was(
    server_db: Path, ingest: Ingest
) -> None:
    """A run in progress that has changed nothing yet says the file is as it found it;
    the newest of a file's runs in progress is the one that counts."""
    worker = Worker(ingest)
    first = worker.start_run(RUN_1)
    root = worker.tracer.start_span(attr.PROCESS_FILE, attributes={attr.STATS_ID: RUN_2})
    root.set_attributes(BEFORE)
    # Its first phase starts: the run is announced with its before values.
    phase = worker.tracer.start_span(attr.PHASE, context=trace.set_span_in_context(root))
    assert _markers(server_db) == [RUN_1, RUN_2]
    before = {attr.SIZE_AFTER: BEFORE[attr.SIZE_BEFORE], attr.HASH_AFTER: BEFORE[attr.HASH_BEFORE]}
    assert ingest._last_run(1) == (True, _last(RUN_2, IN_PROGRESS, None, before))
    phase.end()
    root.end()
    first.end()
    worker.provider.shutdown()


def _last(stats_id: str, state: str, success: bool | None, after: dict) -> LastRun:
    return LastRun(stats_id, state, success, HOST, after[attr.SIZE_AFTER], after[attr.HASH_AFTER])


def test_a_finished_run_leaves_no_marker_and_is_never_reaped(
    server_db: Path, ingest: Ingest
) -> None:
    worker = Worker(ingest)
    root = worker.start_run(RUN_2)
    root.set_attributes({attr.PHASES_COMPLETED: 1})
    root.end()
    ingest.ingest(worker.finished.get_finished_spans())
    assert _markers(server_db) == []  # the exporter dropped it with the run's rows
    worker.announcer._send([root])  # a beat that was on its way
    assert _markers(server_db) == []
    time.sleep(TIMEOUT + 0.2)
    assert ingest.reap() == 0
    [row] = query(server_db, "SELECT success FROM processing_stats")
    assert row["success"] == 1
    worker.provider.shutdown()


def test_a_restarted_server_gives_every_worker_a_full_timeout(server_db: Path) -> None:
    first = _ingest(server_db)
    worker = Worker(first)
    worker.start_run(RUN_3)
    first.close()
    time.sleep(TIMEOUT + 0.2)  # longer than the timeout, while no server listened
    second = _ingest(server_db)
    try:
        assert second.reap() == 0  # its beats may have been lost with the server
        worker.ingest = second
        worker.announcer._send(list(worker.announcer._live.values()))  # heard again
        time.sleep(TIMEOUT / 2)
        assert second.reap() == 0
        time.sleep(TIMEOUT + 0.2)
        assert second.reap() == 1
    finally:
        second.close()
        worker.provider.shutdown()
    [row] = query(server_db, "SELECT id, success FROM processing_stats")
    assert (row["id"], row["success"]) == (RUN_3, 0)


def test_a_heartbeat_that_names_no_run_is_refused_in_words(ingest: Ingest) -> None:
    context = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    beats = [
        ReadableSpan(name=attr.RUN_HEARTBEAT, context=context, attributes={}),
        ReadableSpan(
            name=attr.RUN_HEARTBEAT,
            context=context,
            attributes={attr.STATS_ID: RUN_1, attr.FILE_ID: 1, attr.RUN_STARTED_AT: "2026-01-01"},
        ),
    ]
    outcome = ingest.ingest(beats)
    assert outcome.rejected == 2 and outcome.runs == 0
    assert f"has no {attr.STATS_ID}" in outcome.problems[0]
    assert f"has no valid {attr.RUN_STARTED_AT}" in outcome.problems[1]  # no time zone
