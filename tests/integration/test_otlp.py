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

from tests.helpers import database_with_files
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
