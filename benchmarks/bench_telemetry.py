"""Telemetry benchmarks: exporter throughput into SQLite, tracing + metrics overhead of
one run with 20 actions, and the library collector's scrape at 100,000 files.

Run: .venv/bin/python benchmarks/bench_telemetry.py [--runs 2000] [--files 100000]
Targets (docs/benchmarks.md): exporter >= 20,000 spans/s; overhead <= 2 ms per run; scrape of
the library collector <= 50 ms at 100,000 files.
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.synthetic

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest
from tests.synthetic import emit, many_action_run

from vpo.db import open_database
from vpo.telemetry.collector import LibraryCollector
from vpo.telemetry.exporter import StatsSpanExporter
from vpo.telemetry.setup import build_telemetry, tune_garbage_collector

BATCH = 512  # BatchSpanProcessor's default batch size


def _library(db: Path, files: int) -> None:
    conn = open_database(db)
    rng = random.Random(1)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO files (id, path, size_bytes, mtime, container, scanned_at, video_codec, "
        "video_width, video_height) VALUES (?, ?, ?, 1, ?, 'x', ?, ?, ?)",
        [
            (
                i,
                f"/library/{i}.mkv",
                rng.randrange(10**8, 10**10),
                rng.choice(["mkv", "mkv", "mp4"]),
                rng.choice(["h264", "hevc", "av1"]),
                *rng.choice([(1920, 1080), (3840, 2160), (1280, 720), (720, 480)]),
            )
            for i in range(1, files + 1)
        ],
    )
    conn.executemany(
        "INSERT INTO tracks (file_id, track_index, track_type, codec, language) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (f, i, kind, codec, "eng")
            for f in range(1, files + 1)
            for i, (kind, codec) in enumerate(
                [
                    ("video", "h264"),
                    ("audio", "aac"),
                    ("audio", "ac3"),
                    ("audio", rng.choice(["flac", "dts", "eac3"])),
                    ("subtitle", "subrip"),
                    ("subtitle", "ass"),
                    ("attachment", "ttf"),
                    ("attachment", "ttf"),
                ]
            )
        ],
    )
    conn.execute("COMMIT")
    conn.close()


def exporter_throughput(work: Path, runs: int) -> None:
    db = work / "export.db"
    _library(db, 10)
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(runs):
        emit(tracer, None, many_action_run(1 + i % 10))
    spans = list(memory.get_finished_spans())
    exporter = StatsSpanExporter(db)
    exporter.export([])  # open the database outside the timing
    start = time.perf_counter()
    for offset in range(0, len(spans), BATCH):
        exporter.export(spans[offset : offset + BATCH])
    exporter.force_flush()
    seconds = time.perf_counter() - start
    exporter.shutdown()
    assert exporter.runs_written == runs and not exporter.problems
    print(
        f"exporter: {len(spans)} spans ({runs} runs of 24 spans) in {seconds:.2f} s = "
        f"{len(spans) / seconds:,.0f} spans/s   (target >= 20,000 spans/s)"
    )


def run_overhead(work: Path, runs: int) -> None:
    """Two views of the cost of one run's telemetry: the time it adds to the workflow's
    thread (spans, metrics, crash marker; the batch processor's thread exports at the
    same time, as in a real batch), and all the CPU it takes, export to SQLite included."""
    db = work / "overhead.db"
    _library(db, 10)
    tune_garbage_collector()  # as open_telemetry() does for `vpo process` / `vpo serve`
    telemetry = build_telemetry(db)
    for i in range(50):  # warm-up: connections, caches
        emit(telemetry.tracer, telemetry.metrics, many_action_run(1 + i % 10))
    telemetry.flush()
    times = []
    cpu_start = time.process_time()
    for i in range(runs):
        run = many_action_run(1 + i % 10)
        start = time.perf_counter()
        emit(telemetry.tracer, telemetry.metrics, run)
        times.append((time.perf_counter() - start) * 1000)
    assert telemetry.shutdown() == []
    cpu_ms = (time.process_time() - cpu_start) * 1000 / runs
    times.sort()
    print(
        f"overhead per run (24 spans, 20 actions, metrics, crash marker) in the workflow thread: "
        f"median {statistics.median(times):.3f} ms, mean {statistics.fmean(times):.3f} ms, "
        f"p95 {times[int(len(times) * 0.95)]:.3f} ms, p99 {times[int(len(times) * 0.99)]:.3f} ms, "
        f"max {times[-1]:.1f} ms over {runs} runs   (target <= 2 ms)"
    )
    print(f"all CPU per run, export to SQLite included: {cpu_ms:.3f} ms")


def collector_scrape(work: Path, files: int) -> None:
    db = work / "library.db"
    start = time.perf_counter()
    _library(db, files)
    made = time.perf_counter() - start
    print(f"library of {files:,} files and {files * 8:,} tracks made in {made:.1f} s")
    collector = LibraryCollector(db)
    list(collector.collect())
    times = []
    for _ in range(30):
        start = time.perf_counter()
        list(collector.collect())
        times.append((time.perf_counter() - start) * 1000)
    telemetry = build_telemetry(db)
    scrape = []
    for _ in range(30):
        start = time.perf_counter()
        generate_latest(telemetry.registry)
        scrape.append((time.perf_counter() - start) * 1000)
    telemetry.shutdown()
    conn = open_database(db)
    naive = []
    for _ in range(5):
        start = time.perf_counter()
        conn.execute("SELECT container, count(*), sum(size_bytes) FROM files GROUP BY 1").fetchall()
        conn.execute("SELECT track_type, codec, count(*) FROM tracks GROUP BY 1, 2").fetchall()
        naive.append((time.perf_counter() - start) * 1000)
    conn.close()
    print(
        f"library collector at {files:,} files: median {statistics.median(times):.2f} ms "
        f"(max {max(times):.2f}); whole /metrics body median {statistics.median(scrape):.2f} ms   "
        f"(target <= 50 ms); plain GROUP BY over files + tracks: {statistics.median(naive):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpo-bench-telemetry-") as work:
        exporter_throughput(Path(work), args.runs)
        run_overhead(Path(work), min(args.runs, 1000))
        collector_scrape(Path(work), args.files)


if __name__ == "__main__":
    main()
