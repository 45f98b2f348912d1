"""Reading the database for the server without blocking its event loop.

A small thread pool does every SQLite call; each worker thread keeps a read-only
connection of its own (WAL lets it read while a batch writes), so the loop thread never
touches SQLite and no connection is shared between threads (docs/cli.md, `vpo serve`).

`cached` answers a repeated question from memory while nothing has been committed to
the database since the answer was computed: `PRAGMA data_version`, read in the pool on a
connection kept for it (one read serves every request that arrived before it started),
says whether anything was — by any connection of any process.
"""

import asyncio
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

READ_THREADS = 4
BUSY_TIMEOUT_SECONDS = 5.0  # a reader waits this long for a writer's checkpoint, then fails
CACHED_ANSWERS = 256  # distinct questions kept, least recently asked dropped first
CACHED_CHARS = 16_000_000  # and at most this much text (answers are JSON text)

Version = tuple[int, int]  # (probe connection number, its PRAGMA data_version)


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
        # The change probe: its own connection (data_version numbers are per connection,
        # so a new one starts a new series), used by one pool thread at a time.
        self._probe_conn: sqlite3.Connection | None = None
        self._probe_series = 0
        self._probe_lock = threading.Lock()
        self._next_probe: _Probe | None = None
        # The loop thread alone touches these.
        self._answers: OrderedDict[Hashable, tuple[Version, object, int]] = OrderedDict()
        self._answer_chars = 0
        self._computing: dict[Hashable, tuple[Version, asyncio.Future[object]]] = {}

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(conn, *args)` off the loop, on this thread's connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._call, fn, *args))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` off the loop, for work that opens what it reads itself."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    async def cached(self, fn: Callable[..., T], *args: Hashable) -> T:
        """`read(fn, *args)`, or the answer an earlier identical call computed if nothing
        has been committed to the database since: never older than the request. `fn`
        must depend on nothing but the database and `args` (a clock reading included, if
        it uses one). Failures are not kept."""
        version = await self._version()
        key = (fn, args)
        kept = self._answers.get(key)
        if kept is not None and kept[0] == version:
            self._answers.move_to_end(key)
            return kept[1]  # type: ignore[return-value]
        running = self._computing.get(key)
        if running is not None and running[0] == version:
            # Started after a probe that saw this same version, so it reads the database
            # as it is now (a commit since would have changed what the probes read).
            return await asyncio.shield(running[1])  # type: ignore[return-value]
        future: asyncio.Future[object] = asyncio.ensure_future(self.read(fn, *args))
        future.add_done_callback(_retrieve)  # a failure nobody awaits any more is not logged
        self._computing[key] = (version, future)
        try:
            answer = await asyncio.shield(future)
        finally:
            if self._computing.get(key, (None, None))[1] is future:
                del self._computing[key]
        # Kept with the version read *before* computing it: a commit during the
        # computation makes the next probe differ, and the answer is computed afresh.
        self._keep(key, version, answer)
        return answer

    def _keep(self, key: Hashable, version: Version, answer: object) -> None:
        chars = len(answer) if isinstance(answer, str) else 0
        replaced = self._answers.pop(key, None)
        if replaced is not None:
            self._answer_chars -= replaced[2]
        if chars > CACHED_CHARS // 4:
            return  # a huge answer would push out many small ones
        self._answers[key] = (version, answer, chars)
        self._answer_chars += chars
        while len(self._answers) > CACHED_ANSWERS or self._answer_chars > CACHED_CHARS:
            self._answer_chars -= self._answers.popitem(last=False)[1][2]

    async def _version(self) -> Version:
        """The database's change counter, read after this call began: a probe already
        running may have read it before the request came, so only one that has not
        started yet is shared."""
        probe = self._next_probe
        if probe is None or probe.started:
            probe = _Probe()
            loop = asyncio.get_running_loop()
            probe.future = loop.run_in_executor(self._executor, self._read_version, probe)
            self._next_probe = probe
        return await asyncio.shield(probe.future)

    def _read_version(self, probe: "_Probe") -> Version:
        probe.started = True  # before the read: later requests wait for the next probe
        with self._probe_lock:
            conn = self._probe_conn
            if conn is None:
                conn = connect_read_only(self.db_path)
                self._probe_conn = conn
                self._probe_series += 1
            try:
                return self._probe_series, conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                self._probe_conn = None
                conn.close()
                raise

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
        with self._probe_lock:
            if self._probe_conn is not None:
                self._probe_conn.close()
                self._probe_conn = None


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class _Probe:
    """One read of the change counter, shared by the requests that came before it began."""

    __slots__ = ("future", "started")

    def __init__(self) -> None:
        self.started = False  # set by the pool thread just before it reads
        self.future: asyncio.Future[Version]


def check_readable(db_path: Path) -> None:
    """Raise sqlite3.Error unless the statistics can be read from `db_path` now (a fresh
    connection: a pooled one keeps reading a file that was since removed)."""
    conn = connect_read_only(db_path)
    try:
        conn.execute("SELECT 1 FROM processing_stats LIMIT 1").fetchall()
    finally:
        conn.close()
