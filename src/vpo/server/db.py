"""Reading the database for the server without blocking its event loop.

A small thread pool does every SQLite call; each worker thread keeps a read-only
connection of its own (WAL lets it read while a batch writes), so the loop thread never
touches SQLite and no connection is shared between threads (docs/cli.md, `vpo serve`).
"""

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

READ_THREADS = 4
BUSY_TIMEOUT_SECONDS = 5.0  # a reader waits this long for a writer's checkpoint, then fails


def connect_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing database (never creates the file)."""
    conn = sqlite3.connect(
        f"{db_path.resolve().as_uri()}?mode=ro",
        uri=True,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=False,  # used by its own thread; closed by the pool at shutdown
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    return conn


class ReadPool:
    """Runs `fn(conn, *args)` in a worker thread with that thread's read connection."""

    def __init__(self, db_path: str | Path, threads: int = READ_THREADS) -> None:
        self.db_path = Path(db_path)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vpo-db")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(conn, *args)` off the loop, on this thread's connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._call, fn, *args))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` off the loop, for work that opens what it reads itself."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_read_only(self.db_path)
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        try:
            return fn(conn, *args)
        except sqlite3.Error:
            # Start afresh next time: the file may have been replaced or repaired.
            self._local.conn = None
            self._forget(conn)
            raise

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if conn in self._opened:
                self._opened.remove(conn)
        conn.close()

    def close(self) -> None:
        """Wait for running reads, then close every connection."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


def check_readable(db_path: Path) -> None:
    """Raise sqlite3.Error unless the statistics can be read from `db_path` now (a fresh
    connection: a pooled one keeps reading a file that was since removed)."""
    conn = connect_read_only(db_path)
    try:
        conn.execute("SELECT 1 FROM processing_stats LIMIT 1").fetchall()
    finally:
        conn.close()
