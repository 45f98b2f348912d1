"""Scan throughput: a first scan of N sample files (probe + hash + store) and a re-scan
of the unchanged library (stat + one indexed lookup per file).

Run: .venv/bin/python benchmarks/bench_scan.py [--files 200] [--jobs N]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from vpo.db import open_database
from vpo.samples import make_samples
from vpo.workflow.scan import scan_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpo-bench-scan-") as work:
        library = Path(work) / "library"
        make_samples(library, args.files)
        conn = open_database(Path(work) / "bench.db")
        for label in ("first scan", "re-scan, nothing changed"):
            start = time.perf_counter()
            report = scan_paths(conn, [library], jobs=args.jobs)
            seconds = time.perf_counter() - start
            print(
                f"{label:<26} {report.total:5d} files in {seconds:6.2f} s = "
                f"{report.total / seconds:8.1f} files/s  (jobs={args.jobs}; "
                f"added {report.added}, unchanged {report.unchanged}, failed {report.failed})"
            )
        conn.close()


if __name__ == "__main__":
    main()
