"""OTLP ingest of `vpo serve`: runs per second that POST /v1/traces turns into rows, sent
by the real OpenTelemetry OTLP/HTTP exporter as a worker would, in batches of 100 runs of
6 spans (a run, a phase, four actions) — and what the server spends on each run.

Run: .venv/bin/python benchmarks/bench_ingest.py [--runs 5000] [--profile 25]
Target (issue #14): >= 5,000 runs/s of 6 spans on one core. The client (protobuf encoding
in Python) shares this machine's two cores with the server, so the wall-clock rate is not
the server's: each line also gives the server process's CPU time per run (user + system,
all threads, from /proc/<pid>/stat), and a second part measures the ingest alone in this
process (pre-encoded protobuf bodies handed to the server's `Ingest`, no HTTP and no
client), in CPU time: 1 / (CPU s per run) is the rate one core would reach.
"""

import argparse
import cProfile
import gc
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.helpers import database_with_files, query
from tests.integration.test_server_api import start_server
from tests.synthetic import SyntheticAction, SyntheticRun, emit

from vpo.server.otlp_ingest import Ingest, Outcome
from vpo.telemetry import otlp_spans
from vpo.telemetry.exporter import StatsSpanExporter
from vpo.telemetry.setup import tune_garbage_collector

BATCH_RUNS = 100
FILES = 1_000  # distinct paths, as in a library
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
        # What differs from run to run in a real library: the file, its sizes and hashes
        # (the policy, codecs, rules and states repeat).
        size = 700_000_000 + 7_919 * n
        run = SyntheticRun(
            file_id=1 + n % FILES,
            phases=[("cleanup", actions)],
            size_before=size,
            size_after=size - 3_000_000 - n % 4_099,
            hash_before=f"sha256:{n:064x}",
            hash_after=f"sha256:{(n + 1) << 200:064x}",
        )
        emit(tracer, None, run)
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and all its threads so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_core(cpu: float, runs: int) -> str:
    return f"{cpu / runs * 1e6:5.0f} µs CPU/run = {runs / cpu:7,.0f} runs/s on one core"


def _over_http(runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vpo-bench-ingest-"))
    db = database_with_files(folder / "vpo.db", FILES)
    server = start_server(db, folder, env={"VPO_WORKER_TOKEN": TOKEN})
    try:
        print(f"{runs} runs of 6 spans, batches of {BATCH_RUNS} runs, server {server.url}")
        for label, compression, fresh in (
            ("new runs, uncompressed", Compression.NoCompression, True),
            ("new runs, gzip", Compression.Gzip, True),
            ("the same runs again (duplicates)", Compression.Gzip, False),
        ):
            if fresh:
                spans = _spans(runs)
            before = query(db, "SELECT count(*) FROM processing_stats")[0][0]
            cpu_before = _cpu_seconds(server.process.pid)
            seconds = _send(server.url, spans, compression)
            cpu = _cpu_seconds(server.process.pid) - cpu_before
            stored = query(db, "SELECT count(*) FROM processing_stats")[0][0] - before
            print(
                f"  {label:34} {runs / seconds:7,.0f} runs/s  "
                f"{len(spans) / seconds:8,.0f} spans/s  ({stored} new rows, {seconds:.2f} s)"
                f"  server: {_per_core(cpu, runs)}"
            )
    finally:
        server.stop()


def _receive(ingest: Ingest, body: bytes) -> Outcome:
    """What the request handler does with a protobuf body once it is read."""
    return ingest.ingest(otlp_spans.spans_from_protobuf(body))


def _in_process(runs: int, profile: int) -> None:
    """The server's ingest alone: protobuf bodies encoded beforehand, handed to `Ingest`
    in this thread as the request handler does (parse, convert, check, record)."""
    spans = _spans(runs)
    per_batch = 6 * BATCH_RUNS
    bodies = [
        encode_spans(spans[start : start + per_batch]).SerializeToString()
        for start in range(0, len(spans), per_batch)
    ]
    warm = encode_spans(_spans(BATCH_RUNS)).SerializeToString()
    db = database_with_files(Path(tempfile.mkdtemp(prefix="vpo-bench-ingest-")) / "vpo.db", FILES)
    ingest = Ingest(db, StatsSpanExporter(db), TOKEN, owns_exporter=True)
    # As in `vpo serve`: its GC thresholds; the client's objects made above are moved
    # out of the collector's sight (in the server they live in another process).
    tune_garbage_collector()
    gc.collect()
    gc.freeze()
    print(f"in this process, no HTTP: {len(bodies)} protobuf bodies of {BATCH_RUNS} runs")
    try:
        _receive(ingest, warm)  # first connections and statements
        for label in ("new runs", "the same runs again (duplicates)"):
            profiler = cProfile.Profile() if profile and label == "new runs" else None
            began = time.process_time()
            if profiler is not None:
                profiler.enable()
            for body in bodies:
                if not _receive(ingest, body).stored:
                    raise RuntimeError("the runs could not be stored")
            if profiler is not None:
                profiler.disable()
            cpu = time.process_time() - began
            note = " (under the profiler: slower)" if profiler is not None else ""
            print(f"  {label:34} {_per_core(cpu, runs)}{note}")
            if profiler is not None:
                pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(profile)
        stored = query(db, "SELECT count(*) FROM processing_stats")[0][0]
        print(f"  ({stored - BATCH_RUNS} runs stored)")
    finally:
        ingest.close()
        gc.unfreeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile the in-process new runs and print the N costliest functions",
    )
    args = parser.parse_args()
    _over_http(args.runs)
    _in_process(args.runs, args.profile)


if __name__ == "__main__":
    main()
