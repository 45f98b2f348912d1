"""POST /v1/traces of a real `vpo serve`: spans sent by the real OTLP/HTTP exporter (protobuf,
plain and gzip) and OTLP/JSON bodies made by hand per the specification (hex ids) become the
same rows the local exporter writes for the same spans; a batch sent twice stores each run
once; spans that break the contract come back as partial_success; the token, the content
type, a body that does not parse and a body too large are refused as the OTLP/HTTP
specification says (docs/cli.md, `vpo serve`)."""

import base64
import gzip
import http.client
import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from jsonschema import Draft202012Validator
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import CLEANUP, database_with_files, invoke, query
from tests.integration.test_openapi import _fuzz
from tests.integration.test_server_api import Server, start_server
from tests.synthetic import SyntheticRun, emit, ten_action_run
from vpo.policy.loader import load_policy
from vpo.server.otlp_ingest import MAX_BODY_BYTES
from vpo.telemetry import attributes as attr
from vpo.telemetry.exporter import StatsSpanExporter
from vpo.telemetry.setup import build_telemetry
from vpo.workflow.batch import process_files
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor

WORKER_TOKEN = "worker-token-0123456789"  # noqa: S105 - a test token
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
FILES = 3
GZIP = {"Content-Encoding": "gzip"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`vpo serve` with VPO_WORKER_TOKEN over a library of three files."""
    folder = tmp_path_factory.mktemp("otlp-server")
    db = database_with_files(folder / "server.db", FILES)
    served = start_server(db, folder, env={"VPO_WORKER_TOKEN": WORKER_TOKEN})
    try:
        yield served
    finally:
        assert served.stop() == 0
    log = served.log()
    assert "Traceback" not in log and "Unhandled" not in log
    assert "without their vpo.process_file root" not in log  # no resent child kept waiting
    assert WORKER_TOKEN not in log


def _runs() -> list[SyntheticRun]:
    """Six runs: whole ones, one whose action fails, one that fails after a phase."""
    runs = [ten_action_run(1 + n % FILES, policy=f"p{n % 2}") for n in range(4)]
    runs.append(ten_action_run(2, fail_action=False))
    failing = ten_action_run(3)
    failing.fail_with = RuntimeError("mkvmerge exited with 2")
    runs.append(failing)
    return runs


class Worker:
    """A tracer whose spans go both to a local StatsSpanExporter (the reference rows) and,
    through the real OTLP/HTTP exporter, to the server; a copy is kept in memory."""

    def __init__(
        self,
        local_db: Path,
        endpoint: str | None,
        compression: Compression = Compression.NoCompression,
        batch_size: int = 5,
    ) -> None:
        self.provider = TracerProvider(resource=Resource.create({attr.HOST_NAME: "worker-7"}))
        self.local = StatsSpanExporter(local_db)
        self.provider.add_span_processor(SimpleSpanProcessor(self.local))
        self.copy = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.copy))
        if endpoint is not None:
            exporter = OTLPSpanExporter(
                endpoint=endpoint,
                headers={"Authorization": f"Bearer {WORKER_TOKEN}"},
                compression=compression,
            )
            # Small batches: runs are cut across requests, children before their root.
            self.provider.add_span_processor(
                BatchSpanProcessor(
                    exporter, max_export_batch_size=batch_size, schedule_delay_millis=20
                )
            )
        self.tracer = self.provider.get_tracer("vpo-worker-test")

    def run(self, runs: Sequence[SyntheticRun]) -> list[ReadableSpan]:
        for run in runs:
            emit(self.tracer, None, run)
        self.provider.force_flush()
        self.provider.shutdown()
        assert self.local.problems == []
        return list(self.copy.get_finished_spans())


def _rows(db: Path, stats_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The run, action and phase rows of `stats_ids`, without their row ids."""
    marks = ",".join("?" * len(stats_ids))
    ids = tuple(sorted(stats_ids))
    tables = {
        "processing_stats": f"SELECT * FROM processing_stats WHERE id IN ({marks}) ORDER BY id",
        "action_results": f"SELECT * FROM action_results WHERE stats_id IN ({marks}) "
        "ORDER BY stats_id, id",
        "performance_metrics": f"SELECT * FROM performance_metrics WHERE stats_id IN ({marks}) "
        "ORDER BY stats_id, id",
    }
    found = {}
    for table, sql in tables.items():
        rows = [dict(row) for row in query(db, sql, ids)]
        if table != "processing_stats":
            for row in rows:
                row.pop("id")
        found[table] = rows
    return found


def _assert_same_rows(server: Server, local: Path, runs: Sequence[SyntheticRun]) -> None:
    ids = [run.stats_id for run in runs]
    expected = _rows(local, ids)
    assert len(expected["processing_stats"]) == len(runs)
    assert expected["action_results"] and expected["performance_metrics"]
    assert _rows(server.db, ids) == expected


def _post(
    server: Server,
    body: bytes,
    content_type: str = PROTOBUF,
    token: str | None = WORKER_TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes, Any]:
    """Status, content type, raw body and headers of one POST /v1/traces."""
    sent = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - http on loopback
        server.url + "/v1/traces", data=body, method="POST", headers=sent
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return (
                response.status,
                response.headers["Content-Type"],
                response.read(),
                response.headers,
            )
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read(), exc.headers


INT64_FIELDS = ("startTimeUnixNano", "endTimeUnixNano", "timeUnixNano", "intValue")


def _otlp_json(spans: Sequence[ReadableSpan], numbers: bool = False) -> bytes:
    """An OTLP/JSON body per the specification: the protobuf JSON mapping, lowerCamelCase,
    enums as integers, with trace and span ids in hex instead of base64; 64-bit integers
    as strings, or (`numbers`) as JSON numbers, which receivers must accept too."""
    data = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in data["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()

    def to_numbers(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: int(v) if k in INT64_FIELDS and isinstance(v, str) else to_numbers(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [to_numbers(item) for item in value]
        return value

    return json.dumps(to_numbers(data) if numbers else data).encode()


def _accepted(status: int, content_type: str, body: bytes) -> ExportTraceServiceResponse:
    assert status == 200, body
    assert content_type.startswith(PROTOBUF)
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(body)
    return answer


def _count(server: Server, stats_ids: Sequence[str]) -> tuple[int, int, int]:
    rows = _rows(server.db, stats_ids)
    return tuple(
        len(rows[t]) for t in ("processing_stats", "action_results", "performance_metrics")
    )  # type: ignore[return-value]


# -- the rows ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"]
)
def test_runs_from_the_otlp_exporter_make_the_rows_of_the_local_exporter(
    server: Server, tmp_path: Path, compression: Compression
) -> None:
    local = database_with_files(tmp_path / "local.db", FILES)
    runs = _runs()
    worker = Worker(local, server.url + "/v1/traces", compression)
    worker.run(runs)
    _assert_same_rows(server, local, runs)
    stored = _rows(server.db, [run.stats_id for run in runs])["processing_stats"]
    assert {row["success"] for row in stored} == {0, 1}
    if "worker" in stored[0]:
        assert {row["worker"] for row in stored} == {"worker-7"}


def test_an_otlp_json_body_makes_the_same_rows_and_twice_is_once(
    server: Server, tmp_path: Path
) -> None:
    local = database_with_files(tmp_path / "local.db", FILES)
    runs = _runs()
    spans = Worker(local, None).run(runs)
    body = _otlp_json(spans)
    first = json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(bytes.fromhex(first["traceId"])) == 16  # hex, as OTLP/JSON says
    for payload, headers in ((body, None), (body, None), (gzip.compress(body), GZIP)):
        status, content_type, answer, _headers = _post(server, payload, JSON, headers=headers)
        assert status == 200, answer
        assert content_type.startswith(JSON)
        assert json.loads(answer) == {}
    _assert_same_rows(server, local, runs)
    assert b'"startTimeUnixNano": "' in body
    numbers = _runs()
    local = database_with_files(tmp_path / "numbers.db", FILES)
    body = _otlp_json(Worker(local, None).run(numbers), numbers=True)
    assert b'"startTimeUnixNano": 1' in body
    status, _type, answer, _headers = _post(server, body, JSON)
    assert status == 200, answer
    _assert_same_rows(server, local, numbers)


def test_the_same_batch_twice_stores_each_run_once(server: Server, tmp_path: Path) -> None:
    """A retry after a lost 200: the second send answers 200 and changes nothing, also when
    a run was cut across two requests, and also when the retry comes gzipped."""
    local = database_with_files(tmp_path / "local.db", FILES)
    runs = _runs()
    spans = Worker(local, None).run(runs)
    ids = [run.stats_id for run in runs]
    roots = [s for s in spans if s.name == attr.PROCESS_FILE]
    children = [s for s in spans if s.name != attr.PROCESS_FILE]
    first = encode_spans(children).SerializeToString()
    second = encode_spans(roots).SerializeToString()
    for body in (first, first, second):  # the children's request retried before the roots'
        answer = _accepted(*_post(server, body)[:3])
        assert not answer.HasField("partial_success")
    assert _count(server, ids) == (6, 56, 16)  # the failing run stopped after its first phase
    whole = encode_spans(spans).SerializeToString()
    for body, headers in (
        (second, None),
        (whole, None),
        (gzip.compress(whole), GZIP),
        (first, None),  # children of runs already stored: dropped, not kept waiting
    ):
        answer = _accepted(*_post(server, body, headers=headers)[:3])
        assert not answer.HasField("partial_success")
    assert _count(server, ids) == (6, 56, 16)  # the failing run stopped after its first phase
    _assert_same_rows(server, local, runs)


def test_spans_that_break_the_contract_come_back_as_partial_success(
    server: Server, tmp_path: Path
) -> None:
    good = ten_action_run(1)
    no_id = ten_action_run(2)
    unknown_file = ten_action_run(99)
    provider = TracerProvider()
    copy = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(copy))
    tracer = provider.get_tracer("test")
    for run in (good, no_id, unknown_file):
        emit(tracer, None, run)
    with tracer.start_as_current_span("some.other.span"):
        pass  # other instrumentation: accepted, not recorded, not refused
    spans = list(copy.get_finished_spans())
    broken = []
    for span in spans:
        if span.attributes and span.attributes.get(attr.STATS_ID) == no_id.stats_id:
            attributes = {k: v for k, v in span.attributes.items() if k != attr.STATS_ID}
            span._attributes = attributes  # type: ignore[attr-defined] - a worker's bug
        broken.append(span)
    answer = _accepted(*_post(server, encode_spans(broken).SerializeToString())[:3])
    # each bad run: its root, 3 phases and 10 actions
    assert answer.partial_success.rejected_spans == 2 * 14
    message = answer.partial_success.error_message
    assert "file id 99 is not in the library" in message
    assert attr.STATS_ID in message
    assert _count(server, [good.stats_id]) == (1, 10, 3)
    assert _count(server, [unknown_file.stats_id]) == (0, 0, 0)


# -- refusals ----------------------------------------------------------------------------------


def _status(content_type: str, body: bytes) -> tuple[int, str]:
    """The google.rpc.Status of an error answer (protobuf or JSON)."""
    if content_type.startswith(PROTOBUF):
        status = status_pb2.Status()
        status.ParseFromString(body)
        return status.code, status.message
    data = json.loads(body)
    assert data["error"] == data["message"]
    return data["code"], data["message"]


def test_the_token_is_required(server: Server) -> None:
    body = encode_spans([]).SerializeToString()
    for token in (None, "wrong", WORKER_TOKEN + "x", ""):
        for content_type in (PROTOBUF, JSON):
            status, answered, text, headers = _post(server, body, content_type, token=token)
            assert status == 401, text
            assert answered.startswith(content_type)
            assert headers["WWW-Authenticate"] == "Bearer"
            code, message = _status(answered, text)
            assert code == 16 and "VPO_WORKER_TOKEN" in message
    assert WORKER_TOKEN not in server.log()


def test_without_a_configured_token_ingestion_is_403_saying_how_to_enable_it(
    tmp_path: Path,
) -> None:
    db = database_with_files(tmp_path / "vpo.db")
    served = start_server(db, tmp_path)
    try:
        for content_type in (PROTOBUF, JSON):
            status, answered, text, _headers = _post(served, b"{}", content_type)
            assert status == 403
            code, message = _status(answered, text)
            assert code == 7
            assert "set VPO_WORKER_TOKEN" in message
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "expected"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF, None, 400),
        (b"{not json", JSON, None, 400),
        (b"[1, 2]", JSON, None, 400),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON, None, 400),
        (b'{"resourceSpans": 7}', JSON, None, 400),
        (b"not gzip at all", PROTOBUF, GZIP, 400),
        (b"{}", "text/plain", None, 415),
        (b"{}", "application/x-www-form-urlencoded", None, 415),
        (gzip.compress(b"\0" * (MAX_BODY_BYTES + 1)), PROTOBUF, GZIP, 413),
    ],
    ids=["protobuf", "json", "json-array", "hex", "json-shape", "gzip", "text", "form", "bomb"],
)
def test_bodies_are_refused_as_otlp_says(
    server: Server, body: bytes, content_type: str, headers: dict[str, str] | None, expected: int
) -> None:
    status, answered, text, _headers = _post(server, body, content_type, headers=headers)
    assert status == expected, text
    answer_type = PROTOBUF if content_type == PROTOBUF else JSON
    assert answered.startswith(answer_type)
    code, message = _status(answered, text)
    assert code == {400: 3, 413: 8, 415: 3}[expected]
    assert message.endswith(".")


def test_a_body_larger_than_the_bound_is_413_before_it_is_read(server: Server) -> None:
    address = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/traces")
        connection.putheader("Content-Type", PROTOBUF)
        connection.putheader("Authorization", f"Bearer {WORKER_TOKEN}")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()
        connection.send(b"\0" * 65536)  # the rest never comes: the answer does not wait for it
        response = connection.getresponse()
        assert response.status == 413
        code, message = _status(response.getheader("Content-Type"), response.read())
        assert code == 8 and "16 MiB" in message
    finally:
        connection.close()
    # Under the bound, a body larger than the app-wide 64 KiB of the other routes is read.
    status, _type, _body, _headers = _post(server, b"x" * 100_000, JSON)
    assert status == 400  # read whole, then refused as not JSON


# -- a real run, a locked database, the document ------------------------------------------------


def test_a_real_file_run_arrives_as_the_local_exporter_records_it(
    server: Server, library: Path, tmp_path: Path
) -> None:
    """FileProcessor over the sample media, its spans both recorded locally (as `vpo process`
    does) and sent by the real OTLP exporter to a server whose library has the same files."""
    local = tmp_path / "worker.db"
    assert invoke("--db", local, "scan", library).exit_code == 0
    server_db = tmp_path / "server.db"
    source = sqlite3.connect(local)
    target = sqlite3.connect(server_db)
    try:
        source.backup(target)  # the server's library: the same files, the same ids
    finally:
        source.close()
        target.close()
    served = start_server(server_db, tmp_path, env={"VPO_WORKER_TOKEN": WORKER_TOKEN})
    try:
        telemetry = build_telemetry(local, otlp=False)
        telemetry.tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(
                    endpoint=served.url + "/v1/traces",
                    headers={"Authorization": f"Bearer {WORKER_TOKEN}"},
                    compression=Compression.Gzip,
                ),
                max_export_batch_size=7,
                schedule_delay_millis=20,
            )
        )
        store = LibraryStore(local)
        try:
            processor = FileProcessor(
                load_policy(CLEANUP), store, telemetry.tracer, telemetry.metrics
            )
            report = process_files(processor, sorted(library.iterdir()))
        finally:
            store.close()
            assert telemetry.shutdown() == []
        ids = [row["id"] for row in query(local, "SELECT id FROM processing_stats")]
        assert len(ids) == len(report.runs) >= 3
        expected = _rows(local, ids)
        assert expected["action_results"] and expected["performance_metrics"]
        assert _rows(served.db, ids) == expected
    finally:
        assert served.stop() == 0


def test_a_locked_database_is_503_and_the_retry_stores_the_runs_once(
    server: Server, tmp_path: Path
) -> None:
    runs = _runs()[:2]
    spans = Worker(database_with_files(tmp_path / "local.db", FILES), None).run(runs)
    body = encode_spans(spans).SerializeToString()
    ids = [run.stats_id for run in runs]
    lock = sqlite3.connect(server.db, isolation_level=None, timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        status, answered, text, headers = _post(server, body)
        assert status == 503, text
        assert headers["Retry-After"].isdigit()
        assert _status(answered, text)[0] == 14
        assert _post(server, body)[0] == 503  # kept, not fed twice; still not stored
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    answer = _accepted(*_post(server, body)[:3])
    assert not answer.HasField("partial_success")
    assert _count(server, ids) == (2, 20, 6)


def test_answers_conform_to_the_openapi_document(server: Server) -> None:
    document = json.loads(urllib.request.urlopen(server.url + "/api/openapi.json").read())  # noqa: S310
    responses = document["paths"]["/v1/traces"]["post"]["responses"]
    valid = encode_spans([]).SerializeToString()
    for body, content_type, token in (
        (valid, PROTOBUF, WORKER_TOKEN),
        (b"{}", JSON, WORKER_TOKEN),
        (b"{}", JSON, None),
        (b"[", JSON, WORKER_TOKEN),
        (b"x", PROTOBUF, None),
        (b"x", "text/plain", WORKER_TOKEN),
    ):
        status, answered, text, _headers = _post(server, body, content_type, token=token)
        content = responses[str(status)]["content"]
        media = answered.split(";")[0]
        assert media in content, (status, media)
        if media == JSON:
            schema = {**content[JSON]["schema"], "components": document["components"]}
            assert not list(Draft202012Validator(schema).iter_errors(json.loads(text)))


def test_schemathesis_finds_no_error_with_the_token(server: Server) -> None:
    """Generated bodies, valid and not, with the token: each answered as documented."""
    _fuzz(server, "POST", "/v1/traces", headers={"Authorization": f"Bearer {WORKER_TOKEN}"})


def _described(span: ReadableSpan) -> tuple[str, ...]:
    """Everything the exporter may read of a span, attribute types included."""
    return (
        span.name,
        repr(span.context),
        repr(span.parent),
        repr([(k, type(v).__name__, v) for k, v in span.attributes.items()]),
        repr([(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events]),
        repr([(link.context, dict(link.attributes or {})) for link in span.links]),
        repr(span.kind),
        repr((span.status.status_code, span.status.description)),
        repr((span.start_time, span.end_time)),
        repr(sorted(span.resource.attributes.items())),
        repr(span.instrumentation_scope),
    )


def test_attributes_read_from_their_encoding_are_what_protobuf_reads() -> None:
    """`spans_from_protobuf` reads span attributes from their encoding (most from a
    cache): the same spans as protobuf's full parse, for every kind of value — and for
    the values it leaves to protobuf (arrays, kvlists, odd encodings) and bodies that do
    not parse, the same spans or the same refusal."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    from vpo.telemetry import otlp_spans

    def same(body: bytes) -> None:
        try:
            expected: Any = [
                _described(s) for s in otlp_spans.readable_spans(otlp_spans.parse_protobuf(body))
            ]
        except otlp_spans.InvalidRequest as exc:
            expected = str(exc)
        try:
            got: Any = [_described(s) for s in otlp_spans.spans_from_protobuf(body)]
        except otlp_spans.InvalidRequest as exc:
            got = str(exc)
        assert got == expected

    provider = TracerProvider(resource=Resource.create({attr.HOST_NAME: "worker-7"}))
    kept = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    for run in _runs():
        emit(provider.get_tracer("t"), None, run)
    request = encode_spans(kept.get_finished_spans())
    otlp_spans._pairs.clear()
    same(request.SerializeToString())
    assert otlp_spans._pairs  # read from their encoding, not by the full parse
    same(request.SerializeToString())  # now from the cache
    span = request.resource_spans[0].scope_spans[0].spans[0]
    values: list[tuple[str, Any]] = [
        ("string_value", ""),
        ("string_value", "é" * 200),  # a two-byte length
        ("int_value", -1),
        ("int_value", 2**63 - 1),
        ("int_value", -(2**63)),
        ("bool_value", True),
        ("bool_value", False),
        ("double_value", -0.5),
        ("bytes_value", b"\x00\xff"),
    ]
    for n, (field, value) in enumerate(values):
        pair = span.attributes.add(key=f"k{n}")
        setattr(pair.value, field, value)
    span.attributes.add(key="no value")
    span.attributes.add(key="empty value").value.SetInParent()
    span.attributes.add(key="k0").value.string_value = "the last one counts"
    same(request.SerializeToString())
    span.attributes.add(key="array").value.array_value.values.add().int_value = 3
    span.attributes.add(key="kvlist").value.kvlist_value.values.add(key="a").value.bool_value = 1
    same(request.SerializeToString())
    odd = request.SerializeToString()
    del span.attributes[-2:]
    # A key-value whose fields come in reverse order, and one with an unknown field.
    value_first = b"\x12\x03\x18\x96\x01\x0a\x01z"
    with_unknown = KeyValue(key="u").SerializeToString() + b"\x18\x01"
    for raw in (value_first, with_unknown, b"\x0a\x02\xff\xfe"):  # the last: not UTF-8
        body = request.SerializeToString()
        marker = KeyValue(key="marker").SerializeToString()
        span.attributes.add(key="marker")
        with_marker = request.SerializeToString()
        del span.attributes[-1]
        assert with_marker.count(marker) == 1
        same(with_marker.replace(marker, raw))
        same(body)
    for cut in (1, 10, len(odd) // 2, len(odd) - 1):
        same(odd[:cut])
