"""Watch passes, one at a time, with the real processor, tools and database: what a pass
runs, what it leaves to the next, and what it remembers across a restart. With --queue
(a real redis-server), what a pass enqueues and how the workers' runs settle the files:
the worker's side is played by taking the messages from Redis and running the real
processor in the message's trace, recorded by the exporter the server's ingest feeds."""

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from opentelemetry import context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.helpers import CLEANUP, EXAMPLES, query
from vpo.ownership import claim
from vpo.policy.loader import load_policy, parse_policy
from vpo.queue.enqueue import Enqueuer
from vpo.queue.message import FileMessage
from vpo.samples import SampleFile
from vpo.telemetry.setup import build_telemetry
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor
from vpo.workflow.scan import DEFAULT_EXTENSIONS
from vpo.workflow.watch import PassReport, Watcher
from vpo.workflow.watch_queue import QueueWatcher

INTERVAL = 60.0  # passes are called by hand; this only sets how long "still" is


def _age(path: Path, seconds: float = 3600) -> None:
    """Make the file look untouched for `seconds`: it is run on first sight."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "watched"
    folder.mkdir()
    return folder


@pytest.fixture
def watcher(tmp_path: Path, watched: Path) -> Iterator[Callable[..., Watcher]]:
    """Makes watchers over `watched` on one database, as restarts of a server would;
    each is closed and its telemetry flushed at the end (or when the next is made)."""
    db = tmp_path / "vpo.db"
    open_ones: list[tuple[Watcher, LibraryStore, object]] = []

    def close_all() -> None:
        while open_ones:
            made, store, telemetry = open_ones.pop()
            made.close()
            store.close()
            assert telemetry.shutdown() == []  # type: ignore[attr-defined]

    def make(policy: Path = CLEANUP) -> Watcher:
        close_all()
        telemetry = build_telemetry(db)
        store = LibraryStore(db)
        processor = FileProcessor(load_policy(policy), store, telemetry.tracer, telemetry.metrics)
        made = Watcher([watched], processor, DEFAULT_EXTENSIONS, interval=INTERVAL)
        open_ones.append((made, store, telemetry))
        return made

    yield make
    close_all()


def _ran(report: PassReport) -> list[tuple[str, bool]]:
    return sorted((r.path.name, r.success) for r in report.batch.runs)


def test_a_failing_file_is_retried_only_when_it_changes(
    watcher: Callable[..., Watcher], watched: Path, sample_files: list[SampleFile]
) -> None:
    broken = watched / "broken.mkv"
    broken.write_bytes(b"not a video file " * 4096)
    _age(broken)
    watch = watcher()

    assert _ran(watch.run_pass()) == [("broken.mkv", False)]
    for _ in range(3):
        again = watch.run_pass()
        assert _ran(again) == [] and again.settled == 1  # not retried while unchanged

    shutil.copyfile(sample_files[0].path, broken)  # the user puts a good file there
    changed = watch.run_pass()
    assert _ran(changed) == [] and changed.waiting == [broken]  # new mtime: one pass still
    assert _ran(watch.run_pass()) == [("broken.mkv", True)]
    assert _ran(watch.run_pass()) == []


def test_a_file_that_keeps_changing_waits_and_one_that_holds_still_runs(
    watcher: Callable[..., Watcher], watched: Path, sample_files: list[SampleFile]
) -> None:
    data = sample_files[0].path.read_bytes()
    growing = watched / "download.mkv"
    growing.write_bytes(data[: len(data) // 3])
    watch = watcher()

    first = watch.run_pass()
    assert _ran(first) == [] and first.waiting == [growing]
    with growing.open("ab") as out:
        out.write(data[len(data) // 3 : 2 * len(data) // 3])
    second = watch.run_pass()
    assert _ran(second) == [] and second.waiting == [growing]  # size changed since
    with growing.open("ab") as out:
        out.write(data[2 * len(data) // 3 :])
    assert _ran(watch.run_pass()) == []  # changed once more
    assert _ran(watch.run_pass()) == [("download.mkv", True)]  # held still for a pass


def test_settled_files_survive_a_restart_and_a_new_policy_runs_them_again(
    watcher: Callable[..., Watcher], watched: Path, sample_files: list[SampleFile]
) -> None:
    for sample in sample_files:
        shutil.copyfile(sample.path, watched / sample.path.name)
        _age(watched / sample.path.name)
    names = sorted(s.path.name for s in sample_files)
    first = watcher().run_pass()
    assert [name for name, _ok in _ran(first)] == names
    assert all(ok for _name, ok in _ran(first))

    restarted = watcher()  # a new server process on the same database
    for _ in range(2):
        report = restarted.run_pass()
        assert _ran(report) == [] and report.settled == len(names)

    # A comment does not change what the policy means: still settled.
    reworded = watched.parent / "reworded.yaml"
    reworded.write_text("# the same policy, reworded\n" + CLEANUP.read_text())
    assert _ran(watcher(reworded).run_pass()) == []

    other = watcher(EXAMPLES / "cleanup-organize.yaml").run_pass()
    assert [name for name, _ok in _ran(other)] == names
    rows = query(
        watched.parent / "vpo.db", "SELECT count(*), count(DISTINCT policy_digest) FROM watch_files"
    )
    assert tuple(rows[0]) == (len(names), 1)


def test_a_file_another_vpo_holds_is_left_for_a_later_pass(
    watcher: Callable[..., Watcher], watched: Path, sample_files: list[SampleFile]
) -> None:
    movie = watched / sample_files[0].path.name
    shutil.copyfile(sample_files[0].path, movie)
    _age(movie)
    watch = watcher()
    with claim(watched.parent / "vpo.db", movie.resolve()):
        held = watch.run_pass()
    assert [r.path for r in held.batch.skipped] == [movie.resolve()] and _ran(held) == []
    assert _ran(watch.run_pass()) == [(movie.name, True)]


def test_a_file_gone_from_the_folder_is_forgotten(
    watcher: Callable[..., Watcher], watched: Path, sample_files: list[SampleFile]
) -> None:
    movie, other = watched / "movie.mkv", watched / "season" / "other.mkv"
    other.parent.mkdir()
    for target in (movie, other):
        shutil.copyfile(sample_files[0].path, target)
        _age(target)
    watch = watcher()
    assert len(_ran(watch.run_pass())) == 2
    kept = movie.read_bytes()
    movie.unlink()
    assert watch.run_pass().files == 1
    rows = query(watched.parent / "vpo.db", "SELECT path FROM watch_files")
    assert [r[0] for r in rows] == [str(other)]
    movie.write_bytes(kept)  # back, as a new file
    _age(movie)
    assert _ran(watch.run_pass()) == [("movie.mkv", True)]


def test_a_library_that_vanishes_whole_is_not_forgotten(
    watcher: Callable[..., Watcher], watched: Path, sample_files: list[SampleFile]
) -> None:
    """An unmounted share looks like an empty folder: when it is back, nothing runs again."""
    show = watched / "show"
    show.mkdir()
    for n in range(2):
        shutil.copyfile(sample_files[0].path, show / f"e{n}.mkv")
        _age(show / f"e{n}.mkv")
    watch = watcher()
    assert len(_ran(watch.run_pass())) == 2
    away = watched.parent / "away"
    show.rename(away)  # the share goes away
    gone = watch.run_pass()
    assert gone.files == 0 and _ran(gone) == []
    assert query(watched.parent / "vpo.db", "SELECT count(*) FROM watch_files")[0][0] == 2
    away.rename(show)  # and comes back, unchanged
    back = watch.run_pass()
    assert back.settled == 2 and _ran(back) == []


def test_a_failed_run_settles_a_file_put_back_but_not_one_changed_meanwhile(
    watched: Path, sample_files: list[SampleFile]
) -> None:
    """After a failed run the file's mtime may have moved: VPO put the original back (same
    bytes: settled, not retried), or someone wrote to it (new work: not settled)."""
    from vpo.media.hashing import partial_hash
    from vpo.workflow.processor import RunResult
    from vpo.workflow.watch import Observed, _changed_during_run

    movie = watched / "movie.mkv"
    shutil.copyfile(sample_files[0].path, movie)
    _age(movie)
    before = Observed.of(movie.stat())
    failed = RunResult(movie, "id", False, "boom", hash_before=partial_hash(movie))
    assert not _changed_during_run(failed, before, before)
    movie.write_bytes(movie.read_bytes())  # the same bytes written back: a new mtime
    put_back = Observed.of(movie.stat())
    assert put_back != before and not _changed_during_run(failed, before, put_back)
    with movie.open("r+b") as out:  # someone else's edit
        out.write(b"\0" * 16)
    assert _changed_during_run(failed, before, Observed.of(movie.stat()))


# -- with --queue: passes enqueue, workers' runs settle (vpo.workflow.watch_queue) -----------

MESSAGES, WAITING, DEAD = "dramatiq:vpo.msgs", "dramatiq:vpo", "dramatiq:vpo.XQ"


@pytest.fixture
def queue_watcher(
    tmp_path: Path, watched: Path, redis_url: str
) -> Iterator[Callable[..., QueueWatcher]]:
    """Makes queue watchers over `watched` on one database and one Redis, as restarts of
    `vpo serve --watch --queue` would; each is closed at the end."""
    made: list[QueueWatcher] = []

    def make(lost_after: float = 600.0) -> QueueWatcher:
        for old in made:
            old.close()
            old.enqueuer.close()
        enqueuer = Enqueuer(tmp_path / "vpo.db", CLEANUP.read_text(), redis_url)
        watch = QueueWatcher(
            [watched],
            load_policy(CLEANUP),
            enqueuer,
            DEFAULT_EXTENSIONS,
            interval=INTERVAL,
            lost_after=lost_after,
        )
        made.append(watch)
        return watch

    yield make
    for watch in made:
        watch.close()
        watch.enqueuer.close()


def _take(url: str) -> list[FileMessage]:
    """Take every waiting message and acknowledge it, as a worker that ran it would."""
    client = redis.Redis.from_url(url)
    try:
        ids = client.lrange(WAITING, 0, -1)
        bodies = [client.hget(MESSAGES, i) for i in ids]
        client.delete(WAITING)
        if ids:
            client.hdel(MESSAGES, *ids)
    finally:
        client.close()
    return [FileMessage.from_dict(json.loads(body)["args"][0]) for body in bodies if body]


def _dead_letter(url: str) -> int:
    """Move every waiting message to the dead letters, as a worker refusing it does."""
    client = redis.Redis.from_url(url)
    try:
        ids = client.lrange(WAITING, 0, -1)
        for message_id in ids:
            client.zadd(DEAD, {message_id: time.time() * 1000})
            client.hset(f"{DEAD}.msgs", message_id, client.hget(MESSAGES, message_id) or b"")
            client.hdel(MESSAGES, message_id)
        client.delete(WAITING)
    finally:
        client.close()
    return len(ids)


def _run_as_worker(db: Path, message: FileMessage) -> str:
    """The message's run by the real processor, in the message's trace, recorded in `db`
    by the statistics exporter that the server's OTLP ingest feeds; its stats id."""
    telemetry = build_telemetry(db)
    store = LibraryStore(db)
    try:
        processor = FileProcessor(
            parse_policy(message.policy_yaml), store, telemetry.tracer, telemetry.metrics
        )
        parent = TraceContextTextMapPropagator().extract({"traceparent": message.traceparent})
        token = context.attach(parent)
        try:
            result = processor.process(Path(message.root) / message.relative_path)
        finally:
            context.detach(token)
    finally:
        store.close()
        assert telemetry.shutdown() == []
    assert result.stats_id is not None and result.trace_id == message.trace_id
    return result.stats_id


def _settled_row(db: Path, path: Path) -> tuple[object, ...]:
    (row,) = query(db, "SELECT success, stats_id FROM watch_files WHERE path = ?", (str(path),))
    return tuple(row)


def test_queued_a_file_is_enqueued_once_and_settled_by_its_run(
    queue_watcher: Callable[..., QueueWatcher],
    watched: Path,
    redis_url: str,
    sample_files: list[SampleFile],
) -> None:
    movie = watched / "movie.mkv"
    shutil.copyfile(next(s.path for s in sample_files if "multilang" in s.path.name), movie)
    _age(movie)
    size_before = movie.stat().st_size
    watch = queue_watcher()

    first = watch.run_pass()
    assert first.enqueued == [movie] and _ran(first) == []
    (message,) = _take(redis_url)
    assert (message.size, message.relative_path) == (size_before, "movie.mkv")
    assert _settled_row(watched.parent / "vpo.db", movie) == (0, f"queued:{message.trace_id}")
    restarted = queue_watcher()  # what was enqueued survives a restart
    assert restarted.run_pass().enqueued == []  # its run not arrived, its message taken

    stats_id = _run_as_worker(watched.parent / "vpo.db", message)
    assert movie.stat().st_size < size_before  # the run changed the file
    arrived = restarted.run_pass()
    assert arrived.arrived == [(movie, True)] and arrived.enqueued == []
    assert _settled_row(watched.parent / "vpo.db", movie) == (1, stats_id)
    for _ in range(2):
        again = restarted.run_pass()
        assert again.enqueued == [] and again.settled == 1


def test_queued_a_failed_run_settles_its_file_until_it_changes(
    queue_watcher: Callable[..., QueueWatcher],
    watched: Path,
    redis_url: str,
    sample_files: list[SampleFile],
) -> None:
    broken = watched / "broken.mkv"
    broken.write_bytes(b"not a video file " * 4096)
    _age(broken)
    watch = queue_watcher()
    assert watch.run_pass().enqueued == [broken]
    (message,) = _take(redis_url)
    stats_id = _run_as_worker(watched.parent / "vpo.db", message)
    assert watch.run_pass().arrived == [(broken, False)]
    assert _settled_row(watched.parent / "vpo.db", broken) == (0, stats_id)
    for _ in range(2):
        assert watch.run_pass().enqueued == []  # not retried while unchanged

    shutil.copyfile(sample_files[0].path, broken)  # the user puts a good file there
    assert watch.run_pass().waiting == [broken]  # a new mtime: one pass still
    assert watch.run_pass().enqueued == [broken]


def test_queued_a_file_changed_after_its_run_is_new_work(
    queue_watcher: Callable[..., QueueWatcher],
    watched: Path,
    redis_url: str,
    sample_files: list[SampleFile],
) -> None:
    movie = watched / "movie.mkv"
    shutil.copyfile(sample_files[0].path, movie)
    _age(movie)
    watch = queue_watcher()
    watch.run_pass()
    (message,) = _take(redis_url)
    _run_as_worker(watched.parent / "vpo.db", message)
    with movie.open("ab") as out:  # someone else's edit after the run, before the pass
        out.write(b"\0" * 4096)
    changed = watch.run_pass()
    assert changed.arrived == [] and changed.waiting == [movie]
    assert watch.run_pass().enqueued == [movie]


def test_queued_a_run_on_its_way_holds_and_a_lost_message_is_enqueued_again(
    queue_watcher: Callable[..., QueueWatcher],
    watched: Path,
    redis_url: str,
    sample_files: list[SampleFile],
) -> None:
    """A message taken whose run has not arrived (its spans in a worker's spool) holds
    its file, changed or not, for `lost_after`; then it is lost and enqueued again."""
    moved, kept = watched / "moved.mkv", watched / "kept.mkv"
    for target in (moved, kept):
        shutil.copyfile(sample_files[0].path, target)
        _age(target)
    watch = queue_watcher()
    assert sorted(watch.run_pass().enqueued) == [kept, moved]
    assert len(_take(redis_url)) == 2  # taken and acknowledged; no run arrives
    with moved.open("ab") as out:  # as that run would have changed it
        out.write(b"\0" * 4096)
    _age(moved)
    held = watch.run_pass()
    assert held.enqueued == [] and held.queued == 2

    watch.lost_after = 0.0
    lost = watch.run_pass()
    assert sorted(lost.enqueued) == [kept, moved]  # both held still: enqueued at once
    assert len(_take(redis_url)) == 2


def test_queued_a_refused_message_settles_an_unchanged_file_until_it_changes(
    queue_watcher: Callable[..., QueueWatcher],
    watched: Path,
    redis_url: str,
    sample_files: list[SampleFile],
) -> None:
    """A dead-lettered message (a worker could not read the file: a wrong --path-map)
    settles its file: not enqueued again until it changes — or until the run of that
    dead letter, retried by hand, arrives and settles it."""
    movie, other = watched / "movie.mkv", watched / "other.mkv"
    for target in (movie, other):
        shutil.copyfile(sample_files[0].path, target)
        _age(target)
    db = watched.parent / "vpo.db"
    watch = queue_watcher(lost_after=0.0)
    watch.run_pass()
    assert _dead_letter(redis_url) == 2
    refused = watch.run_pass()
    assert sorted(refused.refused) == [movie, other] and refused.enqueued == []
    assert _settled_row(db, movie)[0] == 0 and str(_settled_row(db, movie)[1]).startswith(
        "refused:"
    )
    assert watch.run_pass().enqueued == []  # settled, though it is in no queue now

    with other.open("ab") as out:  # changed: new work
        out.write(b"\0" * 4096)
    _age(other)
    assert watch.run_pass().enqueued == [other]

    client = redis.Redis.from_url(redis_url)  # `vpo queue retry` of movie's dead letter
    try:
        bodies = [json.loads(b)["args"][0] for b in client.hvals(f"{DEAD}.msgs")]
    finally:
        client.close()
    (letter,) = [FileMessage.from_dict(b) for b in bodies if b["relative_path"] == movie.name]
    stats_id = _run_as_worker(db, letter)
    assert watch.run_pass().arrived == [(movie, True)]
    assert _settled_row(db, movie) == (1, stats_id)


def test_queued_nothing_is_settled_while_redis_refuses(
    queue_watcher: Callable[..., QueueWatcher],
    watched: Path,
    redis_url: str,
    sample_files: list[SampleFile],
) -> None:
    """Redis failing in the middle of a pass (here: out of memory, so PING still answers
    and the message is refused): the pass stops enqueuing and says so; the files are not
    settled, and the next pass enqueues them."""
    movie = watched / "movie.mkv"
    shutil.copyfile(sample_files[0].path, movie)
    _age(movie)
    watch = queue_watcher()
    client = redis.Redis.from_url(redis_url)
    try:
        client.config_set("maxmemory", 1)
        failed = watch.run_pass()
        assert failed.enqueued == [] and failed.problem is not None
        assert query(watched.parent / "vpo.db", "SELECT count(*) FROM watch_files")[0][0] == 0
        client.config_set("maxmemory", 0)
    finally:
        client.close()
    assert watch.run_pass().enqueued == [movie]
