"""Opening the library database: where it is, the pragmas every connection needs, and
the version check that keeps an older VPO away from a newer database.

WAL and a busy timeout let a `vpo process` run, a `vpo serve` and a `vpo stats` query
share the file; foreign keys keep tracks and statistics tied to their files.
"""

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from vpo.db.interrupted import marker_path, reconcile_interrupted_runs
from vpo.db.migrations import SCHEMA_VERSION, migrate, schema_version
from vpo.errors import DatabaseError, PathNotFoundError

DB_ENV_VAR = "VPO_DB"
BUSY_TIMEOUT_SECONDS = 30.0
STATISTICS_VERSION = 2  # the schema version that brought processing_stats
# Below this much free space the disk counts as full: a run's rows and WAL frames take
# tens of kilobytes, so a batch would fail a few files in.
MIN_FREE_BYTES = 1 << 20
# SQLite's primary result codes that mean "this file is not (or no longer) a database".
_NOT_A_DATABASE = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_SQLITE_FULL = 13


def default_db_path() -> Path:
    return Path.home() / ".vpo" / "library.db"


def resolve_db_path(option: str | os.PathLike[str] | None = None) -> Path:
    """`--db` wins, then `VPO_DB`, then `~/.vpo/library.db`."""
    chosen = option or os.environ.get(DB_ENV_VAR) or default_db_path()
    return Path(chosen).expanduser().resolve()


# Pages the write-ahead log may hold before a commit copies them into the database (the
# default is 1,000: 4 MB). Runs have random UUIDv4 ids, so every run dirties a page in
# each of the indexes on them; a page changed by many runs between two checkpoints is
# copied back once. At 10,000 (40 MB of log at most) the statistics write of a run into a
# database of 100,000 runs costs about a fifth less (docs/benchmarks.md).
WAL_CHECKPOINT_PAGES = 10_000


def open_database(
    path: str | os.PathLike[str],
    *,
    migrate_to: int = SCHEMA_VERSION,
    busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    shared_between_threads: bool = False,
) -> sqlite3.Connection:
    """Open (creating if needed) and upgrade the database at `path`.

    A database from a newer VPO is refused before anything is written to it. Runs left
    unfinished by a process that died are recorded as interrupted failures here. Only
    the default folder (~/.vpo) is created: a mistyped --db must not start a second
    library (PathNotFoundError, exit 64).
    """
    db_path = Path(path)
    if db_path.exists() and not db_path.is_file():
        raise DatabaseError(f"The database path {db_path} is not a file.")
    _ensure_folder(db_path)
    try:
        conn = sqlite3.connect(
            db_path,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=not shared_between_threads,  # the caller then holds a lock
        )
    except sqlite3.Error as exc:
        raise explain_database_error(db_path, exc) from exc
    try:
        _check_version(conn, db_path)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        migrate(conn, migrate_to)
    except DatabaseError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise explain_database_error(db_path, exc) from exc
    if migrate_to >= STATISTICS_VERSION:
        try:
            reconcile_interrupted_runs(conn, db_path)
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise explain_database_error(db_path, exc) from exc
        except (ValueError, TypeError) as exc:  # a marker that cannot be read
            conn.close()
            raise DatabaseError(_damaged_markers(db_path, str(exc))) from exc
    return conn


def check_writable(
    db_path: str | os.PathLike[str],
    conn: sqlite3.Connection | None = None,
    *,
    commit: bool = True,
) -> None:
    """Prove that a run could be recorded now; raise DatabaseError naming the cause if not.

    Called before any media file is touched, so that a run never changes a file it cannot
    record. Checks that the folder, the database, its journal files and the run-markers
    file are writable and the disk has room, then commits a real write (the schema
    version rewritten as it is) through `conn`, or a connection of its own when None.
    `conn` must be in autocommit mode and outside a transaction. Without `commit`, only
    the checks around the files are made (cheap enough to repeat before every file).
    """
    path = Path(db_path)
    if not path.is_file():  # open_database creates it: call this after
        raise DatabaseError(f"There is no database at {path} to record runs in.")
    problem = _permission_problem(path) or _space_problem(path, None)
    if problem:
        raise DatabaseError(problem)
    if not commit:
        return
    own = conn is None
    try:
        if conn is None:
            conn = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=rw",
                uri=True,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
            )
        _committed_write(conn)
        _committed_write_to_markers(path)
    except sqlite3.Error as exc:
        raise explain_database_error(path, exc) from exc
    finally:
        if own and conn is not None:
            conn.close()


def explain_database_error(db_path: str | os.PathLike[str], exc: BaseException) -> DatabaseError:
    """The error to report when `exc` stopped a use of the database at `db_path`: the real
    cause around the file (a read-only folder or file, a damaged run-markers file, a full
    disk) when there is one, rather than blaming the database."""
    path = Path(db_path)
    cause = _permission_problem(path) or _markers_damage(path) or _space_problem(path, exc)
    return DatabaseError(cause or f"Cannot use the database {path}: {exc}.")


def check_db_folder(db_path: str | os.PathLike[str]) -> None:
    """Raise PathNotFoundError (exit 64) when the database's folder is missing and is not
    the default ~/.vpo, which is the only one VPO creates: a typo in --db or VPO_DB must
    not start a second, empty library."""
    path = Path(db_path)
    folder = path.parent
    if folder.is_dir():
        return
    if folder.exists():
        raise DatabaseError(f"The database folder {folder} is not a folder.")
    if folder.resolve() != default_db_path().parent.resolve():
        raise PathNotFoundError(
            f"The folder {folder} does not exist, so there is no database {path.name} in "
            "it; create the folder first (VPO creates only its default folder, ~/.vpo)."
        )


def _ensure_folder(db_path: Path) -> None:
    check_db_folder(db_path)
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"Cannot create the folder for the database {db_path}: {exc.strerror}."
        ) from exc


def _check_version(conn: sqlite3.Connection, db_path: Path) -> None:
    try:
        version = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        if _primary_code(exc) in _NOT_A_DATABASE:
            raise DatabaseError(f"{db_path} is not a VPO database ({exc}).") from exc
        raise explain_database_error(db_path, exc) from exc
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{db_path} was written by a newer VPO (schema version {version}, this VPO "
            f"knows up to {SCHEMA_VERSION}); upgrade VPO to use it. The file was not changed."
        )


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _companions(db_path: Path) -> list[tuple[Path, str]]:
    """The files SQLite and VPO keep beside the database, with what to call them."""
    markers = marker_path(db_path)
    return [
        (db_path, "database file"),
        (Path(f"{db_path}-wal"), "database journal"),
        (Path(f"{db_path}-shm"), "database journal"),
        (markers, "run-markers file"),
        (Path(f"{markers}-wal"), "run-markers journal"),
        (Path(f"{markers}-shm"), "run-markers journal"),
    ]


def _permission_problem(db_path: Path) -> str | None:
    """A sentence naming the read-only folder or file that stops writes, or None.

    `os.access` sees read-only mounts and immutable files (chattr +i) even for root.
    """
    folder = db_path.parent
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return (
            f"The database folder {folder} is read-only, so SQLite cannot create the journal "
            f"files it keeps beside {db_path.name}; make the folder writable or choose "
            "another --db."
        )
    for path, what in _companions(db_path):
        if path.exists() and not os.access(path, os.W_OK):
            return f"The {what} {path} is read-only; make it writable or choose another --db."
    return None


def _space_problem(db_path: Path, exc: BaseException | None) -> str | None:
    """A sentence saying the disk is full, when `exc` says so or almost no space is left."""
    try:
        stats = os.statvfs(db_path.parent)
    except OSError:
        return None
    blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail  # root may use reserve
    free = blocks * stats.f_frsize
    full = _primary_code(exc) == _SQLITE_FULL or (
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    )
    if not full and free >= MIN_FREE_BYTES:
        return None
    return (
        f"The disk holding {db_path} is full ({free // 1024} KiB free); free some space and "
        "run VPO again."
    )


def _committed_write(conn: sqlite3.Connection) -> None:
    """Commit a write that changes nothing: the schema version rewritten as it is."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        _roll_back(conn)
        raise


def _committed_write_to_markers(db_path: Path) -> None:
    """The same proof for the run-markers file, when it exists (else the folder check
    above already shows it can be created)."""
    path = marker_path(db_path)
    if not path.exists():
        return
    conn = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=2.0, isolation_level=None
    )
    try:
        _committed_write(conn)
    finally:
        conn.close()


def _markers_damage(db_path: Path) -> str | None:
    """A sentence saying the run-markers file is damaged, when it is (it is read by the
    reconciliation of interrupted runs and written by every run)."""
    path = marker_path(db_path)
    if not path.exists():
        return None
    try:
        probe = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            result = probe.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        return (
            _damaged_markers(db_path, str(exc)) if _primary_code(exc) in _NOT_A_DATABASE else None
        )
    return None if result == "ok" else _damaged_markers(db_path, str(result))


def _damaged_markers(db_path: Path, reason: str) -> str:
    return (
        f"The run-markers file {marker_path(db_path)} is damaged ({reason[:80]}); move it "
        "aside and run VPO again (it lists only the runs in progress; the statistics are "
        f"kept in {db_path.name})."
    )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` … `COMMIT`, rolled back on any error.

    IMMEDIATE takes the write lock up front, so two writers queue on the busy timeout
    instead of one failing with "database is locked" halfway through. A write refused by
    the environment (a read-only file or folder, a full disk) becomes a DatabaseError
    naming that cause; any other error passes unchanged.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        _raise_environment_error(conn, exc)
        raise
    try:
        yield conn
    except BaseException as exc:
        _roll_back(conn)  # unless SQLite already did (after a full disk, an I/O error)
        if isinstance(exc, sqlite3.Error):
            _raise_environment_error(conn, exc)
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _roll_back(conn)
        _raise_environment_error(conn, exc)
        raise


def _roll_back(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlite3.Error):  # the first error is the one to report
            conn.execute("ROLLBACK")


# Primary result codes by which SQLite says the file system refused it: SQLITE_PERM,
# SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
_ENVIRONMENT_CODES = {3, 8, 10, 13, 14}


def _raise_environment_error(conn: sqlite3.Connection, exc: sqlite3.Error) -> None:
    """Raise a DatabaseError naming what around the database refused `exc`'s write; return
    when SQLite gave no such reason or none is found (the caller re-raises `exc`)."""
    if _primary_code(exc) not in _ENVIRONMENT_CODES:
        return
    try:
        files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
    except sqlite3.Error:
        return
    if not files or not files[0]:
        return  # an in-memory database
    path = Path(files[0])
    cause = _permission_problem(path) or _space_problem(path, exc)
    if cause:
        raise DatabaseError(cause) from exc
