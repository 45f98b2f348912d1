"""OTLP ingest of `vpo serve`: runs per second that POST /v1/traces turns into rows, sent
by the real OpenTelemetry OTLP/HTTP exporter as a worker would, in batches of 100 runs of
6 spans (a run, a phase, four actions).

Run: .venv/bin/python benchmarks/bench_ingest.py [--runs 5000]
Target (issue #14): >= 5,000 runs/s of 6 spans on one core. The client (protobuf encoding
in Python) shares this machine's two cores with the server.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.helpers import database_with_files, query
from tests.integration.test_server_api import start_server
from tests.synthetic import SyntheticAction, SyntheticRun, emit

BATCH_RUNS = 100
FILES = 10
TOKEN = "bench"  # noqa: S105 - the throwaway server's worker token


def _spans(runs: int) -> list[ReadableSpan]:
    """`runs` finished runs of 6 spans each, as a worker's tracer makes them."""
    provider = TracerProvider(resource=Resource.create({"host.name": "bench-worker"}))
    kept = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("bench")
    for n in range(runs):
        actions = [
            SyntheticAction("remove", "audio", k, {"codec": "aac"}, None, "phases[0].keep_audio")
            for k in range(4)
        ]
        emit(tracer, None, SyntheticRun(file_id=1 + n % FILES, phases=[("cleanup", actions)]))
    return list(kept.get_finished_spans())


def _send(url: str, spans: list[ReadableSpan], compression: Compression) -> float:
    exporter = OTLPSpanExporter(
        endpoint=url + "/v1/traces",
        headers={"Authorization": f"Bearer {TOKEN}"},
        compression=compression,
    )
    began = time.perf_counter()
    per_batch = 6 * BATCH_RUNS
    for start in range(0, len(spans), per_batch):
        result = exporter.export(spans[start : start + per_batch])
        if result.name != "SUCCESS":
            raise RuntimeError(f"the server refused a batch: {result}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vpo-bench-ingest-"))
    db = database_with_files(folder / "vpo.db", FILES)
    server = start_server(db, folder, env={"VPO_WORKER_TOKEN": TOKEN})
    try:
        print(f"{args.runs} runs of 6 spans, batches of {BATCH_RUNS} runs, server {server.url}")
        for label, compression, fresh in (
            ("new runs, uncompressed", Compression.NoCompression, True),
            ("new runs, gzip", Compression.Gzip, True),
            ("the same runs again (duplicates)", Compression.Gzip, False),
        ):
            if fresh:
                spans = _spans(args.runs)
            before = query(db, "SELECT count(*) FROM processing_stats")[0][0]
            seconds = _send(server.url, spans, compression)
            stored = query(db, "SELECT count(*) FROM processing_stats")[0][0] - before
            print(
                f"  {label:34} {args.runs / seconds:7,.0f} runs/s  "
                f"{len(spans) / seconds:8,.0f} spans/s  ({stored} new rows, {seconds:.2f} s)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
