"""POST /v1/traces: OTLP/HTTP trace ingestion from workers (docs/cli.md, `vpo serve`).

A worker exports its spans over OTLP/HTTP; the server converts them back into
`ReadableSpan`s (vpo.telemetry.otlp_spans) and hands them to the same
`StatsSpanExporter` that records its own runs, so the span contract stays the only
interface between the work and the statistics, across machines (docs/statistics.md).

- Bodies: `application/x-protobuf` (an ExportTraceServiceRequest) or `application/json`
  (OTLP/JSON: hex ids); gzip or deflate `Content-Encoding` (aiohttp inflates it). The
  body is read here, not by aiohttp, with its own bound (`MAX_BODY_BYTES`, counted after
  inflating, so a small gzip bomb is refused too); the other routes keep the app-wide
  64 KiB bound. At most `CONCURRENT_BODIES` bodies are held at once.
- Auth: `Authorization: Bearer <VPO_WORKER_TOKEN>`, compared in constant time and never
  logged; without a token configured the route answers 403 saying how to enable it.
- Answers (the OTLP/HTTP specification): 200 with an ExportTraceServiceResponse in the
  request's format — `partial_success` counts the spans refused because they break the
  span contract and says why; 400 a body that does not parse; 401/403 the token; 413 too
  large; 415 another content type; 503 (with Retry-After) while the database cannot be
  written — the runs are kept and a retry answers 200 once they are stored. An error
  body is a `google.rpc.Status` in protobuf for a protobuf request; otherwise JSON holding
  both VPO's `error` sentence and the Status fields `code` and `message`.
- Idempotent: a run is its `vpo.stats.id`. A run already stored (or already handed to
  the exporter by this server) is not fed again, so a batch sent twice — a retry after a
  lost 200 — stores each run once and answers 200 both times.

Parsing, conversion and the exporter's SQLite write run in one thread of their own, one
request at a time (which also makes the duplicate check race-free), never on the loop.
"""

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from vpo.db.last_run import LastRun
from vpo.db.last_run import find as find_last_run
from vpo.errors import DatabaseError
from vpo.server import remote_runs, tokens
from vpo.server.db import connect_read_only
from vpo.telemetry import attributes as attr
from vpo.telemetry import otlp_spans
from vpo.telemetry.exporter import PrebuiltRun, StatsSpanExporter
from vpo.telemetry.rows import build_run

if TYPE_CHECKING:
    from vpo.telemetry.setup import Telemetry

log = logging.getLogger(__name__)

PATH = "/v1/traces"
TOKEN_VARIABLE = "VPO_WORKER_TOKEN"  # noqa: S105 - the variable's name, not a token
ENABLE_HINT = (
    f"Trace ingestion is disabled: set {TOKEN_VARIABLE} in the server's environment and "
    "have the workers send it as 'Authorization: Bearer <token>'."
)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024 * 1024  # per request, after inflating
CONCURRENT_BODIES = 4  # bodies read and held at once (memory: 4 x 16 MiB at most)
READ_CHUNK = 256 * 1024
RETRY_AFTER_SECONDS = 5
REMEMBERED_RUNS = 100_000  # stats ids handed to the exporter, for the duplicate check
REMEMBERED_SPANS = 200_000  # span ids of finished runs, so a late resent child is dropped
SHOWN_PROBLEMS = 5  # reasons quoted in a partial_success message
_SQL_CHUNK = 500

# google.rpc.Code of each refusal (the OTLP/HTTP error body is a google.rpc.Status).
_RPC_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 503: 14}
_OUR_SPANS = (attr.PROCESS_FILE, attr.PHASE, attr.ACTION)


@dataclass
class Outcome:
    """What became of one request's spans."""

    stored: bool = True  # False: the database cannot be written now (runs kept)
    runs: int = 0  # runs handed to the exporter
    duplicates: int = 0  # runs already stored or already handed over
    rejected: int = 0  # spans refused: they break the span contract
    problems: list[str] = field(default_factory=list)

    def message(self) -> str:
        if not self.rejected:
            return ""
        shown = "; ".join(self.problems[:SHOWN_PROBLEMS])
        more = len(self.problems) - SHOWN_PROBLEMS
        return f"{self.rejected} span(s) break the VPO span contract: {shown}" + (
            f"; … and {more} more" if more > 0 else ""
        )


class Refused(Exception):
    """An answer other than 200, in the request's format."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close  # the body was not read to its end: close the connection


class Ingest:
    """Feeds spans received over OTLP to a `StatsSpanExporter`, one request at a time in
    a thread of its own, dropping runs it has already stored."""

    def __init__(
        self,
        db_path: Path,
        exporter: StatsSpanExporter,
        token: str | None,
        owns_exporter: bool = False,
        worker_timeout: float = remote_runs.DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.db_path = db_path
        self.remote = remote_runs.RemoteRuns(db_path, worker_timeout)
        self.exporter = exporter
        self.token = token or None  # an empty variable configures nothing
        self.owns_exporter = owns_exporter
        self.slots = asyncio.Semaphore(CONCURRENT_BODIES)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vpo-otlp")
        self._conn: sqlite3.Connection | None = None  # used by the executor's thread only
        self._fed: OrderedDict[str, None] = OrderedDict()
        self._finished: OrderedDict[int, None] = OrderedDict()  # span ids of stored runs
        self._parent_of: OrderedDict[int, int | None] = OrderedDict()  # children handed over

    async def receive(self, body: bytes, content_type: str) -> Outcome:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._receive, body, content_type)

    async def last_run(self, file_id: int) -> tuple[bool, LastRun | None]:
        """(whether the library knows `file_id`, its last run: vpo.db.last_run), asked in
        the ingest thread, after any heartbeat received before."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._last_run, file_id)

    def close(self) -> None:
        """Let a running request finish; refuse new ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.owns_exporter:
            self.exporter.shutdown()
        self.remote.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- in the ingest thread -----------------------------------------------------------

    def _last_run(self, file_id: int) -> tuple[bool, LastRun | None]:
        conn = self._connection()
        if conn.execute("SELECT 1 FROM files WHERE id = ?", (file_id,)).fetchone() is None:
            return False, None
        return True, find_last_run(conn, self.remote.markers.read(), file_id)

    def _receive(self, body: bytes, content_type: str) -> Outcome:
        if content_type == PROTOBUF:
            return self.ingest(otlp_spans.spans_from_protobuf(body))
        return self.ingest(list(otlp_spans.readable_spans(otlp_spans.parse_json(body))))

    def ingest(self, spans: Sequence[ReadableSpan]) -> Outcome:
        """Hand the runs of `spans` not seen before to the exporter (call it from one
        thread at a time)."""
        outcome = Outcome()
        # One pass: this runs for every span of every request. Spans go with their ids,
        # read once (a span id is two property calls away).
        ours: list[tuple[ReadableSpan, int]] = []
        children: dict[int, list[tuple[ReadableSpan, int]]] = {}
        parents: dict[int, int] = {}  # span id → its parent's, of phases and actions
        roots: list[tuple[ReadableSpan, int]] = []
        beats: list[ReadableSpan] = []  # runs in progress on workers: markers, not rows
        for span in spans:
            name = span.name
            if name not in _OUR_SPANS:
                if name == attr.RUN_HEARTBEAT:
                    beats.append(span)
                continue  # other instrumentation: accepted, not recorded
            if not otlp_spans.well_formed(span):
                outcome.rejected += 1
                outcome.problems.append(f"a {name} span without valid trace and span ids")
                continue
            span_id = span.context.span_id  # type: ignore[union-attr] - well formed
            ours.append((span, span_id))
            if name == attr.PROCESS_FILE:
                roots.append((span, span_id))
            elif (parent := span.parent) is not None:
                parent_id = parent.span_id
                children.setdefault(parent_id, []).append((span, span_id))
                parents[span_id] = parent_id
        if beats:
            refused = self.remote.beat(beats, self._fed)
            outcome.rejected += len(refused)
            outcome.problems.extend(refused)
        root_attributes = [_attributes(root) for root, _ in roots]
        stored = self._stored_runs(
            [r for r in (a.get(attr.STATS_ID) for a in root_attributes) if isinstance(r, str)]
        )
        files = self._known_files(
            {f for f in (a.get(attr.FILE_ID) for a in root_attributes) if _is_int(f)}
        )
        skipped: set[int] = set()  # span ids of runs not fed (duplicates)
        fed_ids: list[int] = []  # span ids of the runs fed, roots and descendants
        built: list[PrebuiltRun] = []  # runs the check built, handed over whole
        in_built: set[int] = set()  # their span ids
        fed_runs = 0
        for (root, root_id), attributes in zip(roots, root_attributes, strict=True):
            family = _descendants(root_id, children)
            stats_id = attributes.get(attr.STATS_ID)
            if isinstance(stats_id, str) and (stats_id in self._fed or stats_id in stored):
                outcome.duplicates += 1
                skipped.add(root_id)
                skipped.update(span_id for _, span_id in family)
                continue
            problem, ready = _contract_problem(
                root, [span for span, _ in family], files, self.exporter.host
            )
            if ready is not None:
                built.append(ready)
                in_built.add(root_id)
                in_built.update(span_id for _, span_id in family)
            if problem is not None:
                outcome.rejected += (1 + len(family)) if problem[0] else len(problem[1])
                outcome.problems.extend(problem[1])
            if isinstance(stats_id, str):
                _remember(self._fed, stats_id, REMEMBERED_RUNS)
            fed_ids.append(root_id)
            fed_ids.extend(span_id for _, span_id in family)
            fed_runs += 1
        fresh: list[ReadableSpan] = []
        fresh_parents: list[tuple[int, int]] = []  # (span id, parent's) of fresh children
        for span, span_id in ours:
            if span_id in skipped or span_id in in_built:
                continue
            parent_id = parents.get(span_id)
            if parent_id is None:  # a root, or a span without a parent here: not late
                fresh.append(span)
            elif not self._late(span_id, parents, skipped):
                fresh.append(span)
                fresh_parents.append((span_id, parent_id))
        _remember_all(self._finished, ((span_id, None) for span_id in fed_ids), REMEMBERED_SPANS)
        _remember_all(self._parent_of, fresh_parents, REMEMBERED_SPANS)
        outcome.runs = fed_runs
        # Always called, even with nothing fresh: it also retries runs kept from before.
        result = self.exporter.export(fresh, built)
        outcome.stored = result is SpanExportResult.SUCCESS
        return outcome

    async def judge_workers(self) -> int:
        """Record the runs of workers silent for too long as interrupted, in the ingest's
        thread (never racing `ingest`); how many."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.reap)

    def reap(self) -> int:
        """`judge_workers`' work (call it from the ingest's thread)."""
        return self.remote.reap(self._fed)

    def _late(self, span_id: int, parents: dict[int, int], skipped: set[int]) -> bool:
        """Whether a phase or action belongs to a run already stored or dropped as a
        duplicate (resent after its root): such a span is dropped, not kept waiting in
        the exporter for a root that never comes again. Its ancestors are looked up in
        this request and among the children handed over before."""
        ancestor = parents.get(span_id)
        for _depth in range(8):  # root → phase → action: a few levels at most
            if ancestor is None:
                return False
            if ancestor in self._finished or ancestor in skipped:
                skipped.add(span_id)
                return True
            ancestor = parents.get(ancestor, self._parent_of.get(ancestor))
        return False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_read_only(self.db_path)
        return self._conn

    def _stored_runs(self, stats_ids: Sequence[str]) -> set[str]:
        """Which of `stats_ids` are stored — except rows of runs recorded as interrupted,
        which the real run replaces (the exporter does that)."""
        found: set[str] = set()
        for chunk in _chunks(list(dict.fromkeys(stats_ids))):
            marks = ",".join("?" * len(chunk))  # placeholders only: the ids are parameters
            rows = self._connection().execute(
                f"SELECT id, success, error_message FROM processing_stats WHERE id IN ({marks})",  # noqa: S608
                chunk,
            )
            for stats_id, success, error in rows:
                if success or not str(error or "").startswith("interrupted:"):
                    found.add(stats_id)
        return found

    def _known_files(self, file_ids: set[int]) -> set[int]:
        found: set[int] = set()
        for chunk in _chunks(sorted(file_ids)):
            marks = ",".join("?" * len(chunk))
            rows = self._connection().execute(
                f"SELECT id FROM files WHERE id IN ({marks})",  # noqa: S608 - placeholders
                chunk,
            )
            found.update(row[0] for row in rows)
        return found


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}  # read-only: no copy


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _descendants(
    root_id: int, children: dict[int, list[tuple[ReadableSpan, int]]]
) -> list[tuple[ReadableSpan, int]]:
    """The (span, span id) of the descendants of the span `root_id` among `children`."""
    found: list[tuple[ReadableSpan, int]] = []
    stack = [root_id]
    seen = set(stack)
    while stack:
        for child in children.get(stack.pop(), ()):
            child_id = child[1]
            if child_id not in seen:
                seen.add(child_id)
                found.append(child)
                stack.append(child_id)
    return found


def _contract_problem(
    root: ReadableSpan, family: list[ReadableSpan], files: set[int], host: str
) -> tuple[tuple[bool, list[str]] | None, PrebuiltRun | None]:
    """(None when the run makes valid rows, else whether the whole run is refused and
    why; the run as built, for the exporter to reuse). The same `build_run` as the
    exporter's (with its host as the default worker), plus the file the run names."""
    phases = [s for s in family if s.name == attr.PHASE]
    actions = [s for s in family if s.name == attr.ACTION]
    try:
        built = build_run(root, phases, actions, default_worker=host)
    except Exception as exc:
        return (True, [str(exc)]), None
    ready = PrebuiltRun(root, tuple(phases), tuple(actions), built)
    if built.record.file_id not in files:
        return (
            True,
            [f"run {built.record.id}: file id {built.record.file_id} is not in the library"],
        ), ready
    if built.refused:
        return (False, [f"run {built.record.id}: {problem}" for problem in built.refused]), ready
    return None, ready


def _remember(memory: OrderedDict, key: object, bound: int, value: object = None) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > bound:
        memory.popitem(last=False)


def _remember_all(memory: OrderedDict, items: Iterable[tuple[object, object]], bound: int) -> None:
    """`_remember` each (key, value) in turn, trimming once at the end: the same entries
    in the same order (the `bound` last remembered), for a request's worth of spans."""
    for key, value in items:
        memory[key] = value
        memory.move_to_end(key)
    while len(memory) > bound:
        memory.popitem(last=False)


def _chunks(items: list) -> Iterable[list]:
    for start in range(0, len(items), _SQL_CHUNK):
        yield items[start : start + _SQL_CHUNK]


# --- HTTP -------------------------------------------------------------------------------

INGEST: web.AppKey[Ingest] = web.AppKey("otlp_ingest", Ingest)


def setup(
    app: web.Application,
    db_path: Path,
    telemetry: "Telemetry | None",
    worker_timeout: float = remote_runs.DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Route POST /v1/traces to the exporter of `telemetry` (or, without one, to an
    exporter of its own on `db_path`); the token comes from VPO_WORKER_TOKEN. Runs of
    workers silent for `worker_timeout` seconds are recorded as interrupted."""
    token = os.environ.get(TOKEN_VARIABLE)
    if telemetry is not None:
        ingest = Ingest(db_path, telemetry.exporter, token, worker_timeout=worker_timeout)
    else:
        exporter = StatsSpanExporter(db_path)
        ingest = Ingest(db_path, exporter, token, owns_exporter=True, worker_timeout=worker_timeout)
    app[INGEST] = ingest
    app.router.add_post(PATH, traces)

    async def judging(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_reap_forever(ingest)) if ingest.token else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(judging)

    async def close(_app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, ingest.close)

    app.on_cleanup.append(close)


async def _reap_forever(ingest: Ingest) -> None:
    """Judge the remote workers' runs every `REAP_SECONDS`, in the ingest's thread."""
    while True:
        await asyncio.sleep(remote_runs.REAP_SECONDS)
        try:
            await ingest.judge_workers()
        except RuntimeError:  # the executor is shut down: the server is stopping
            return
        except (sqlite3.Error, DatabaseError) as exc:  # the next round tries again
            log.warning("cannot record the runs of silent workers now: %s", exc)


async def traces(request: web.Request) -> web.Response:
    """Receive one ExportTraceServiceRequest (the module's docstring says how)."""
    ingest = request.app[INGEST]
    answer_format = PROTOBUF if request.content_type == PROTOBUF else JSON
    try:
        _authorize(request, ingest.token)
        if request.content_type not in (PROTOBUF, JSON):
            raise Refused(
                415,
                f"Send OTLP as {PROTOBUF} or {JSON}, not {request.content_type[:60] or 'nothing'}.",
            )
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise Refused(413, _too_large(), close=True)
        async with ingest.slots:
            body = await _read_body(request)
            try:
                outcome = await ingest.receive(body, request.content_type)
            except otlp_spans.InvalidRequest as exc:
                raise Refused(400, f"Cannot read the body: {exc}.") from None
            except (sqlite3.Error, DatabaseError) as exc:
                log.error("POST %s: cannot read the database: %s", PATH, exc)
                raise Refused(
                    503,
                    f"The database cannot be read now: {exc}.",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)},
                ) from None
    except Refused as refused:
        response = _refusal(refused, answer_format)
        if refused.close:
            # The rest of the body is not wanted: send the answer, then close the
            # connection, rather than let aiohttp read (and inflate) the rest to discard it.
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()
        return response
    if outcome.rejected:
        log.warning("POST %s: %s", PATH, outcome.message())
    if not outcome.stored:
        return _refusal(
            Refused(
                503,
                "The statistics database cannot be written now; the runs are kept and a retry "
                "succeeds once they are stored.",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            ),
            answer_format,
        )
    if answer_format == PROTOBUF:
        body = otlp_spans.response_protobuf(outcome.rejected, outcome.message())
    else:
        body = otlp_spans.response_json(outcome.rejected, outcome.message())
    return web.Response(body=body, content_type=answer_format)


def _authorize(request: web.Request, token: str | None) -> None:
    """403 when no token is configured, 401 unless the request carries it (as writes.py)."""
    refused = tokens.refusal(request, token, TOKEN_VARIABLE, ENABLE_HINT)
    if refused is not None:
        raise Refused(*refused)


def _too_large() -> str:
    return f"The request body is larger than {MAX_BODY_BYTES // 2**20} MiB once inflated."


async def _read_body(request: web.Request) -> bytes:
    """The (inflated) body, refused past MAX_BODY_BYTES without reading further."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Refused(413, _too_large(), close=True)
            chunks.append(chunk)
    except (RequestPayloadError, HttpProcessingError) as exc:
        raise Refused(400, f"Cannot read the body: {_one_line(exc)}.", close=True) from None
    return b"".join(chunks)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".")


def _refusal(refused: Refused, answer_format: str) -> web.Response:
    code = _RPC_CODES.get(refused.status, 2)
    if answer_format == PROTOBUF:
        body = _status_protobuf(code, refused.message)
    else:
        body = json.dumps(
            {"error": refused.message, "code": code, "message": refused.message}
        ).encode()
    response = web.Response(
        status=refused.status, body=body, content_type=answer_format, headers=refused.headers
    )
    if refused.close:
        response.force_close()
    return response


def _status_protobuf(code: int, message: str) -> bytes:
    """A `google.rpc.Status` {code = 1, message = 2} in protobuf wire format (written by
    hand: googleapis-common-protos is not a dependency of the server)."""
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
