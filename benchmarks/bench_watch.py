"""Watch-mode benchmark: the memory (RSS) of a real `vpo serve --watch` after 1,000 and
10,000 processed runs — it must not grow without bound — and what a pass over a settled
library costs (stat calls only).

Run: .venv/bin/python benchmarks/bench_watch.py [--runs 10000] [--jobs 2] [--rounds 2]

The library is `--runs` copies of the sample `clean-hevc.mkv` (which already conforms to
language-cleanup, so each run probes, plans nothing and is recorded), given old mtimes so
the first pass runs them all; then, `--rounds` times in all, every file is given another
old mtime, so the next pass runs them all again: RSS at 10,000 and 20,000 runs shows
whether memory grows with the runs or stays.
"""

import argparse
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vpo.policy.loader import load_policy
from vpo.samples import make_samples
from vpo.telemetry.setup import build_telemetry
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor
from vpo.workflow.scan import DEFAULT_EXTENSIONS
from vpo.workflow.watch import Watcher

POLICY = Path(__file__).resolve().parent.parent / "examples" / "policies" / "language-cleanup.yaml"
PER_FOLDER = 500  # files per folder, as a library of series folders would have


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _runs(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM processing_stats").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def _library(work: Path, runs: int) -> Path:
    samples = make_samples(work / "samples")
    source = next(s.path for s in samples if s.path.name == "clean-hevc.mkv")
    library = work / "library"
    for n in range(runs):
        folder = library / f"show-{n // PER_FOLDER:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / f"episode-{n:05d}.mkv")
    _age(library, 86400)
    return library


def _age(library: Path, seconds: float) -> None:
    """Give every file the same old mtime: changed since its run, yet long still."""
    then = time.time() - seconds
    for path in library.rglob("*.mkv"):
        os.utime(path, (then, then))


def serve_memory(work: Path, library: Path, runs: int, jobs: int, rounds: int) -> None:
    db = work / "vpo.db"
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vpo",
            "--log-level",
            "warning",
            "--db",
            str(db),
            "serve",
            "--port",
            "0",
            "--watch",
            str(library),
            "--policy",
            str(POLICY),
            "--interval",
            "5",
            "--jobs",
            str(jobs),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert serve.stderr is not None
    line = serve.stderr.readline()
    assert re.match(r"Serving on http://", line), line
    started = time.monotonic()
    marks = sorted({m for m in (100, 1000, 10000, runs) if m <= runs})
    print(f"vpo serve --watch over {runs} files, --jobs {jobs} (pid {serve.pid})")
    print(f"{'runs':>7}  {'RSS MiB':>8}  {'elapsed s':>9}  {'runs/s':>7}")
    for round_ in range(rounds):
        if round_:  # every file changed: the next pass runs them all again
            _age(library, 86400 - round_)
        for mark in (m + round_ * runs for m in marks):
            while _runs(db) < mark:
                if serve.poll() is not None:
                    raise RuntimeError(f"vpo serve exited: {serve.stderr.read()}")
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            rss = _rss_mib(serve.pid)
            print(f"{mark:>7}  {rss:>8.1f}  {elapsed:>9.1f}  {mark / elapsed:>7.1f}", flush=True)
    time.sleep(12)  # two idle passes over the settled library
    print(f"{'idle':>7}  {_rss_mib(serve.pid):>8.1f}  (after two passes with nothing to run)")
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=60)


def pass_cost(work: Path, library: Path, repeat: int = 5) -> None:
    """A pass over the settled library, timed in this process (the server's own pass)."""
    db = work / "vpo.db"
    telemetry = build_telemetry(db)
    store = LibraryStore(db)
    processor = FileProcessor(load_policy(POLICY), store, telemetry.tracer, telemetry.metrics)
    watcher = Watcher([library], processor, DEFAULT_EXTENSIONS, interval=300)
    try:
        watcher.run_pass()  # loads the settled files (once per server start)
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            report = watcher.run_pass()
            times.append(time.perf_counter() - began)
            assert report.settled == report.files and not report.batch.runs, report
    finally:
        watcher.close()
        store.close()
        telemetry.shutdown()
    best, files = min(times), report.files
    print(
        f"pass over {files} settled files: {best * 1000:.0f} ms "
        f"({best / files * 1e6:.1f} µs per file; median of {repeat}: "
        f"{sorted(times)[repeat // 2] * 1000:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=2, help="times every file is changed and run again"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpo-bench-watch-") as folder:
        work = Path(folder)
        library = _library(work, args.runs)
        serve_memory(work, library, args.runs, args.jobs, args.rounds)
        pass_cost(work, library)


if __name__ == "__main__":
    main()
