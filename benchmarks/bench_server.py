"""The statistics server: `vpo serve` under 32 concurrent clients at 1,000,000 runs.

A database of N synthetic runs (filled by `bench_stats._bulk_fill`, then migrated by
VPO, which builds the rollups) is kept under /tmp/vpo-bench-server/ between runs of this
script. A real `vpo --db DB serve --port 0` is started; after a warm-up, each endpoint
gets a time-bounded load of 32 concurrent connections on loopback — `wrk` when it is
installed (Debian package `wrk`), else an aiohttp load script in this process — and
requests/s, p50, p99 and max are printed. The same questions through the CLI
(`vpo stats … --format json`, process start to exit) are timed in the same run.

Targets (docs/benchmarks.md): p99 <= 50 ms for each endpoint; the summary >= 2,000
requests/s on this 2-core machine.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench_stats import _bulk_fill
from vpo.db import open_database

ROOT = Path(__file__).resolve().parents[1]
VPO = ROOT / ".venv" / "bin" / "vpo"
WORK = Path(tempfile.gettempdir(), "vpo-bench-server")  # the database is kept here
P99_TARGET_MS = 50.0
SUMMARY_TARGET_RPS = 2000.0
ENDPOINTS = (  # (label, path, CLI arguments asking the same question)
    ("summary", "/api/stats/summary", ["stats", "summary"]),
    ("policies", "/api/stats/policies", ["stats", "policy"]),
    ("recent", "/api/stats/recent", ["stats", "recent"]),
    ("metrics", "/metrics", None),
)
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


# -- the database -------------------------------------------------------------------------


def prepare(runs: int, with_actions: bool, fresh: bool) -> Path:
    """The database of `runs` runs, at the current schema; filled once, then reused (a
    marker file says the fill and the migration finished)."""
    WORK.mkdir(parents=True, exist_ok=True)
    db = WORK / f"runs-{runs}.db"
    ready = WORK / f"runs-{runs}.ready"
    if ready.exists() and db.exists() and not fresh:
        print(f"database: {db} (reused; remove it or pass --fresh to refill)")
    else:
        ready.unlink(missing_ok=True)
        for leftover in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            leftover.unlink(missing_ok=True)
        started = time.perf_counter()
        _bulk_fill(db, runs, with_actions)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        open_database(db).close()  # migration to the current version: rollups, indexes
        migrated = time.perf_counter() - started
        ready.write_text(f"{runs} runs\n")
        print(f"database: {db} filled in {filled:.1f} s, migrated in {migrated:.1f} s")
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        count = conn.execute("SELECT count(*) FROM processing_stats").fetchone()[0]
    finally:
        conn.close()
    print(f"  {count:,} runs, {db.stat().st_size / 1e9:.2f} GB")
    return db


# -- the server ---------------------------------------------------------------------------


class Server:
    """A `vpo serve --port 0` subprocess; its stderr is drained in a thread."""

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen(
            [str(VPO), "--db", str(db), "serve", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: deque[str] = deque(maxlen=200)
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        self.base = ""
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            found = re.search(r"Serving on (http://\S+)", line)
            if found:
                self.base = found.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.base:
            self.stop()
            raise SystemExit("vpo serve did not start:\n" + "\n".join(self.lines))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- load ---------------------------------------------------------------------------------


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS_MS[unit]


def load_wrk(url: str, connections: int, threads: int, seconds: float) -> dict[str, Any]:
    """`wrk --latency`: requests/s and the latency distribution (HdrHistogram)."""
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = re.search(r"(\d+) requests in", out)
    assert latency and requests, out
    return {
        "requests": int(requests.group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(percentiles["50"]),
        "p99": _ms(percentiles["99"]),
        "max": _ms(latency.group(3)),
        "errors": (int(errors.group(1)) if errors else 0),
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def load_aiohttp(url: str, connections: int, seconds: float) -> dict[str, Any]:
    """The same load from an aiohttp client in this process (when wrk is absent): it
    shares the 2 cores with the server and costs more CPU per request than wrk."""
    import aiohttp

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        connector = aiohttp.TCPConnector(limit=connections, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            stop = time.perf_counter() + seconds

            async def client() -> None:
                nonlocal errors
                while time.perf_counter() < stop:
                    start = time.perf_counter()
                    async with session.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                    latencies.append((time.perf_counter() - start) * 1000)

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(connections)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        return {
            "requests": len(latencies),
            "rps": len(latencies) / elapsed,
            "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max": latencies[-1],
            "errors": errors,
            "socket_errors": "",
        }

    return asyncio.run(run())


def fetch(url: str) -> tuple[int, bytes]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (loopback)
        return response.status, response.read()


# -- the CLI ------------------------------------------------------------------------------


def cli_median_ms(db: Path, arguments: list[str], repeat: int) -> tuple[float, Any]:
    """Median wall time of `vpo --db DB … --format json`, process start to exit, and
    its answer."""
    args = [str(VPO), "--db", str(db), *arguments, "--format", "json"]
    subprocess.run(args, capture_output=True, check=True)  # warm: page cache
    times = []
    out = b""
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run(args, capture_output=True, check=True).stdout
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), json.loads(out)


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="load per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeat", type=int, default=7, help="CLI runs per question")
    parser.add_argument("--no-actions", action="store_true", help="fill no action rows")
    parser.add_argument("--fresh", action="store_true", help="refill the database")
    parser.add_argument("--aiohttp", action="store_true", help="load from aiohttp, not wrk")
    args = parser.parse_args()

    wrk = None if args.aiohttp else shutil.which("wrk")
    print(f"machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; ", end="")
    print(f"sqlite {sqlite3.sqlite_version}; load average {os.getloadavg()[0]:.2f} at start")
    if wrk is None:
        why = "as asked" if args.aiohttp else "wrk is not installed: `apt-get install -y wrk`"
        print(
            f"load: aiohttp client in the benchmark's process ({why}; the figures of "
            "docs/benchmarks.md are wrk's)"
        )
    else:
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
        print(f"load: {version.splitlines()[0] if version else 'wrk'}, -t{args.threads}")
    db = prepare(args.runs, not args.no_actions, args.fresh)

    server = Server(db)
    rows = []
    answers: dict[str, Any] = {}
    try:
        print(f"server: {server.base} (pid {server.process.pid})")
        for label, path, _ in ENDPOINTS:
            status, body = fetch(server.base + path)
            assert status == 200, (label, status, body[:200])
            if path.startswith("/api/"):
                answers[label] = json.loads(body)
        for _label, path, _ in ENDPOINTS:  # warm-up: a short load of each endpoint
            url = server.base + path
            if wrk:
                load_wrk(url, args.connections, args.threads, 2)
            else:
                load_aiohttp(url, args.connections, 2)
        print(
            f"load: {args.connections} connections, {args.seconds:g} s per endpoint "
            "(after a 2 s warm-up of each)"
        )
        for label, path, _ in ENDPOINTS:
            url = server.base + path
            cpu_before = server.cpu_seconds()
            if wrk:
                figures = load_wrk(url, args.connections, args.threads, args.seconds)
            else:
                figures = load_aiohttp(url, args.connections, args.seconds)
            figures["server_cpu"] = (server.cpu_seconds() - cpu_before) / args.seconds
            rows.append((label, path, figures))
            problems = ""
            if figures["errors"] or figures["socket_errors"]:
                problems = f"   non-2xx {figures['errors']} {figures['socket_errors']}"
            print(
                f"  GET {path:<20} {figures['rps']:>8,.0f} req/s   p50 {figures['p50']:6.2f} ms"
                f"   p99 {figures['p99']:6.2f} ms   max {figures['max']:7.2f} ms"
                f"   ({figures['requests']:,} requests; server CPU "
                f"{figures['server_cpu'] * 100:.0f} %){problems}"
            )
    finally:
        server.stop()
    if server.process.returncode not in (0, None):
        print("server stderr:\n" + "\n".join(server.lines))

    print(f"CLI: median of {args.repeat} runs, process start to exit (server stopped)")
    cli: dict[str, float] = {}
    for label, _path, arguments in ENDPOINTS:
        if arguments is None:
            continue
        cli[label], answer = cli_median_ms(db, arguments, args.repeat)
        same = ""
        if label != "summary":  # the summary's rolling windows move with the clock
            same = "; same answer as the API" if answer == answers[label] else "; DIFFERS"
        print(f"  vpo {' '.join(arguments)} --format json   {cli[label]:6.0f} ms{same}")

    print()
    print("| endpoint | req/s | p50 | p99 | max | CLI, same question |")
    print("|---|---|---|---|---|---|")
    for label, path, figures in rows:
        cli_text = f"{cli[label]:.0f} ms" if label in cli else "—"
        print(
            f"| `GET {path}` | {figures['rps']:,.0f} | {figures['p50']:.2f} ms | "
            f"{figures['p99']:.2f} ms | {figures['max']:.2f} ms | {cli_text} |"
        )
    summary_rps = rows[0][2]["rps"]
    worst = max(rows, key=lambda row: row[2]["p99"])
    print()
    print(
        f"targets: p99 <= {P99_TARGET_MS:g} ms: "
        f"{'met' if worst[2]['p99'] <= P99_TARGET_MS else 'NOT met'} "
        f"(worst {worst[2]['p99']:.2f} ms, {worst[0]}); summary >= {SUMMARY_TARGET_RPS:,.0f} "
        f"req/s: {'met' if summary_rps >= SUMMARY_TARGET_RPS else 'NOT met'} "
        f"({summary_rps:,.0f})"
    )


if __name__ == "__main__":
    main()
