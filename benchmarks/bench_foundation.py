"""Foundation benchmarks: the partial hash at 20 MB and 20 GB, and `vpo --help` cold start.

Run: .venv/bin/python benchmarks/bench_foundation.py [--repeat N]
Prints one line per figure; copy them to docs/benchmarks.md with the machine.
Targets (docs/benchmarks.md): partial hash of a 20 GB sparse file <= 20 ms and the same as a
20 MB one; `vpo --help` cold start <= 300 ms.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import drop_page_cache
from vpo.media.hashing import partial_hash

VPO = Path(sys.executable).with_name("vpo")


def _time_ms(action: Callable[[], object], repeat: int, cold: bool = False) -> list[float]:
    times = []
    for _ in range(repeat):
        if cold:
            drop_page_cache()
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _report(label: str, times: list[float], target: str) -> None:
    print(
        f"{label:<48} median {statistics.median(times):8.2f} ms   "
        f"min {min(times):8.2f} ms   max {max(times):8.2f} ms   (n={len(times)}; target {target})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )

    with tempfile.TemporaryDirectory(prefix="vpo-bench-") as work:
        small = Path(work) / "20mb.mkv"
        small.write_bytes(os.urandom(20 * 1000 * 1000))
        big = Path(work) / "20gb.mkv"
        with big.open("wb") as handle:  # sparse: real bytes at both ends, holes between
            handle.write(os.urandom(2 * 1024 * 1024))
            handle.truncate(20 * 1000**3)
            handle.seek(20 * 1000**3 - 2 * 1024 * 1024)
            handle.write(os.urandom(2 * 1024 * 1024))
        partial_hash(small)
        _report(
            "partial hash, 20 MB, warm cache",
            _time_ms(lambda: partial_hash(small), args.repeat),
            "<= 20 ms",
        )
        _report(
            "partial hash, 20 GB sparse, warm cache",
            _time_ms(lambda: partial_hash(big), args.repeat),
            "<= 20 ms",
        )
        if drop_page_cache():
            cold_small = _time_ms(lambda: partial_hash(small), args.repeat, cold=True)
            cold_big = _time_ms(lambda: partial_hash(big), args.repeat, cold=True)
            _report("partial hash, 20 MB, page cache dropped", cold_small, "<= 20 ms")
            _report("partial hash, 20 GB sparse, page cache dropped", cold_big, "<= 20 ms")
        else:
            print("(page cache cannot be dropped here: cold-cache hash figures skipped)")

    def help_once() -> None:
        subprocess.run([str(VPO), "--help"], check=True, stdout=subprocess.DEVNULL)

    help_once()
    _report("`vpo --help`, process start to exit", _time_ms(help_once, args.repeat), "<= 300 ms")


if __name__ == "__main__":
    main()
