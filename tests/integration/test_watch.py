"""`vpo serve --watch`: a real server keeping a folder conforming with the real tools —
a copied sample is processed within two intervals and shows on /metrics and in the API;
a growing file waits; SIGTERM mid-transcode interrupts the run truly and exits 0.
The passes' own rules are in test_watch_passes.py."""

import hashlib
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import CLEANUP, SLOW_TRANSCODE, dies_soon, query, tool_running, wait_for
from tests.integration.test_server_api import Server, start_server
from vpo.samples import SampleFile

MOVIE = "movie-h264-multilang.mkv"


def _sample(samples: list[SampleFile], name: str = MOVIE) -> Path:
    return next(s.path for s in samples if s.path.name == name)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs_of(db: Path, path: Path) -> list[Any]:
    return query(
        db,
        "SELECT s.id, s.success, s.error_message, s.processed_at FROM processing_stats s "
        "JOIN files f ON f.id = s.file_id WHERE f.path = ? ORDER BY s.processed_at",
        (str(path),),
    )


def _processed_total(server: Server) -> float:
    status, _data, text = server.get("/metrics")
    assert status == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "vpo_files_processed"
        for sample in family.samples
        if sample.name == "vpo_files_processed_total"
    )


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "watched"
    folder.mkdir()
    return folder


@pytest.fixture
def serve_watch(tmp_path: Path, watched: Path) -> Iterator[Callable[..., Server]]:
    """Starts `vpo serve --watch` on `watched`; every server is stopped at the end."""
    started: list[Server] = []

    def start(policy: Path = CLEANUP, interval: float = 1.0) -> Server:
        options = ("--watch", str(watched), "--policy", str(policy), "--interval", str(interval))
        server = start_server(tmp_path / "vpo.db", tmp_path, options=options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_a_copied_sample_is_processed_within_two_intervals(
    serve_watch: Callable[..., Server], watched: Path, sample_files: list[SampleFile]
) -> None:
    interval = 2.0
    server = serve_watch(interval=interval)
    assert _processed_total(server) == 0
    copied = watched / MOVIE
    shutil.copyfile(_sample(sample_files), copied)  # a new mtime: waits one pass
    copied_at = time.time()

    recent = wait_for(
        lambda: server.get("/api/stats/recent")[1]["items"], 4 * interval + 30, "a recorded run"
    )
    (run,) = recent
    assert run["file_path"] == str(copied) and run["success"] is True
    assert run["policy_name"] == "language-cleanup"
    started = _epoch(run["processed_at"])
    assert copied_at <= started <= copied_at + 2 * interval + 1.0  # two passes, at most
    assert _processed_total(server) == 1
    assert run["stats_id"] in server.log()
    (settled,) = query(server.db, "SELECT path, success, stats_id FROM watch_files")
    assert tuple(settled) == (str(copied), 1, run["stats_id"])


def test_a_growing_file_waits_until_it_holds_still(
    serve_watch: Callable[..., Server], watched: Path, sample_files: list[SampleFile]
) -> None:
    interval = 1.0
    server = serve_watch(interval=interval)
    data = _sample(sample_files).read_bytes()
    growing = watched / "download.mkv"
    with growing.open("wb") as out:
        position = 0
        chunk = max(1, len(data) // 60)
        appending_until = time.monotonic() + 4 * interval  # four passes see it grow
        while time.monotonic() < appending_until and position < len(data) - chunk:
            out.write(data[position : position + chunk])
            out.flush()
            position += chunk
            time.sleep(0.05)
            assert query(server.db, "SELECT count(*) FROM processing_stats")[0][0] == 0
        out.write(data[position:])
    finished_at = time.time()
    assert "waiting: " + str(growing) in server.log()

    (run,) = wait_for(lambda: _runs_of(server.db, growing), 30, "the run once it held still")
    assert run["success"] == 1, run["error_message"]
    assert _epoch(run["processed_at"]) >= finished_at


def test_sigterm_mid_transcode_interrupts_the_run_and_exits_0(
    serve_watch: Callable[..., Server],
    watched: Path,
    tmp_path: Path,
    sample_files: list[SampleFile],
) -> None:
    movie = watched / MOVIE
    shutil.copy2(_sample(sample_files), movie)  # an old mtime: run on the first pass
    digest, size = _sha(movie), movie.stat().st_size
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    server = serve_watch(policy=slow, interval=0.5)
    (ffmpeg,) = wait_for(lambda: tool_running("ffmpeg", str(watched)), 60, "ffmpeg started")

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    log = server.log()
    assert dies_soon(ffmpeg)
    assert _sha(movie) == digest
    assert [p.name for p in watched.iterdir() if ".vpo-" in p.name] == []
    (run,) = _runs_of(server.db, movie)
    assert run["success"] == 0 and run["error_message"] == "interrupted by SIGTERM"
    (row,) = query(server.db, "SELECT size_before, size_after FROM processing_stats")
    assert tuple(row) == (size, size)
    assert query(server.db, "SELECT count(*) FROM watch_files")[0][0] == 0  # run again later
    line = next(line for line in log.splitlines() if "run failed: " in line)
    assert f"stats_id={run['id']}" in line
    assert re.search(r"trace_id=[0-9a-f]{32}\b", line)
    assert "Traceback" not in log and log.rstrip().endswith("Stopped.")


def _run_count(db: Path) -> int:
    return int(query(db, "SELECT count(*) FROM processing_stats")[0][0])


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
