"""`vpo serve --watch LIB --policy P --queue URL` (issue #14): the watch passes enqueue the
library for `vpo worker`s instead of running it; the workers' runs come back over OTLP to
the same server. A real redis-server, a real server, two real workers, the real tools:
every file is run exactly once, the rows equal what the test measures itself, the
server's library shows the files as they are now, and the per-worker statistics add up
to the summary. The settle rules one pass at a time are in test_watch_passes.py."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import CLEANUP, invoke, query, run_vpo, wait_for
from tests.integration.test_server_api import Server, start_server
from tests.queue_support import WORKER_TOKEN, kill, redis_server, start_worker, stop, until
from tests.queue_support import messages as waiting
from vpo.media.hashing import partial_hash
from vpo.samples import SampleFile

INTERVAL = 1.0
TOKEN = "VPO_WORKER_TOKEN"  # noqa: S105 - the variable's name
COPIES = 4  # of each sample: 20 files


def _library(tmp_path: Path, samples: list[SampleFile]) -> Path:
    library = tmp_path / "library"
    (library / "season").mkdir(parents=True)
    for copy in range(COPIES):
        for sample in samples:
            folder = library / "season" if copy % 2 else library
            copied = folder / f"{copy}-{sample.path.name}"
            shutil.copy2(sample.path, copied)
            # Untouched for an hour: due at the first pass, however fresh the samples are
            # (they are made when the session starts, maybe a second ago).
            hour_ago = time.time() - 3600
            os.utime(copied, (hour_ago, hour_ago))
    return library


def _serve_queue(server_db: Path, tmp_path: Path, library: Path, url: str) -> Server:
    options = (
        "--watch", str(library), "--policy", str(CLEANUP), "--queue", url,
        "--interval", str(INTERVAL),
    )  # fmt: skip
    return start_server(
        server_db, tmp_path, options=options, env={"VPO_WORKER_TOKEN": WORKER_TOKEN}
    )


def _settled_by_runs(server_db: Path) -> int:
    return int(
        query(
            server_db,
            "SELECT count(*) FROM watch_files WHERE stats_id NOT LIKE 'queued:%' AND success = 1",
        )[0][0]
    )


def _stream_counts(path: Path) -> dict[str, int]:
    """Streams per type, as ffprobe itself counts them (not VPO's probe)."""
    shown = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    counts: dict[str, int] = {}
    for stream in json.loads(shown.stdout)["streams"]:
        counts[stream["codec_type"]] = counts.get(stream["codec_type"], 0) + 1
    return counts


def test_a_watched_library_is_run_once_by_two_workers_and_recorded_on_the_server(
    tmp_path: Path, redis_url: str, sample_files: list[SampleFile]
) -> None:
    library = _library(tmp_path, sample_files)
    files = sorted(p for p in library.rglob("*") if p.is_file())
    assert len(files) == COPIES * len(sample_files) == 20
    sizes_before = {str(p): p.stat().st_size for p in files}
    server_db = tmp_path / "server.db"
    served = _serve_queue(server_db, tmp_path, library, redis_url)
    folders = [tmp_path / "one", tmp_path / "two"]
    workers: list[subprocess.Popen] = []
    try:
        for folder in folders:
            workers.append(start_worker(redis_url, served.url, folder))
        until(lambda: _settled_by_runs(server_db) >= len(files), *workers)
        time.sleep(3 * INTERVAL)  # a few passes more: nothing is enqueued again
        assert stop(*workers) == [0, 0]
    finally:
        kill(*workers)
        assert served.stop() == 0
    log = served.log()
    logs = [(folder / "worker.log").read_text() for folder in folders]
    assert "Traceback" not in log, log
    assert all("Traceback" not in text and "refused" not in text for text in logs), logs

    rows = query(
        server_db,
        "SELECT s.id, s.success, s.worker, s.trace_id, s.size_before, s.size_after, "
        "s.audio_tracks_after, s.subtitle_tracks_after, f.path, f.size_bytes, f.content_hash "
        "FROM processing_stats s JOIN files f ON f.id = s.file_id",
    )
    by_path = {row["path"]: row for row in rows}
    assert len(rows) == len(by_path) == len(files), logs  # exactly once each
    assert sorted(by_path) == sorted(str(p) for p in files)
    for path in files:
        row = by_path[str(path)]
        assert row["success"] == 1, (path, logs)
        assert row["worker"] == socket.gethostname()
        assert row["size_before"] == sizes_before[str(path)]
        assert row["size_after"] == path.stat().st_size
        # The server's library row shows the file as the worker left it.
        assert row["size_bytes"] == path.stat().st_size
        assert row["content_hash"] == partial_hash(path)
        streams = _stream_counts(path)
        assert row["audio_tracks_after"] == streams.get("audio", 0), path
        assert row["subtitle_tracks_after"] == streams.get("subtitle", 0), path
        assert f"enqueued: {path} (trace {row['trace_id']})" in log
    assert any(row["size_after"] < row["size_before"] for row in rows)  # work was done

    # Each run is in the log of the worker that ran it, and only there.
    ran = [set(re.findall(r"run (\S+) succeeded: ", text)) for text in logs]
    assert ran[0] | ran[1] == {row["id"] for row in rows} and not ran[0] & ran[1], logs
    assert ran[0] and ran[1], logs  # both took a share
    settled = query(server_db, "SELECT path, success, stats_id FROM watch_files")
    assert {(r["path"], r["success"], r["stats_id"]) for r in settled} == {
        (r["path"], 1, r["id"]) for r in rows
    }
    assert log.count("enqueued: ") == len(files), log
    assert re.search(r"watch pass \d+: 20 file\(s\), 20 enqueued, ", log), log
    assert not waiting(redis_url)

    summary = json.loads(invoke("--db", server_db, "stats", "summary", "--format", "json").stdout)
    per_worker = json.loads(
        invoke("--db", server_db, "stats", "workers", "--format", "json").stdout
    )["workers"]
    assert summary["total_files_processed"] == len(files)
    assert sum(w["runs"] for w in per_worker) == summary["total_files_processed"]
    assert sum(w["total_size_saved"] for w in per_worker) == summary["total_size_saved"]
    assert summary["total_size_saved"] == sum(
        sizes_before[str(p)] - p.stat().st_size for p in files
    )


def test_serve_queue_refuses_what_cannot_work(
    tmp_path: Path, redis_url: str, sample_files: list[SampleFile]
) -> None:
    library = _library(tmp_path, sample_files[:1])
    db = tmp_path / "vpo.db"
    watch = ("--watch", library, "--policy", CLEANUP)
    no_watch = invoke("--db", db, "serve", "--queue", redis_url)
    assert no_watch.exit_code == 2 and "--queue needs --watch" in no_watch.stderr
    jobs = invoke("--db", db, "serve", *watch, "--queue", redis_url, "--jobs", "2")
    assert jobs.exit_code == 2 and "--jobs does not apply with --queue" in jobs.stderr
    no_token = run_vpo("--db", db, "serve", *watch, "--queue", redis_url, env={TOKEN: ""})
    assert no_token.returncode == 1, no_token.stderr
    assert no_token.stderr.strip() == (
        "Error: --queue needs VPO_WORKER_TOKEN set: the workers record their runs here with it."
    )
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        away = f"redis://127.0.0.1:{unused.getsockname()[1]}/0"
        unreachable = run_vpo(
            "--db", db, "serve", *watch, "--queue", away, env={TOKEN: WORKER_TOKEN}
        )
    assert unreachable.returncode == 1, unreachable.stderr
    assert unreachable.stderr.startswith("Error: Cannot reach the queue's Redis"), unreachable
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr


def test_a_server_whose_redis_goes_away_enqueues_when_it_is_back(
    tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    """Redis stopping mid-run costs one line per pass; the next pass after it is back
    enqueues what was left (nothing was settled meanwhile)."""
    from tests.queue_support import free_port

    port = free_port()
    library = _library(tmp_path, sample_files[:1])
    served = None
    try:
        with redis_server(tmp_path, port=port) as url:
            served = _serve_queue(tmp_path / "vpo.db", tmp_path, library, url)
            wait_for(lambda: len(waiting(url)) == COPIES, 60, "the first enqueue")
        new = library / "new.mkv"
        shutil.copy2(sample_files[0].path, new)
        wait_for(lambda: "the queue's Redis does not answer" in served.log(), 60, "its line")
        assert query(tmp_path / "vpo.db", "SELECT count(*) FROM watch_files")[0][0] == COPIES
        with redis_server(tmp_path, port=port) as url:  # empty: the old messages are lost
            wait_for(
                lambda: [m.relative_path for m in waiting(url)] == ["new.mkv"],
                60,
                "new.mkv enqueued",
            )
            assert served.stop() == 0
    finally:
        if served is not None:
            served.stop()
    log = served.log()
    assert "Traceback" not in log, log
    assert log.count("the queue's Redis does not answer") <= 3 / INTERVAL + 2, log  # a line a pass
