"""Watch passes, one at a time, with the real processor, tools and database: what a pass
runs, what it leaves to the next, and what it remembers across a restart."""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import CLEANUP, EXAMPLES, query
from vpo.ownership import claim
from vpo.policy.loader import load_policy
from vpo.samples import SampleFile
from vpo.telemetry.setup import build_telemetry
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor
from vpo.workflow.scan import DEFAULT_EXTENSIONS
from vpo.workflow.watch import PassReport, Watcher

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
