"""Processing benchmarks.

1. A metadata-only policy on a ~1 GB MKV (mkvpropedit, in place) against a full
   `ffmpeg -c copy` remux of the same file, in the same run; warm and cold page cache.
2. A batch of N sample files with `language-cleanup.yaml`: files/s with --jobs 1 and 2,
   and (jobs 1) the share of the wall time spent outside the external tools.

Run: .venv/bin/python benchmarks/bench_process.py [--gigabytes 1.0] [--files 200]
Targets (docs/benchmarks.md): metadata-only >= 10x faster than the remux; under 10 %
of a batch's time outside the tools.
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import vpo.executor.matroska as matroska_module
import vpo.executor.phase as phase_module
import vpo.media.probe as probe_module
from _common import drop_page_cache
from vpo.policy.loader import load_policy
from vpo.samples import make_samples
from vpo.samples.large import make_large_mkv, seconds_for
from vpo.telemetry.setup import build_telemetry, tune_garbage_collector
from vpo.workflow.batch import process_files
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor

ROOT = Path(__file__).resolve().parent.parent
VPO = Path(sys.executable).with_name("vpo")
METADATA_POLICY = """\
schema_version: 1
name: tags
config: {audio_languages: [jpn, eng]}
phases:
  - name: organize
    default_flags: {audio: preferred}
    set_language: [{track_type: audio, from: und, to: jpn}]
"""


def _big_mkv(folder: Path, gigabytes: float) -> Path:
    """Noisy 720p H.264 at a high bitrate with two audio tracks, muxed by mkvmerge."""
    return make_large_mkv(folder / "big.mkv", seconds_for(gigabytes))


def _timed(args: list[str], cold: bool) -> float:
    os.sync()  # no writeback of earlier work inside the timing
    if cold:
        drop_page_cache()
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _last_run_seconds(db: Path) -> float:
    conn = sqlite3.connect(db)
    try:
        (seconds,) = conn.execute(
            "SELECT duration_seconds FROM processing_stats ORDER BY processed_at DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return float(seconds)


def metadata_vs_remux(work: Path, gigabytes: float, repeat: int = 3) -> None:
    """The whole `vpo process` command (interpreter start, imports, scan, run) and the run
    itself (its recorded duration: probes, mkvmerge -J, mkvpropedit, hashes) against
    `ffmpeg -c copy` of the same file; medians of `repeat` rounds."""
    big = _big_mkv(work, gigabytes)
    size = big.stat().st_size
    policy = work / "tags.yaml"
    db = work / "meta.db"
    print(f"file: {size / 1e9:.2f} GB MKV (H.264 720p + 2 AAC)")
    languages = ["und", "jpn"]
    for cold in (False, True):
        if cold and not drop_page_cache():
            print("(page cache cannot be dropped here: cold figures skipped)")
            break
        commands, runs, remuxes = [], [], []
        for _ in range(repeat):
            old, new = languages  # each round changes the tag back and forth
            languages.reverse()
            policy.write_text(
                METADATA_POLICY.replace("from: und, to: jpn", f"from: {old}, to: {new}")
            )
            inode = big.stat().st_ino
            commands.append(
                _timed(
                    [str(VPO), "--db", str(db), "process", "--policy", str(policy), str(big)], cold
                )
            )
            assert big.stat().st_ino == inode, "the metadata-only run must edit in place"
            runs.append(_last_run_seconds(db))
            copy = work / "copy.mkv"
            remuxes.append(
                _timed(
                    [
                        "ffmpeg",
                        "-v",
                        "error",
                        "-y",
                        "-i",
                        str(big),
                        "-map",
                        "0",
                        "-c",
                        "copy",
                        str(copy),
                    ],
                    cold,
                )
            )
            copy.unlink()
        command, run, remux = (statistics.median(x) for x in (commands, runs, remuxes))
        label = "cold page cache" if cold else "warm page cache"
        print(
            f"{label}: ffmpeg -c copy remux {remux:.2f} s; vpo metadata-only run {run:.3f} s "
            f"(ratio {remux / run:.1f}x); whole vpo command {command:.2f} s "
            f"(ratio {remux / command:.1f}x)   (target >= 10x)"
        )
    big.unlink()


class ToolClock:
    """The wall time during which at least one external tool runs (probes, mkvmerge -J,
    the phase's tool); calls that overlap count once."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._active = 0
        self._since = 0.0
        self._lock = threading.Lock()

    def wrap(self, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self._active == 0:
                    self._since = time.perf_counter()
                self._active += 1
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self._active -= 1
                    if self._active == 0:
                        self.seconds += time.perf_counter() - self._since

        return timed


def batch(work: Path, files: int) -> None:
    tune_garbage_collector()
    policy = load_policy(ROOT / "examples" / "policies" / "language-cleanup.yaml")
    for jobs in (1, 2):
        library = work / f"batch-{jobs}"
        make_samples(library, files)
        db = work / f"batch-{jobs}.db"
        clock = ToolClock()
        originals = (phase_module.run_tool, matroska_module.run_tool, probe_module.subprocess)
        phase_module.run_tool = clock.wrap(phase_module.run_tool)
        matroska_module.run_tool = clock.wrap(matroska_module.run_tool)

        class _Subprocess:  # probe's subprocess.run, timed
            run = staticmethod(clock.wrap(subprocess.run))
            TimeoutExpired = subprocess.TimeoutExpired

        probe_module.subprocess = _Subprocess  # type: ignore[assignment]
        try:
            telemetry = build_telemetry(db)
            store = LibraryStore(db)
            processor = FileProcessor(policy, store, telemetry.tracer, telemetry.metrics)
            paths = sorted(library.glob("*.m*"))
            start = time.perf_counter()
            cpu = time.process_time()
            report = process_files(processor, paths, jobs)
            problems = telemetry.shutdown()  # every run in the database: part of the work
            wall = time.perf_counter() - start
            own_cpu = time.process_time() - cpu
            store.close()
        finally:
            phase_module.run_tool, matroska_module.run_tool, probe_module.subprocess = originals
        assert report.failed == 0 and not problems
        outside = 1 - clock.seconds / wall
        print(
            f"batch of {len(paths)} files, --jobs {jobs}: {wall:.2f} s = "
            f"{len(paths) / wall:.1f} files/s; VPO's own CPU {own_cpu:.2f} s; some tool "
            f"running {clock.seconds:.2f} s, none {outside:.1%} of the time   (target < 10 %)"
        )
        shutil.rmtree(library)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="0 skips the big file")
    parser.add_argument("--files", type=int, default=200, help="0 skips the batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpo-bench-process-", dir=ROOT) as work:
        if args.gigabytes > 0:
            metadata_vs_remux(Path(work), args.gigabytes)
        if args.files > 0:
            batch(Path(work), args.files)


if __name__ == "__main__":
    main()
