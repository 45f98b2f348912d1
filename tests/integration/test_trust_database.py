"""The database as the cause: a read-only database file or folder, a full disk and a
damaged run-markers file are each named in one sentence — never "is not a VPO database"
or an unexpected error — and `vpo process` changes no file whose run it could not record.

Every cause is real: chattr +i (chmod when not root), a small tmpfs filled to the last
byte, garbage written over `library.db.runs`."""

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import database_with_files, fill_disk, query, read_only, run_vpo
from vpo.db.connection import (
    check_writable,
    explain_database_error,
    open_database,
    transaction,
)
from vpo.db.interrupted import marker_path
from vpo.db.migrations import migrate
from vpo.errors import DatabaseError

CLEANUP = Path(__file__).parents[2] / "examples" / "policies" / "language-cleanup.yaml"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _one_sentence(stderr: str, sentence: str) -> None:
    """The command's one error is `sentence`, with no warning or traceback around it (a
    progress line may come before it)."""
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Error:")] == [f"Error: {sentence}"], stderr
    assert not any(line.startswith(("WARNING", "Traceback")) for line in lines), stderr
    assert "not a VPO database" not in stderr and "unexpected" not in stderr


def _read_only_file(db: Path) -> str:
    return f"The database file {db} is read-only; make it writable or choose another --db."


def _read_only_folder(db: Path) -> str:
    return (
        f"The database folder {db.parent} is read-only, so SQLite cannot create the journal "
        f"files it keeps beside {db.name}; make the folder writable or choose another --db."
    )


def _full_disk(db: Path) -> str:
    return f"The disk holding {db} is full (0 KiB free); free some space and run VPO again."


def _damaged_markers(db: Path) -> str:
    return (
        f"The run-markers file {marker_path(db)} is damaged (file is not a database); move it "
        "aside and run VPO again (it lists only the runs in progress; the statistics are kept "
        f"in {db.name})."
    )


def _process_changes_nothing(db: Path, library: Path, sentence: str) -> None:
    before = _digests(library)
    result = run_vpo("--db", db, "process", "--policy", CLEANUP, library)
    assert result.returncode == 1, result.stdout + result.stderr
    _one_sentence(result.stderr, sentence)
    assert _digests(library) == before  # no file touched, no temporary file left


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A healthy library database in a folder of its own, closed (no -wal, no -shm)."""
    folder = tmp_path / "db"
    folder.mkdir()
    return database_with_files(folder / "library.db")


def test_a_healthy_database_passes_and_the_check_commits(db: Path) -> None:
    watcher = sqlite3.connect(db)
    seen = watcher.execute("PRAGMA data_version").fetchone()[0]
    check_writable(db)
    conn = open_database(db)
    check_writable(db, conn)
    assert watcher.execute("PRAGMA data_version").fetchone()[0] > seen  # really committed
    assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == 1
    conn.close()
    watcher.close()
    with pytest.raises(DatabaseError, match="There is no database at"):
        check_writable(db.with_name("missing.db"))
    assert not db.with_name("missing.db").exists()


def test_a_read_only_database_file(db: Path, tmp_path: Path, library: Path) -> None:
    with read_only(db):
        with pytest.raises(DatabaseError) as caught:
            check_writable(db)
        assert str(caught.value) == _read_only_file(db)
        scan = run_vpo("--db", db, "scan", library)  # opens fine, then cannot store a file
        assert scan.returncode == 1
        _one_sentence(scan.stderr, _read_only_file(db))
    old = tmp_path / "db" / "old.db"  # one that needs an upgrade, which is a write
    conn = sqlite3.connect(old, isolation_level=None)
    migrate(conn, target=3)
    conn.close()
    with read_only(old):
        stats = run_vpo("--db", old, "stats", "summary")
        assert stats.returncode == 1
        _one_sentence(stats.stderr, _read_only_file(old))


def test_a_read_only_database_folder(db: Path, library: Path) -> None:
    sentence = _read_only_folder(db)
    with read_only(db.parent):  # SQLite cannot make the -shm it needs even to read
        with pytest.raises(DatabaseError) as caught:
            open_database(db)
        assert str(caught.value) == sentence
        with pytest.raises(DatabaseError) as caught:
            check_writable(db)
        assert str(caught.value) == sentence
        for command in (["scan", library], ["stats", "summary"]):
            result = run_vpo("--db", db, *command)
            assert result.returncode == 1
            _one_sentence(result.stderr, sentence)
    conn = open_database(db)
    with read_only(db.parent):  # the journal files exist: reads work, the check still fails
        assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == 1
        with pytest.raises(DatabaseError) as caught:
            check_writable(db, conn)
        assert str(caught.value) == sentence
    conn.close()


def test_a_full_disk(small_disk: Path, library: Path) -> None:
    db = database_with_files(small_disk / "library.db")
    fill_disk(small_disk)
    sentence = _full_disk(db)
    with pytest.raises(DatabaseError) as caught:
        check_writable(db)
    assert str(caught.value) == sentence
    with pytest.raises(DatabaseError) as caught:
        open_database(db)  # SQLite cannot even make its shared-memory file
    assert str(caught.value) == sentence
    stats = run_vpo("--db", db, "stats", "summary")
    assert stats.returncode == 1
    _one_sentence(stats.stderr, sentence)
    (small_disk / "filler").unlink()
    assert query(db, "SELECT count(*) FROM files")[0][0] == 1  # the library is intact


def test_a_write_that_meets_a_full_disk(small_disk: Path) -> None:
    """Once SQLite's files exist, the disk fills up under an open connection."""
    db = database_with_files(small_disk / "library.db")
    conn = open_database(db)
    fill_disk(small_disk)
    row = "INSERT INTO files (path, size_bytes, mtime, scanned_at) VALUES (?, 1, 1, 'x')"
    with pytest.raises(sqlite3.OperationalError) as failed:
        conn.execute(row, ("/x" * 50_000,))
    assert str(explain_database_error(db, failed.value)) == _full_disk(db)
    with pytest.raises(DatabaseError) as caught, transaction(conn):
        conn.execute(row, ("/y" * 50_000,))
    assert str(caught.value) == _full_disk(db)
    assert not conn.in_transaction  # rolled back, the connection usable again
    assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == 1
    conn.close()


def test_a_damaged_run_markers_file(db: Path, library: Path) -> None:
    markers = marker_path(db)
    markers.write_bytes(b"not the run markers \x00\xff" * 300)
    sentence = _damaged_markers(db)
    with pytest.raises(DatabaseError) as caught:
        open_database(db)
    assert str(caught.value) == sentence
    with pytest.raises(DatabaseError) as caught:
        check_writable(db)
    assert str(caught.value) == sentence
    stats = run_vpo("--db", db, "stats", "summary")
    assert stats.returncode == 1
    _one_sentence(stats.stderr, sentence)
    markers.unlink()
    assert run_vpo("--db", db, "stats", "summary").returncode in (0, 65)  # healthy again


# --- `vpo process` touches no file whose run it could not record ------------------------
# These need `vpo process` to call check_writable before the batch.


@pytest.mark.parametrize("cause", ["read-only file", "read-only folder", "damaged markers"])
def test_process_touches_nothing_when_runs_cannot_be_recorded(
    db: Path, library: Path, cause: str
) -> None:
    if cause == "damaged markers":
        marker_path(db).write_bytes(b"garbage" * 500)
        _process_changes_nothing(db, library, _damaged_markers(db))
        return
    target, sentence = (
        (db, _read_only_file(db))
        if cause == "read-only file"
        else (db.parent, _read_only_folder(db))
    )
    with read_only(target):
        _process_changes_nothing(db, library, sentence)
    assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 0


def test_process_touches_nothing_on_a_full_disk(small_disk: Path, library: Path) -> None:
    db = database_with_files(small_disk / "library.db")
    fill_disk(small_disk)
    _process_changes_nothing(db, library, _full_disk(db))
