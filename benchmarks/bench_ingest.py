"""OTLP ingest of `vpo serve`: runs per second that POST /v1/traces turns into rows, sent
by the real OpenTelemetry OTLP/HTTP exporter as a worker would, in batches of 100 runs of
6 spans (a run, a phase, four actions) — and what the server spends on each run.

Run: .venv/bin/python benchmarks/bench_ingest.py [--runs 5000] [--existing 0,100000]
     [--reps 3] [--profile 25]
Target (issue #14): >= 5,000 runs/s of 6 spans on one core. The client (protobuf encoding
in Python) shares this machine's two cores with the server, so the wall-clock rate is not
the server's: each line also gives the server process's CPU time per run (user + system,
all threads, from /proc/<pid>/stat). Each figure comes from a fresh server on a copy of a
database holding `--existing` runs already (a bigger database costs more per run: runs
have random UUIDv4 ids, so each lands on its own page of every index on them), warmed
with one batch; the median of `--reps` is given, as this shared machine drifts. A second
part measures the ingest alone in this process (pre-encoded protobuf bodies handed to the
server's `Ingest`, no HTTP and no client), in CPU time: 1 / (CPU s per run) is the rate
one core would reach.
"""

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import statistics
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

from vpo.db import open_database
from vpo.db.rollups import adding_runs
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


def _per_core(micros: float) -> str:
    """µs of CPU per run, and the runs per second one core would do."""
    return f"{micros:4.0f} µs CPU/run = {1e6 / micros:6,.0f} runs/s a core"


def _filled(folder: Path, existing: int) -> Path:
    """A database with FILES files and `existing` runs recorded before (each with 4 action
    rows and a phase row, random UUIDv4 ids as real runs have — their indexes are where a
    bigger database costs more — over the last year), and their rollups."""
    db = database_with_files(folder / f"vpo-{existing}.db", FILES)
    if not existing:
        return db
    conn = open_database(db)
    conn.execute("BEGIN IMMEDIATE")
    with adding_runs(conn):  # a plain INSERT is not added to the rollups by itself
        conn.execute(
            "WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < ? - 1), "
            "r(n, h) AS (SELECT n, lower(hex(randomblob(16))) FROM c) "
            "INSERT INTO processing_stats (id, file_id, processed_at, policy_name, size_before, "
            "size_after, size_change, audio_tracks_before, audio_tracks_after, "
            "audio_tracks_removed, duration_seconds, phases_completed, phases_total, "
            "total_changes, success, hash_before, hash_after, trace_id, worker) "
            "SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || "
            "'-8' || substr(h, 18, 3) || '-' || substr(h, 21, 12), 1 + n % ?, "
            "strftime('%Y-%m-%dT%H:%M:%S', 'now', printf('-%d seconds', n * 31536000 / ?)) "
            "|| '.000000Z', 'bench', 700000000 + n, 697000000 + n, 3000000, 6, 2, 4, 1.5, "
            "1, 1, 4, 1, 'sha256:' || h || h, 'sha256:' || h || h, h || h, 'bench-worker' FROM r",
            (existing, FILES, existing),
        )
    conn.execute(
        "INSERT INTO action_results (stats_id, action_type, track_type, track_index, "
        "before_state, after_state, success, duration_ms, rule_reference, tool, tool_call) "
        "SELECT s.id, 'remove', 'audio', k.i, '{\"codec\": \"aac\"}', NULL, 1, 1, "
        "'phases[0].keep_audio', 'mkvmerge', 1 FROM processing_stats s, "
        "(SELECT 0 i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) k"
    )
    conn.execute(
        "INSERT INTO performance_metrics (stats_id, phase_name, wall_time_seconds) "
        "SELECT id, 'cleanup', 1.5 FROM processing_stats"
    )
    conn.execute("COMMIT")
    conn.close()
    return db


def _http_rep(template: Path, runs: int, compression: Compression) -> tuple[float, ...]:
    """A server on a copy of `template`, warmed with one batch; then `runs` new runs and
    the same again (duplicates). (runs/s, server µs CPU per run) of each."""
    folder = Path(tempfile.mkdtemp(prefix="vpo-bench-ingest-"))
    db = folder / "vpo.db"
    shutil.copyfile(template, db)
    server = start_server(db, folder, env={"VPO_WORKER_TOKEN": TOKEN})
    try:
        _send(server.url, _spans(BATCH_RUNS), compression)  # first connections, statements
        spans = _spans(runs)
        figures: list[float] = []
        for _ in ("new", "duplicates"):
            before = query(db, "SELECT count(*) FROM processing_stats")[0][0]
            cpu_before = _cpu_seconds(server.process.pid)
            seconds = _send(server.url, spans, compression)
            cpu = _cpu_seconds(server.process.pid) - cpu_before
            stored = query(db, "SELECT count(*) FROM processing_stats")[0][0] - before
            if stored != (runs if not figures else 0):
                raise RuntimeError(f"{stored} rows stored from {runs} runs")
            figures += [runs / seconds, cpu / runs * 1e6]
        return tuple(figures)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _over_http(runs: int, existing: list[int], reps: int) -> None:
    """Each size of database, each compression: `reps` fresh servers, their figures and
    the median (this shared machine drifts by ±10 % from one run to the next)."""
    print(
        f"over HTTP: {runs} runs of 6 spans, batches of {BATCH_RUNS} runs; "
        f"each line a fresh server on a copy of the database, warmed with one batch"
    )
    for size in existing:
        folder = Path(tempfile.mkdtemp(prefix="vpo-bench-ingest-db-"))
        began = time.perf_counter()
        template = _filled(folder, size)
        print(
            f" database holding {size:,} runs before (made in {time.perf_counter() - began:.0f} s):"
        )
        try:
            for label, compression in (
                ("uncompressed", Compression.NoCompression),
                ("gzip", Compression.Gzip),
            ):
                results = [_http_rep(template, runs, compression) for _ in range(reps)]
                for rate, cpu, _, dup_cpu in results:
                    print(
                        f"  {label:13} new {rate:6,.0f} runs/s {6 * rate:7,.0f} spans/s, "
                        f"server {_per_core(cpu)} | again (duplicates): {_per_core(dup_cpu)}"
                    )
                middle = statistics.median(cpu for _, cpu, _, _ in results)
                print(f"  {label:13} median of {reps}, new runs: server {_per_core(middle)}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


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
            print(f"  {label:34} {_per_core(cpu / runs * 1e6)}{note}")
            if profiler is not None:
                pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(profile)
        stored = query(db, "SELECT count(*) FROM processing_stats")[0][0]
        print(f"  ({stored - BATCH_RUNS} runs stored)")
    finally:
        ingest.close()
        gc.unfreeze()
    _local_exporter(runs)


def _local_exporter(runs: int) -> None:
    """The other half of the target: a local run's spans (`vpo process`, `vpo serve
    --watch`) handed by the batch processor straight to the `StatsSpanExporter`, in
    batches of the same 600 spans (no parse, no contract check)."""
    spans = _spans(runs)
    per_batch = 6 * BATCH_RUNS
    db = database_with_files(Path(tempfile.mkdtemp(prefix="vpo-bench-ingest-")) / "vpo.db", FILES)
    exporter = StatsSpanExporter(db)
    gc.collect()
    gc.freeze()
    try:
        exporter.export(_spans(BATCH_RUNS))  # first connections and statements
        began = time.process_time()
        for start in range(0, len(spans), per_batch):
            if exporter.export(spans[start : start + per_batch]).name != "SUCCESS":
                raise RuntimeError("the runs could not be stored")
        cpu = time.process_time() - began
    finally:
        exporter.shutdown()
        gc.unfreeze()
    stored = query(db, "SELECT count(*) FROM processing_stats")[0][0] - BATCH_RUNS
    print(
        f"the local exporter, in this process: {_per_core(cpu / runs * 1e6)} ({stored} runs stored)"
    )


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
    parser.add_argument(
        "--existing",
        default="0,100000",
        help="comma-separated sizes (runs recorded before) of the databases to ingest into",
    )
    parser.add_argument("--reps", type=int, default=3, help="fresh servers per figure")
    args = parser.parse_args()
    _over_http(args.runs, [int(n) for n in args.existing.split(",")], args.reps)
    _in_process(args.runs, args.profile)


if __name__ == "__main__":
    main()
