"""The worker's spool: no run is lost in transit (issue #14).

Each export batch is encoded as one OTLP `ExportTraceServiceRequest` and written to the
spool folder next to the worker's scratch database (`<db>.spool/NNNNNNNNNN.pb`: written
to a temporary name, fsynced, renamed, the folder fsynced) before `export` answers
SUCCESS — so the worker acknowledges a message only once its run's spans are on disk.
The files are then sent by a background thread in order, oldest first (gzip, with the
worker's token), each deleted on a 2xx; a refusal or a connection failure keeps it and
stops there, and the thread tries again every few seconds. The server ignores a run it
already stored, so a file sent twice (the worker stopped between the 2xx and the
deletion) never makes two rows.

The spool is bounded (`MAX_FILES` files, `MAX_BYTES` bytes): beyond that an export fails
with a warning, and `problem()` tells the handler to take no more messages until it has
drained. What is left when the worker stops is sent first at its next start.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from vpo.queue.otlp_post import post_spans

log = logging.getLogger(__name__)

MAX_FILES = 10_000
MAX_BYTES = 1 << 30  # 1 GiB
RETRY_SECONDS = 3.0  # how often the background thread tries the server again
SEND_TIMEOUT_SECONDS = 10.0
SHUTDOWN_SECONDS = 5.0  # how long a stopping worker tries to send what is spooled
SUFFIX = ".pb"
TEMPORARY_PREFIX = ".tmp-"


def spool_folder(db_path: Path) -> Path:
    """The spool of the worker whose scratch database is `db_path`."""
    return db_path.with_name(db_path.name + ".spool")


class SpoolExporter(SpanExporter):
    """Spools every export batch durably, then sends the spool in order."""

    def __init__(
        self,
        folder: Path,
        endpoint: str,
        token: str,
        say: Callable[[str], None] = log.warning,
        max_files: int = MAX_FILES,
        max_bytes: int = MAX_BYTES,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.folder = folder
        self.endpoint = endpoint
        self.token = token
        self.say = say
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.retry_seconds = retry_seconds
        self._write_lock = threading.Lock()  # numbering and the size bound
        self._send_lock = threading.Lock()  # one sender at a time: the order is kept
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False  # the last send failed (logged once per outage)
        self._full = False
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(TEMPORARY_PREFIX + "*"):  # a write cut short: never acked
            stale.unlink(missing_ok=True)
        files = self._files()
        self._next = int(files[-1].stem) + 1 if files else 1
        self._bytes = sum(_size(path) for path in files)
        self._count = len(files)

    # -- the spool ---------------------------------------------------------------

    def _files(self) -> list[Path]:
        return sorted(path for path in self.folder.glob("*" + SUFFIX) if path.stem.isdigit())

    def pending(self) -> int:
        """The batches spooled and not yet accepted by the server."""
        with self._write_lock:
            return self._count

    @property
    def failing(self) -> bool:
        """The last send failed: the server does not take the spool now."""
        return self._failing

    def problem(self) -> str | None:
        """Why no more runs should start (the spool is full), or None."""
        with self._write_lock:
            if self._count >= self.max_files or self._bytes >= self.max_bytes:
                return (
                    f"the spool {self.folder} is full ({self._count:,} batches, "
                    f"{self._bytes / (1 << 20):,.1f} MiB); waiting for the server to take it"
                )
        return None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        data = encode_spans(spans).SerializeToString()
        with self._write_lock:
            if self._count + 1 > self.max_files or self._bytes + len(data) > self.max_bytes:
                if not self._full:
                    self._full = True
                    self.say(
                        f"WARNING: the spool {self.folder} is full ({self._count:,} batches, "
                        f"{self._bytes / (1 << 20):,.1f} MiB; at most {self.max_files:,} / "
                        f"{self.max_bytes / (1 << 20):,.0f} MiB): {len(spans)} span(s) "
                        "dropped, not recorded; no message is taken until it drains"
                    )
                return SpanExportResult.FAILURE
            self._full = False
            path = self.folder / f"{self._next:010d}{SUFFIX}"
            self._next += 1
            _write_durably(path, data)
            self._count += 1
            self._bytes += len(data)
        self._wake.set()  # sent by the background thread: a slow server never delays this
        return SpanExportResult.SUCCESS

    # -- sending -----------------------------------------------------------------

    def send_pending(self, deadline: float | None = None) -> bool:
        """Send the spooled batches oldest first, each deleted on a 2xx; stop at the first
        failure (or `deadline`, a `time.monotonic()`). True when the spool is empty."""
        with self._send_lock:
            for path in self._files():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                problem = self._send(path)
                if problem is not None:
                    if not self._failing:
                        self._failing = True
                        self.say(
                            f"spans spooled in {self.folder}; will be sent when the server "
                            f"answers ({problem})"
                        )
                    return False
                size = _size(path)
                path.unlink(missing_ok=True)
                with self._write_lock:
                    self._count -= 1
                    self._bytes -= size
                if self._failing:
                    self._failing = False
                    self.say("the server takes the spooled spans again")
            return True

    def _send(self, path: Path) -> str | None:
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            return None  # already sent and deleted
        return post_spans(self.endpoint, self.token, body, SEND_TIMEOUT_SECONDS, compress=True)

    def start(self) -> None:
        """Retry in the background every `retry_seconds` until `shutdown`."""
        self._thread = threading.Thread(target=self._retry, name="vpo-spool", daemon=True)
        self._thread.start()

    def _retry(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.retry_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            if self.pending():
                try:
                    self.send_pending()
                except Exception:  # never let the retries die: log and try again later
                    log.exception("sending the spool %s failed", self.folder)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # export() is synchronous: what it accepted is on disk

    def shutdown(self) -> None:
        """Stop retrying; try to send what is spooled for a few seconds; keep the rest."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=SEND_TIMEOUT_SECONDS + 1)
        if not self.send_pending(deadline=time.monotonic() + SHUTDOWN_SECONDS):
            self.say(
                f"{self.pending()} batch(es) of spans left in the spool {self.folder}; "
                "they are sent first at the next start"
            )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _write_durably(path: Path, data: bytes) -> None:
    """`data` at `path`, all or nothing, surviving a crash once this returns."""
    temporary = path.with_name(TEMPORARY_PREFIX + path.name)
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
