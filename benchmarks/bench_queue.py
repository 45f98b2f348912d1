"""Queue benchmark (issue #14): `vpo worker` through Redis against `vpo process`.

On N copies of the sample media (`--files`, 200) with a metadata-only policy — one
`set_language` per file (the untagged video track tagged `eng`): mkvpropedit in place on
the MKVs, an ffmpeg remux of the MP4s — so every file is changed and its run recorded:

1. files/s of `vpo process --jobs 1` and `--jobs 2`, each on fresh copies (the whole
   command, launch to exit);
2. files/s of ONE `vpo worker --jobs 1`, then TWO (two processes, `--jobs 1` each), on
   fresh copies, recording on a real `vpo serve` (VPO_WORKER_TOKEN) through a real
   redis-server on loopback. Wall time: from the launch of `vpo process --queue` (workers
   ready and idle, queue empty) until the server's database holds every run (polled every
   20 ms); printed with its ratio to `vpo process` at the same parallelism;
3. enqueue-to-start latency, with the same idle workers: messages sent one at a time,
   each after the previous run is recorded and a pause (`--gap`), from the sender's
   clock just before `actor.send` to the run's start (`processing_stats.processed_at`,
   same machine, same clock).

Every library is scanned into its database first (not timed), as a served library is.
Each mode checks that every file was recorded exactly once, successfully, with its one
change, and that no message was refused, retried or dead-lettered. CPU seconds of each
process (from /proc) show where a file's time goes.

Run: .venv/bin/python benchmarks/bench_queue.py [--files 200] [--repeat 1]
     [--latency 50] [--gap 0.2]
The workers inherit the environment: `dramatiq_worker_timeout=50` (Dramatiq's idle poll
back-off cap, 1000 ms by default) shows what the consumer's polling costs.
"""

import argparse
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.*

import redis  # noqa: E402
from tests.integration.test_server_api import Server  # noqa: E402
from tests.queue_support import (  # noqa: E402
    WORKER_TOKEN,
    dead_letters,
    redis_server,
    serve,
    start_worker,
)

from vpo.media.identity import FileIdentity  # noqa: E402
from vpo.queue.broker import QUEUE_NAME, declare, make_broker  # noqa: E402
from vpo.queue.message import FileMessage, policy_digest  # noqa: E402
from vpo.queue.telemetry import server_problem  # noqa: E402
from vpo.samples import make_samples  # noqa: E402
from vpo.timefmt import parse_utc  # noqa: E402
from vpo.workflow.library_store import LibraryStore  # noqa: E402

VPO = Path(sys.executable).with_name("vpo")
POLICY_NAME = "bench-queue-tags"  # as in POLICY
POLICY = """\
schema_version: 1
name: bench-queue-tags
description: Metadata only - the untagged video track is tagged English.
phases:
  - name: tags
    set_language:
      - {track_type: video, from: und, to: eng}
"""
TICK = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.02
READY_TIMEOUT = 60.0


@dataclass
class Cpu:
    """CPU seconds of one process: its own, and its reaped children's (the tools)."""

    own: float = 0.0
    children: float = 0.0

    def __sub__(self, other: "Cpu") -> "Cpu":
        return Cpu(self.own - other.own, self.children - other.children)

    def __add__(self, other: "Cpu") -> "Cpu":
        return Cpu(self.own + other.own, self.children + other.children)


def cpu_of(pid: int) -> Cpu:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return Cpu((utime + stime) / TICK, (cutime + cstime) / TICK)


def children_cpu() -> float:
    """CPU seconds of this script's ended children and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    file_id: int
    success: bool
    changes: int
    start: float  # epoch seconds
    duration: float
    trace_id: str
    error: str | None


@dataclass
class Throughput:
    label: str
    jobs: int
    files: int
    wall: float
    load: float
    runs: list[Run]
    cpu: dict[str, float] = field(default_factory=dict)  # what -> CPU seconds
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.files / self.wall


def library_runs(db: Path, library: Path) -> list[Run]:
    """Every recorded run of a file under `library`."""
    prefix = str(library.resolve()) + "/"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT ps.file_id, ps.success, ps.total_changes, ps.processed_at, "
            "ps.duration_seconds, ps.trace_id, ps.error_message FROM processing_stats ps "
            "JOIN files f ON f.id = ps.file_id WHERE substr(f.path, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchall()
        known = conn.execute(
            "SELECT count(*) FROM files WHERE substr(path, 1, ?) = ?", (len(prefix), prefix)
        ).fetchone()[0]
    finally:
        conn.close()
    if known != len(list(media(library))):
        raise AssertionError(f"{known} files of {library} in the database, not all of them")
    return [
        Run(row[0], bool(row[1]), row[2], parse_utc(row[3]).timestamp(), row[4], row[5], row[6])
        for row in rows
    ]


def check_runs(runs: list[Run], files: int, what: str) -> None:
    """Every file recorded once, successfully, with its one change."""
    problems = []
    if len(runs) != files:
        problems.append(f"{len(runs)} runs for {files} files")
    if len({run.file_id for run in runs}) != files:
        problems.append(f"{len({run.file_id for run in runs})} distinct files run")
    failed = [run.error for run in runs if not run.success]
    if failed:
        problems.append(f"{len(failed)} failed runs, e.g. {failed[0]}")
    unchanged = sum(1 for run in runs if run.changes != 1)
    if unchanged:
        problems.append(f"{unchanged} runs without exactly one change")
    if problems:
        raise AssertionError(f"{what}: " + "; ".join(problems))


def media(library: Path) -> Iterator[Path]:
    return (path for path in sorted(library.iterdir()) if path.suffix in (".mkv", ".mp4"))


def fresh_library(pristine: Path, target: Path, files: int | None = None) -> Path:
    target.mkdir()
    for path in list(media(pristine))[:files]:
        shutil.copy2(path, target / path.name)
    return target


def vpo(db: Path, *args: str | Path) -> list[str]:
    return [str(VPO), "--db", str(db), *map(str, args)]


def scan(db: Path, library: Path) -> None:
    subprocess.run(
        vpo(db, "scan", library),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def load() -> float:
    return os.getloadavg()[0]


def process_mode(work: Path, pristine: Path, policy: Path, jobs: int, tag: str) -> Throughput:
    """`vpo process --jobs N` on fresh copies, launch to exit."""
    library = fresh_library(pristine, work / f"process-{jobs}-{tag}")
    db = work / f"process-{jobs}-{tag}.db"
    scan(db, library)
    files = len(list(media(library)))
    before_load = load()
    ended_children = children_cpu()
    with (work / f"process-{jobs}-{tag}.log").open("w") as log:
        start = time.perf_counter()
        command = subprocess.Popen(
            [*vpo(db, "process", "--policy", policy), "--jobs", str(jobs), str(library)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        last = Cpu()
        while True:
            try:
                code = command.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                with suppress(OSError):  # it just ended
                    last = cpu_of(command.pid)
        wall = time.perf_counter() - start
    total = children_cpu() - ended_children
    if code != 0:
        raise AssertionError(f"vpo process --jobs {jobs} exited {code}")
    runs = library_runs(db, library)
    check_runs(runs, files, f"vpo process --jobs {jobs}")
    result = Throughput(f"`vpo process --jobs {jobs}`", jobs, files, wall, before_load, runs)
    result.cpu = {"vpo": last.own, "tools": total - last.own}
    shutil.rmtree(library)
    return result


@dataclass
class Workers:
    processes: list[subprocess.Popen]
    folders: list[Path]

    def cpu(self) -> Cpu:
        total = Cpu()
        for process in self.processes:
            total = total + cpu_of(process.pid)
        return total

    def logs(self) -> str:
        return "".join((folder / "worker.log").read_text() for folder in self.folders)

    def stop(self) -> list[int]:
        """SIGTERM to each; their exit codes (-9: killed after 60 s)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return codes


def start_workers(work: Path, url: str, server: Server, count: int, tag: str) -> Workers:
    """`count` worker processes, `--jobs 1` each; returned once each says it is ready."""
    folders = []
    for number in range(count):
        folder = work / f"worker-{count}-{number}-{tag}"
        folder.mkdir()
        folders.append(folder)
    processes = [start_worker(url, server.url, folder, "--jobs", "1") for folder in folders]
    workers = Workers(processes, folders)
    deadline = time.monotonic() + READY_TIMEOUT
    while workers.logs().count("Worker ready") < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            workers.stop()
            raise AssertionError(f"the workers did not start:\n{workers.logs()}")
        time.sleep(0.1)
    return workers


def queue_length(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.llen(f"dramatiq:{QUEUE_NAME}")) + int(
            client.hlen(f"dramatiq:{QUEUE_NAME}.msgs")
        )
    finally:
        client.close()


def redis_pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def wait_recorded(db: Path, library: Path, files: int, workers: Workers, seconds: float) -> None:
    """Until the server's database holds `files` runs of `library` (polled)."""
    prefix = str(library.resolve()) + "/"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    deadline = time.monotonic() + seconds
    try:
        while True:
            (count,) = conn.execute(
                "SELECT count(*) FROM processing_stats ps JOIN files f ON f.id = ps.file_id "
                "WHERE substr(f.path, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchone()
            if count >= files:
                return
            if time.monotonic() > deadline or any(p.poll() is not None for p in workers.processes):
                raise AssertionError(
                    f"{count} of {files} runs recorded; worker logs:\n{workers.logs()[-3000:]}"
                )
            time.sleep(POLL_SECONDS)
    finally:
        conn.close()


def queue_mode(
    work: Path,
    pristine: Path,
    policy: Path,
    url: str,
    server: Server,
    workers: Workers,
    tag: str,
) -> Throughput:
    """Enqueue every file with `vpo process --queue` into idle, ready workers; wall time
    until the server has recorded every run."""
    count = len(workers.processes)
    library = fresh_library(pristine, work / f"queue-{count}-{tag}")
    scan(server.db, library)  # the server's library knows its files
    files = len(list(media(library)))
    assert queue_length(url) == 0, "the queue is not empty"
    time.sleep(2.0)  # the workers idle, as workers waiting for work do
    before_load = load()
    pids = {"server": server.process.pid, "redis": redis_pid(url)}
    before = {name: cpu_of(pid) for name, pid in pids.items()}
    before_workers = workers.cpu()
    ended_children = children_cpu()
    start = time.perf_counter()
    enqueue = subprocess.Popen(
        [*vpo(server.db, "process", "--policy", policy), "--queue", url, str(library)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_recorded(server.db, library, files, workers, max(300.0, 3.0 * files))
    wall = time.perf_counter() - start
    seen = time.time()
    after = {name: cpu_of(pid) for name, pid in pids.items()}
    worker_cpu = workers.cpu() - before_workers
    output, _ = enqueue.communicate(timeout=60)
    enqueue_cpu = children_cpu() - ended_children
    if enqueue.returncode != 0 or output.strip() != f"Enqueued {files} file(s).":
        raise AssertionError(f"vpo process --queue: {enqueue.returncode} {output}")
    time.sleep(1.0)  # a duplicate run would arrive now
    runs = library_runs(server.db, library)
    check_runs(runs, files, f"{count} worker(s)")
    result = Throughput(f"{count} x `vpo worker --jobs 1`", count, files, wall, before_load, runs)
    result.cpu = {
        "vpo": worker_cpu.own,
        "tools": worker_cpu.children,
        "server": (after["server"] - before["server"]).own,
        "redis": (after["redis"] - before["redis"]).own,
        "enqueue": enqueue_cpu,
    }
    last_end = max(run.start + run.duration for run in runs)
    result.notes.append(
        f"the last run ended at its worker {seen - last_end:.3f} s before the server's "
        f"database was seen holding it (polled every {POLL_SECONDS * 1000:.0f} ms)"
    )
    shutil.rmtree(library)
    return result


@dataclass
class Latency:
    workers: int
    gap: float
    start: list[float]  # send -> run start, seconds
    start_dramatiq: list[float]  # Dramatiq's message_timestamp (ms) -> run start
    recorded: list[float]  # send -> the run seen in the server's database
    durations: list[float]
    load: float


def latency_mode(
    work: Path,
    pristine: Path,
    url: str,
    server: Server,
    workers: Workers,
    messages: int,
    gap: float,
    tag: str,
) -> Latency:
    """One message at a time into idle workers: each sent `gap` s after the previous run
    is recorded; send -> run start, from the sender's clock just before `actor.send`."""
    count = len(workers.processes)
    library = fresh_library(pristine, work / f"latency-{count}-{tag}", messages)
    scan(server.db, library)
    paths = list(media(library))
    digest = policy_digest(POLICY)
    broker = make_broker(url)
    actor = declare(broker, _never_run_here)
    store = LibraryStore(server.db)
    conn = sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)
    sent: dict[str, tuple[float, int]] = {}
    recorded: dict[str, float] = {}
    before_load = load()
    try:
        for path in paths:
            known = store.known(path.resolve())
            assert known is not None, f"{path} was not scanned"
            identity = FileIdentity.of(path)
            message = FileMessage(
                policy_yaml=POLICY,
                policy_digest=digest,
                root=str(library.resolve()),
                relative_path=path.name,
                file_id=known.file_id,
                size=identity.size,
                mtime_ns=identity.mtime_ns,
                partial_hash=identity.partial_hash,
                traceparent=f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01",
            )
            time.sleep(gap)
            at = time.time()
            dramatiq_message = actor.send(message.to_dict())
            sent[message.trace_id] = (at, dramatiq_message.message_timestamp)
            deadline = time.monotonic() + 120
            while (
                conn.execute(
                    "SELECT 1 FROM processing_stats WHERE trace_id = ?", (message.trace_id,)
                ).fetchone()
                is None
            ):
                if time.monotonic() > deadline:
                    raise AssertionError(f"no run for {path}:\n{workers.logs()[-3000:]}")
                time.sleep(0.005)
            recorded[message.trace_id] = time.time()
    finally:
        conn.close()
        store.close()
        broker.close()
    time.sleep(1.0)
    runs = library_runs(server.db, library)
    check_runs(runs, len(paths), f"latency, {count} worker(s)")
    by_trace = {run.trace_id: run for run in runs}
    assert set(by_trace) == set(sent), "the runs are not the messages' traces"
    result = Latency(count, gap, [], [], [], [], before_load)
    for trace_id, (at, timestamp_ms) in sent.items():
        run = by_trace[trace_id]
        result.start.append(run.start - at)
        result.start_dramatiq.append(run.start - timestamp_ms / 1000)
        result.recorded.append(recorded[trace_id] - at)
        result.durations.append(run.duration)
    shutil.rmtree(library)
    return result


def check_cost(server: Server) -> str:
    """What the worker's question to the server before each file costs (an empty OTLP
    request with its token), median of 20."""
    endpoint = server.url + "/v1/traces"
    times = []
    for _ in range(20):
        began = time.perf_counter()
        problem = server_problem(endpoint, WORKER_TOKEN)
        times.append(time.perf_counter() - began)
        assert problem is None, problem
    return f"median {ms(statistics.median(times)).strip()}"


def _never_run_here(message: dict) -> None:
    raise RuntimeError("process_file runs in `vpo worker`")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return f"{value * 1000:7.1f} ms"


def print_throughput(result: Throughput) -> None:
    durations = [run.duration for run in result.runs]
    outside = result.wall - sum(durations) / result.jobs
    cpu = ", ".join(
        f"{name} {seconds / result.files * 1000:.1f}" for name, seconds in result.cpu.items()
    )
    print(
        f"  {result.label:28} {result.files} files in {result.wall:6.2f} s = "
        f"{result.rate:5.2f} files/s   (load {result.load:.2f} at start)"
    )
    print(
        f"      run median {ms(statistics.median(durations))}; wall outside the runs "
        f"{ms(outside / result.files)} per file; CPU ms per file: {cpu} "
        f"(total {sum(result.cpu.values()) / result.files * 1000:.1f})"
    )
    if result.jobs == 1:  # one process: the time from one run's end to the next's start
        ordered = sorted(result.runs, key=lambda run: run.start)
        gaps = [b.start - (a.start + a.duration) for a, b in pairwise(ordered)]
        print(
            f"      from a run's end to the next run's start: p50 {ms(percentile(gaps, 0.5))}, "
            f"p90 {ms(percentile(gaps, 0.9))}, mean {ms(statistics.mean(gaps))}"
        )
    for note in result.notes:
        print(f"      {note}")


def print_latency(result: Latency) -> None:
    print(
        f"  {result.workers} idle worker(s), {len(result.start)} messages, one at a time "
        f"({result.gap:.1f} s after the previous run was recorded; load {result.load:.2f}):"
    )
    for label, values in (
        ("send -> run start (sender's clock)", result.start),
        ("send -> run start (Dramatiq's ms timestamp)", result.start_dramatiq),
        ("send -> run recorded on the server", result.recorded),
        ("the run itself (duration_seconds)", result.durations),
    ):
        print(
            f"      {label:44} p50 {ms(percentile(values, 0.5))}   p99 "
            f"{ms(percentile(values, 0.99))}   min {ms(min(values))}   max {ms(max(values))}"
        )


@contextmanager
def server_and_queue(work: Path) -> Iterator[tuple[str, Server]]:
    with redis_server(work) as url:
        server = serve(work / "server.db", work)
        try:
            yield url, server
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every mode")
    parser.add_argument("--latency", type=int, default=50, help="messages of the latency phase")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two of them")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start"
    )
    rounds: list[list[Throughput]] = []
    latencies: list[Latency] = []
    with tempfile.TemporaryDirectory(prefix="vpo-bench-queue-", dir=ROOT) as folder:
        work = Path(folder)
        policy = work / "tags.yaml"
        policy.write_text(POLICY)
        pristine = work / "pristine"
        make_samples(pristine, args.files)
        with server_and_queue(work) as (url, server):
            print(f"redis {url}; server {server.url}; {args.files} files, policy {POLICY_NAME}")
            print(f"  the worker's check before each file (`server_problem`): {check_cost(server)}")
            for number in range(1, args.repeat + 1):
                tag = str(number)
                print(f"round {number}:")
                modes = []
                for jobs in (1, 2):
                    result = process_mode(work, pristine, policy, jobs, tag)
                    print_throughput(result)
                    modes.append(result)
                    workers = start_workers(work, url, server, jobs, tag)
                    try:
                        result = queue_mode(work, pristine, policy, url, server, workers, tag)
                        print_throughput(result)
                        modes.append(result)
                        latency = latency_mode(
                            work, pristine, url, server, workers, args.latency, args.gap, tag
                        )
                        print_latency(latency)
                        latencies.append(latency)
                    finally:
                        codes = workers.stop()
                    logs = workers.logs()
                    trouble = [
                        line
                        for line in logs.splitlines()
                        if line.startswith(("refused", "waiting", "skipped", "spans", "WARNING"))
                        or " failed" in line
                    ]
                    if codes != [0] * jobs or trouble:
                        raise AssertionError(f"workers exited {codes}; {trouble[:5]}")
                    if dead_letters(url) or queue_length(url):
                        raise AssertionError("messages dead-lettered or left in the queue")
                rounds.append(modes)
    summary(rounds, latencies)


def summary(rounds: list[list[Throughput]], latencies: list[Latency]) -> None:
    print("\nsummary (median over rounds; min-max in brackets):")
    print("| mode | files/s | queue ÷ process |")
    print("|---|---|---|")
    for index in range(len(rounds[0])):
        rates = [modes[index].rate for modes in rounds]
        ratio = ""
        if index % 2 == 1:
            ratios = [modes[index].rate / modes[index - 1].rate for modes in rounds]
            ratio = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(
            f"| {rounds[0][index].label} | {statistics.median(rates):.2f} "
            f"[{min(rates):.2f}-{max(rates):.2f}] | {ratio} |"
        )
    for count in (1, 2):
        mine = [latency for latency in latencies if latency.workers == count]
        starts = [value for latency in mine for value in latency.start]
        print(
            f"enqueue -> start, {count} idle worker(s), all rounds ({len(starts)} messages): "
            f"p50 {ms(percentile(starts, 0.5)).strip()}, p99 {ms(percentile(starts, 0.99)).strip()}"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
