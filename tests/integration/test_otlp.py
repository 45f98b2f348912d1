"""With OTEL_EXPORTER_OTLP_ENDPOINT set, spans also reach an OTLP/HTTP receiver (a small
real one started here on 127.0.0.1), with the standard OTEL_* resource settings."""

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from tests.helpers import database_with_files, query
from tests.synthetic import emit, ten_action_run
from vpo.telemetry import attributes as attr
from vpo.telemetry.setup import build_telemetry


class _Receiver(BaseHTTPRequestHandler):
    requests: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).requests.append(request)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    handler = type("Receiver", (_Receiver,), {"requests": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler.requests
    finally:
        server.shutdown()


def _db(tmp_path: Path) -> Path:
    return database_with_files(tmp_path / "vpo.db")


def test_spans_reach_the_otlp_endpoint(
    tmp_path: Path, receiver: tuple[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, requests = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "vpo-nas")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=homelab")
    telemetry = build_telemetry(_db(tmp_path))
    assert telemetry.otlp_enabled
    run = ten_action_run(1)
    emit(telemetry.tracer, None, run)
    assert telemetry.shutdown() == []

    spans = [
        (resource_spans.resource, span)
        for request in requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    names = sorted(span.name for _resource, span in spans)
    assert names == sorted([attr.PROCESS_FILE] + [attr.PHASE] * 3 + [attr.ACTION] * 10)
    root = next(span for _r, span in spans if span.name == attr.PROCESS_FILE)
    root_attributes = {kv.key: kv.value for kv in root.attributes}
    assert root_attributes[attr.STATS_ID].string_value == run.stats_id
    assert root_attributes[attr.SIZE_BEFORE].int_value == run.size_before
    resource = {kv.key: kv.value.string_value for kv in spans[0][0].attributes}
    assert resource["service.name"] == "vpo-nas"
    assert resource["deployment.environment"] == "homelab"
    assert resource["service.version"]


def test_nothing_leaves_the_machine_without_an_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    telemetry = build_telemetry(_db(tmp_path))
    assert not telemetry.otlp_enabled
    telemetry.shutdown()


def test_the_users_sampler_and_limits_shape_only_what_goes_to_otlp(
    tmp_path: Path, receiver: tuple[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, requests = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")
    db = database_with_files(tmp_path / "vpo.db", 3)
    telemetry = build_telemetry(db, max_export_batch_size=8)
    runs = [ten_action_run(1 + i % 3) for i in range(16)]
    for run in runs:
        emit(telemetry.tracer, None, run)
    assert telemetry.shutdown() == []

    # The statistics: every run, every attribute whole.
    stored = {r["id"]: r for r in query(db, "SELECT * FROM processing_stats")}
    assert set(stored) == {run.stats_id for run in runs}
    assert query(db, "SELECT count(*) FROM action_results")[0][0] == 16 * 10
    trace_ids = {int(r["trace_id"], 16) for r in stored.values()}

    # OTLP: the traces the user's sampler keeps, each whole, cut to the user's limits.
    spans = [
        span
        for request in requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    sent: dict[int, int] = {}
    for span in spans:
        trace_id = int.from_bytes(span.trace_id, "big")
        sent[trace_id] = sent.get(trace_id, 0) + 1
        assert len(span.attributes) <= 4
        for kv in span.attributes:
            assert len(kv.value.string_value) <= 8
    sampler = TraceIdRatioBased(0.5)
    kept = {t for t in trace_ids if sampler.should_sample(None, t, "x").decision.is_sampled()}
    assert set(sent) == kept and 0 < len(kept) < len(trace_ids)
    assert set(sent.values()) == {14}  # whole traces: root, 3 phases, 10 actions


def test_an_always_off_sampler_sends_nothing_and_records_everything(
    tmp_path: Path, receiver: tuple[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, requests = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    db = _db(tmp_path)
    telemetry = build_telemetry(db)
    run = ten_action_run(1)
    emit(telemetry.tracer, None, run)
    assert telemetry.shutdown() == []
    assert requests == []
    assert [r[0] for r in query(db, "SELECT id FROM processing_stats")] == [run.stats_id]
