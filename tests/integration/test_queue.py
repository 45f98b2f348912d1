"""The queue end to end (issue #14, first slice): a real `redis-server`, a real `vpo serve`
with VPO_WORKER_TOKEN, `vpo process --queue` enqueueing the sample media and a `vpo worker`
subprocess running them. Every unchanged file is processed once and recorded on the
server under the server's file id, in the trace the enqueuer started; a file changed
after enqueueing is refused (not run, not retried: dead-lettered); SIGTERM stops the
worker with exit 0 (docs/cli.md, `vpo worker`)."""

import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.helpers import CLEANUP, SLOW_TRANSCODE, invoke, query, wait_for
from tests.queue_support import (
    dead_letters,
    enqueue,
    free_port,
    kill,
    runs,
    serve,
    spooled,
    start_worker,
    stop,
    until,
    worker_log,
)
from tests.queue_support import messages as waiting
from vpo.errors import InvalidInputError
from vpo.queue.broker import QUEUE_NAME
from vpo.queue.message import FileMessage, InvalidMessage, PathMap, policy_digest


def test_enqueued_files_are_run_once_by_a_worker_and_recorded_on_the_server(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    server_db = tmp_path / "server.db"
    enqueued = invoke(
        "--db", server_db, "process", "--policy", CLEANUP, "--queue", redis_url, library
    )
    files = sorted(path for path in library.iterdir() if path.is_file())
    assert enqueued.exit_code == 0, enqueued.stderr
    assert enqueued.stdout.strip() == f"Enqueued {len(files)} file(s)."
    messages = {m.relative_path: m for m in waiting(redis_url)}
    assert sorted(messages) == sorted(path.name for path in files)
    library_ids = {row["path"]: row["id"] for row in query(server_db, "SELECT id, path FROM files")}
    for name, message in messages.items():
        assert library_ids[str((library / name).resolve())] == message.file_id
        assert message.root == str(library.resolve())
    assert not query(server_db, "SELECT id FROM processing_stats")  # enqueued, not run

    changed = files[0]
    with changed.open("ab") as handle:  # after the enqueue: the worker must refuse it
        handle.write(b"\0" * 4096)
    # The worker reads the library through another folder: --path-map maps the root.
    mounted = tmp_path / "mnt"
    mounted.symlink_to(library)

    served = serve(server_db, tmp_path)
    worker = start_worker(
        redis_url, served.url, tmp_path, "--path-map", f"{library.resolve()}={mounted}"
    )
    try:
        until(
            lambda: runs(server_db) >= len(files) - 1 and dead_letters(redis_url) == 1,
            worker,
        )
        assert stop(worker) == [0]
    finally:
        kill(worker)
        assert served.stop() == 0
    log = worker_log(tmp_path)

    rows = query(
        server_db,
        "SELECT s.success, s.trace_id, f.path FROM processing_stats s "
        "JOIN files f ON f.id = s.file_id ORDER BY f.path",
    )
    by_path = {Path(row["path"]).name: row for row in rows}
    assert len(rows) == len(by_path) == len(files) - 1, log  # once each
    assert changed.name not in by_path
    assert f"refused {mounted / changed.name}: changed since it was enqueued" in log
    for name, row in by_path.items():
        assert row["success"] == 1, (name, log)
        assert row["trace_id"] == messages[name].trace_id  # the enqueuer's trace
        assert f"(trace {row['trace_id']})" in log
    assert dead_letters(redis_url) == 1  # the refused message, not retried
    assert not waiting(redis_url)  # nothing left waiting


def test_two_workers_run_each_file_exactly_once(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    server_db = tmp_path / "server.db"
    enqueue(server_db, CLEANUP, redis_url, library)
    files = sorted(path.name for path in library.iterdir())
    served = serve(server_db, tmp_path)
    folders = [tmp_path / "one", tmp_path / "two"]
    workers = []
    try:
        for folder in folders:
            workers.append(start_worker(redis_url, served.url, folder, "--jobs", "2"))
        until(lambda: runs(server_db) >= len(files), *workers)
        assert stop(*workers) == [0, 0]
    finally:
        kill(*workers)
        assert served.stop() == 0
    logs = [(folder / "worker.log").read_text() for folder in folders]
    rows = query(
        server_db,
        "SELECT s.success, f.path FROM processing_stats s JOIN files f ON f.id = s.file_id",
    )
    assert sorted(Path(row["path"]).name for row in rows) == files, logs
    assert all(row["success"] == 1 for row in rows), logs
    assert sum(log.count(" succeeded: ") for log in logs) == len(files), logs


def _slow_run_enqueued(library: Path, tmp_path: Path, redis_url: str) -> tuple[Path, set[Path]]:
    """One file's slow transcode enqueued for a server database in `tmp_path`; that
    database, and what the library folder holds before a worker takes it."""
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    server_db = tmp_path / "server.db"
    enqueue(server_db, slow, redis_url, library / "movie-h264-multilang.mkv")
    return server_db, set(library.iterdir())


def test_sigterm_interrupts_the_running_run_and_its_message_is_retried(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    server_db, before = _slow_run_enqueued(library, tmp_path, redis_url)
    served = serve(server_db, tmp_path)
    worker = start_worker(redis_url, served.url, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while set(library.iterdir()) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(library.iterdir()) != before, "the transcode never started writing"
        assert stop(worker) == [0]
        wait_for(lambda: runs(server_db), 30, "the interrupted run never arrived")
    finally:
        kill(worker)
        assert served.stop() == 0
    log = worker_log(tmp_path)
    [run] = query(server_db, "SELECT success, error_message FROM processing_stats")
    assert run["success"] == 0 and "interrupted by SIGTERM" in run["error_message"], log
    assert set(library.iterdir()) == before  # its temporary file removed
    client = redis.Redis.from_url(redis_url)
    try:  # waiting in the delay queue for its retry, not dead-lettered
        assert client.hlen(f"dramatiq:{QUEUE_NAME}.DQ.msgs") == 1, log
    finally:
        client.close()
    assert dead_letters(redis_url) == 0


def test_a_message_is_checked_before_anythingruns() -> None:
    policy = CLEANUP.read_text()
    fields = {
        "policy_yaml": policy,
        "policy_digest": policy_digest(policy),
        "root": "/media/tv",
        "relative_path": "show/e01.mkv",
        "file_id": 7,
        "size": 10,
        "mtime_ns": 1,
        "partial_hash": "sha256:00",
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }
    message = FileMessage.from_dict(fields)
    assert FileMessage.from_dict(message.to_dict()) == message
    assert message.trace_id == "1" * 32
    mapped = PathMap.parse(["/media=/mnt/a", "/media/tv=/mnt/tv"])
    for bad in ("media=/mnt", "/media", "/media="):  # a usage error: exit 2
        with pytest.raises(InvalidInputError):
            PathMap.parse([bad])
    assert message.local_path(mapped) == Path("/mnt/tv/show/e01.mkv")
    assert message.local_path(PathMap()) == Path("/media/tv/show/e01.mkv")
    for change in (
        {"policy_yaml": policy + "\n# edited"},
        {"relative_path": "../etc/passwd"},
        {"root": "relative"},
        {"file_id": "7"},
        {"traceparent": "nope"},
        {"extra": 1},
    ):
        with pytest.raises(InvalidMessage):
            FileMessage.from_dict({**fields, **change})
    with pytest.raises(InvalidMessage):
        FileMessage.from_dict({k: v for k, v in fields.items() if k != "size"})


def test_a_worker_whose_token_the_server_refuses_exits_1_before_takingmessages(
    tmp_path: Path, redis_url: str
) -> None:
    served = serve(tmp_path / "server.db", tmp_path)
    try:
        result = invoke(
            "worker", "--queue", redis_url, "--server", served.url, "--db", tmp_path / "w.db",
            env={"VPO_WORKER_TOKEN": "not-the-token"},
        )  # fmt: skip
    finally:
        assert served.stop() == 0
    assert result.exit_code == 1
    assert "answered 401" in result.stderr and "VPO_WORKER_TOKEN" in result.stderr
    assert "not-the-token" not in result.stderr


def test_a_worker_runs_nothing_while_the_server_is_away(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    """A file must never change without its run recorded: with the server stopped, the
    worker waits (files untouched, messages kept); when it is back, every run arrives."""
    server_db = tmp_path / "server.db"
    port = str(free_port())
    served = serve(server_db, tmp_path, port)
    worker = start_worker(redis_url, served.url, tmp_path)
    try:
        log_path = tmp_path / "worker.log"
        wait_for(lambda: "Worker ready" in log_path.read_text(), 60, "the worker never started")
        assert served.stop() == 0
        enqueue(server_db, CLEANUP, redis_url, library)
        files = sorted(path.name for path in library.iterdir())
        untouched = {name: (library / name).read_bytes() for name in files}
        deadline = time.monotonic() + 30
        while "waiting for the server" not in log_path.read_text():
            assert time.monotonic() < deadline and worker.poll() is None, log_path.read_text()
            time.sleep(0.1)
        time.sleep(3.0)  # a few checks more: still nothing run
        assert {name: (library / name).read_bytes() for name in files} == untouched
        served = serve(server_db, tmp_path, port)
        until(lambda: runs(server_db) >= len(files), worker)
        assert stop(worker) == [0]
    finally:
        kill(worker)
        served.stop()
    log = log_path.read_text()
    assert "the server answers again" in log, log
    rows = query(
        server_db,
        "SELECT s.success, f.path FROM processing_stats s JOIN files f ON f.id = s.file_id",
    )
    assert sorted(Path(r["path"]).name for r in rows) == files, log  # each once
    assert all(r["success"] == 1 for r in rows), log
    assert "not recorded" not in log and not waiting(redis_url)


def _run_while_the_server_stops(
    library: Path, tmp_path: Path, redis_url: str, port: str
) -> tuple[Path, subprocess.Popen]:
    """A worker takes the slow run of one file; the server stops while ffmpeg writes, and
    the run ends with its spans in the spool. Returns the server's db and the worker."""
    server_db, before = _slow_run_enqueued(library, tmp_path, redis_url)
    served = serve(server_db, tmp_path, port)
    worker = start_worker(redis_url, served.url, tmp_path)
    try:
        wait_for(lambda: set(library.iterdir()) != before, 30, "the transcode never started")
        assert served.stop() == 0  # in the middle of the run
        log_path = tmp_path / "worker.log"
        wait_for(lambda: " succeeded: " in log_path.read_text(), 60, "the run never ended")
        assert spooled(tmp_path), log_path.read_text()
        assert not query(server_db, "SELECT id FROM processing_stats")
        assert not waiting(redis_url)  # acknowledged: its spans are on disk
    except BaseException:
        worker.kill()
        worker.wait()
        raise
    return server_db, worker


def test_a_run_whose_server_stops_is_spooled_and_recorded_once_when_it_is_back(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    port = str(free_port())
    server_db, worker = _run_while_the_server_stops(library, tmp_path, redis_url, port)
    served = None
    try:
        served = serve(server_db, tmp_path, port)
        wait_for(lambda: not spooled(tmp_path), 30, "the spool was never sent")
        time.sleep(1.0)  # nothing more may arrive
        assert stop(worker) == [0]
    finally:
        kill(worker)
        if served is not None:
            assert served.stop() == 0
    log = worker_log(tmp_path)
    assert "will be sent when the server answers" in log, log
    assert "not recorded" not in log, log
    [run] = query(server_db, "SELECT success, trace_id FROM processing_stats")  # once
    assert run["success"] == 1, log
    assert f"(trace {run['trace_id']})" in log


def test_a_restarted_worker_sends_what_its_spool_kept_first(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    port = str(free_port())
    server_db, worker = _run_while_the_server_stops(library, tmp_path, redis_url, port)
    try:  # the server still away: the spool stays on disk
        assert stop(worker) == [0]
    finally:
        kill(worker)
    first_log = (tmp_path / "worker.log").read_text()
    assert "left in the spool" in first_log, first_log
    assert spooled(tmp_path), first_log
    (tmp_path / "worker.log").rename(tmp_path / "first-worker.log")
    served = serve(server_db, tmp_path, port)
    worker = start_worker(redis_url, served.url, tmp_path)  # the same --db, its spool
    try:
        wait_for(lambda: runs(server_db), 30, "the spooled run never arrived")
        time.sleep(1.0)  # nothing more may arrive
        assert stop(worker) == [0]
    finally:
        kill(worker)
        assert served.stop() == 0
    log = worker_log(tmp_path)
    assert not spooled(tmp_path), log
    assert not list((tmp_path / "worker.db.spool").iterdir()), log  # no temporary left
    [run] = query(server_db, "SELECT success, trace_id FROM processing_stats")  # once
    assert run["success"] == 1, (first_log, log)
    assert f"(trace {run['trace_id']})" in first_log
