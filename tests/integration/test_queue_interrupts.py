"""Workers that die and a server that goes away (issue #14, docs/workers.md), with a real
redis-server, a real `vpo serve` and real `vpo worker` processes running ffmpeg:

- a worker SIGKILLed mid-transcode: the other worker finishes its file (Dramatiq puts
  the message of a worker that stopped polling back in the queue); the server records
  the killed attempt once, as interrupted, when its heartbeats stop, and the retry once,
  as a success; the original was never half-written and no temporary file is left;
- the server stopped for 30 s while workers finish runs: once it is back, every run the
  workers logged arrives, none twice.
"""

import os
import re
import signal
import time
from pathlib import Path

from tests.helpers import SLOW_TRANSCODE, query, tool_running, wait_for
from tests.queue_support import (
    dead_letters,
    enqueue,
    free_port,
    kill,
    messages,
    queue_empty,
    runs,
    serve,
    spooled,
    start_worker,
    stop,
    worker_log,
)
from vpo.media.probe import probe

WORKER_TIMEOUT = "6"  # the server's --worker-timeout (seconds)
REQUEUE_AFTER = "3"  # the workers' --requeue-after (seconds)
RUN_LINE = re.compile(r"^run ([0-9a-f-]{36}) (succeeded|failed)", re.MULTILINE)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_a_worker_killed_mid_transcode_leaves_its_file_to_the_other_and_one_interrupted_run(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    movie = library / "movie-h264-multilang.mkv"
    for other in library.iterdir():
        if other != movie:
            other.unlink()
    original = movie.read_bytes()
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    server_db = tmp_path / "server.db"
    enqueue(server_db, slow, redis_url, movie)
    [message] = messages(redis_url)
    served = serve(server_db, tmp_path, options=("--worker-timeout", WORKER_TIMEOUT))
    folders = [tmp_path / "one", tmp_path / "two"]
    workers = {}
    try:
        for folder in folders:
            workers[folder] = start_worker(
                redis_url, served.url, folder, "--requeue-after", REQUEUE_AFTER
            )
        ffmpeg = wait_for(lambda: tool_running("ffmpeg", str(library)), 60, "no transcode")
        doomed = _parent(ffmpeg[0])
        [victim] = [folder for folder, w in workers.items() if w.pid == doomed]
        time.sleep(1.0)  # well into the transcode: its temporary output is being written
        assert len(set(library.iterdir())) == 2
        os.kill(doomed, signal.SIGKILL)
        workers[victim].wait(timeout=30)
        [survivor] = [folder for folder in folders if folder != victim]
        wait_for(
            lambda: runs(server_db) == 2 and queue_empty(redis_url),
            180,
            "the file was not finished by the other worker, or the killed run not recorded",
        )
        time.sleep(2.0)  # nothing more may arrive
        assert stop(workers[survivor]) == [0]
    finally:
        kill(*workers.values())
        assert served.stop() == 0
    log = worker_log(survivor)
    rows = query(server_db, "SELECT * FROM processing_stats ORDER BY success")
    interrupted, success = rows
    assert interrupted["success"] == 0, dict(interrupted)
    assert interrupted["error_message"].startswith(
        f"interrupted: worker {os.uname().nodename} (pid {doomed}) fell silent"
    ), interrupted["error_message"]
    assert "after 0 of 1 phase(s)" in interrupted["error_message"]
    # The killed attempt changed nothing, as recorded; the retry did the work.
    assert interrupted["size_before"] == interrupted["size_after"] == len(original)
    assert success["success"] == 1, dict(success)
    assert success["size_before"] == len(original)
    assert success["size_after"] == movie.stat().st_size != len(original)
    assert interrupted["id"] != success["id"]
    assert interrupted["trace_id"] == success["trace_id"] == message.trace_id
    assert f"run {success['id']} succeeded" in log
    assert [path.name for path in library.iterdir()] == [movie.name]  # no temporary left
    assert probe(movie).video_codec == "hevc"  # whole: the retry's output, not a half
    assert dead_letters(redis_url) == 0 and not messages(redis_url)


def test_the_server_away_for_30_seconds_gets_every_run_once_when_it_is_back(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    server_db = tmp_path / "server.db"
    files = sorted(path.name for path in library.iterdir())
    enqueue(server_db, slow, redis_url, library)
    port = str(free_port())
    served = serve(server_db, tmp_path, port)
    folders = [tmp_path / "one", tmp_path / "two"]
    workers = []
    try:
        for folder in folders:
            workers.append(start_worker(redis_url, served.url, folder, "--jobs", "2"))
        wait_for(lambda: tool_running("ffmpeg", str(library)), 60, "no transcode started")
        assert served.stop() == 0  # mid-run: the running transcodes go on
        down_at = time.monotonic()
        recorded_before = runs(server_db)  # the runs that were over before it stopped
        wait_for(
            lambda: any(spooled(folder) for folder in folders),
            60,
            "no run ended while the server was away",
        )
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        left_in_spool = sum(len(spooled(folder)) for folder in folders)
        recorded_while_away = runs(server_db) - recorded_before
        served = serve(server_db, tmp_path, port)
        wait_for(
            lambda: runs(server_db) >= len(files) and queue_empty(redis_url),
            240,
            "not every run arrived",
        )
        time.sleep(3.0)  # nothing more may arrive
        assert stop(*workers) == [0, 0]
    finally:
        kill(*workers)
        served.stop()
    assert recorded_while_away == 0 and left_in_spool >= 1
    logs = "\n".join((folder / "worker.log").read_text() for folder in folders)
    assert "Traceback" not in logs and "ERROR" not in logs, logs
    logged = RUN_LINE.findall(logs)
    rows = query(
        server_db,
        "SELECT s.id, s.success, s.error_message, f.path FROM processing_stats s "
        "JOIN files f ON f.id = s.file_id",
    )
    assert sorted(Path(row["path"]).name for row in rows) == files, logs  # each once
    assert sorted(row["id"] for row in rows) == sorted(stats_id for stats_id, _ in logged)
    assert not [row for row in rows if "interrupted" in (row["error_message"] or "")], logs
    assert all(not spooled(folder) for folder in folders)
    assert dead_letters(redis_url) == 0
