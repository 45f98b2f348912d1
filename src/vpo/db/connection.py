"""Opening the library database: where it is, the pragmas every connection needs, and
the version check that keeps an older VPO away from a newer database.

WAL and a busy timeout let a `vpo process` run, a `vpo serve` and a `vpo stats` query
share the file; foreign keys keep tracks and statistics tied to their files.
"""

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vpo.db.interrupted import reconcile_interrupted_runs
from vpo.db.migrations import SCHEMA_VERSION, migrate, schema_version
from vpo.errors import DatabaseError

DB_ENV_VAR = "VPO_DB"
BUSY_TIMEOUT_SECONDS = 30.0
STATISTICS_VERSION = 2  # the schema version that brought processing_stats


def default_db_path() -> Path:
    return Path.home() / ".vpo" / "library.db"


def resolve_db_path(option: str | os.PathLike[str] | None = None) -> Path:
    """`--db` wins, then `VPO_DB`, then `~/.vpo/library.db`."""
    chosen = option or os.environ.get(DB_ENV_VAR) or default_db_path()
    return Path(chosen).expanduser().resolve()


def open_database(
    path: str | os.PathLike[str],
    *,
    migrate_to: int = SCHEMA_VERSION,
    busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    shared_between_threads: bool = False,
) -> sqlite3.Connection:
    """Open (creating if needed) and upgrade the database at `path`.

    A database from a newer VPO is refused before anything is written to it. Runs left
    unfinished by a process that died are recorded as interrupted failures here.
    """
    db_path = Path(path)
    if db_path.exists() and not db_path.is_file():
        raise DatabaseError(f"The database path {db_path} is not a file.")
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"Cannot create the folder for the database {db_path}: {exc.strerror}."
        ) from exc
    try:
        conn = sqlite3.connect(
            db_path,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=not shared_between_threads,  # the caller then holds a lock
        )
    except sqlite3.Error as exc:
        raise DatabaseError(f"Cannot open the database {db_path}: {exc}.") from exc
    try:
        _check_version(conn, db_path)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, migrate_to)
        if migrate_to >= STATISTICS_VERSION:
            reconcile_interrupted_runs(conn, db_path)
    except DatabaseError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseError(f"Cannot use the database {db_path}: {exc}.") from exc
    return conn


def _check_version(conn: sqlite3.Connection, db_path: Path) -> None:
    try:
        version = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{db_path} is not a VPO database ({exc}).") from exc
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{db_path} was written by a newer VPO (schema version {version}, this VPO "
            f"knows up to {SCHEMA_VERSION}); upgrade VPO to use it. The file was not changed."
        )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` … `COMMIT`, rolled back on any error.

    IMMEDIATE takes the write lock up front, so two writers queue on the busy timeout
    instead of one failing with "database is locked" halfway through.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
