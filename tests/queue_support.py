"""What the queue tests share (docs/cli.md, `vpo worker`): a throwaway redis-server, a
`vpo serve` taking the test token, workers as subprocesses, and looks into Redis."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.helpers import invoke, query
from tests.integration.test_server_api import Server, start_server
from vpo.queue.broker import QUEUE_NAME
from vpo.queue.message import FileMessage

WORKER_TOKEN = "queue-worker-token-0123456789"  # noqa: S105 - a test token
TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(
    tmp_path: Path,
    also_bind: tuple[str, ...] = (),
    password: str | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """A throwaway redis-server on loopback `port` (default: a free one) and the addresses
    `also_bind` (which Redis refuses to serve without a `password`), persisting nothing:
    one started again on the same port is empty."""
    if shutil.which("redis-server") is None:
        pytest.fail("Debian's redis-server is needed (scripts/setup.sh installs it)")
    folder = tmp_path / "redis"
    folder.mkdir(exist_ok=True)
    port = free_port() if port is None else port
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            *also_bind,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            *(("--requirepass", password) if password else ()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=20)


def messages(url: str) -> list[FileMessage]:
    """The messages waiting in the queue, as the worker will read them."""
    client = redis.Redis.from_url(url)
    try:
        raw = client.hgetall(f"dramatiq:{QUEUE_NAME}.msgs")
    finally:
        client.close()
    return [FileMessage.from_dict(json.loads(value)["args"][0]) for value in raw.values()]


def queue_empty(url: str) -> bool:
    """No message waiting in the queue, nor waiting out a retry's backoff."""
    client = redis.Redis.from_url(url)
    try:
        waiting = client.hlen(f"dramatiq:{QUEUE_NAME}.msgs")
        delayed = client.hlen(f"dramatiq:{QUEUE_NAME}.DQ.msgs")
    finally:
        client.close()
    return waiting == 0 and delayed == 0


def dead_letters(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.zcard(f"dramatiq:{QUEUE_NAME}.XQ"))
    finally:
        client.close()


def start_worker(
    url: str, server_url: str, tmp_path: Path, *options: str, prefix: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`vpo worker` logging to tmp_path/worker.log, its scratch database in tmp_path (made
    if need be); the command after `prefix` (e.g. `ip netns exec NAME`)."""
    tmp_path.mkdir(exist_ok=True)
    log = (tmp_path / "worker.log").open("w")
    return subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "vpo",
            "worker",
            "--queue",
            url,
            "--server",
            server_url,
            "--db",
            str(tmp_path / "worker.db"),
            *options,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "VPO_WORKER_TOKEN": WORKER_TOKEN, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )


def worker_log(folder: Path) -> str:
    """The log of the worker that ran in `folder`, checked to hold no traceback or error."""
    log = (folder / "worker.log").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log
    return log


def serve(
    server_db: Path, tmp_path: Path, port: str | None = None, options: tuple[str, ...] = ()
) -> Server:
    """`vpo serve` taking this file's worker token (on `port`, so it can come back there),
    with more command-line `options`."""
    options = (*options, "--port", port) if port is not None else options
    return start_server(
        server_db, tmp_path, options=options, env={"VPO_WORKER_TOKEN": WORKER_TOKEN}
    )


def runs(server_db: Path) -> int:
    return int(query(server_db, "SELECT COUNT(*) AS n FROM processing_stats")[0]["n"])


def until(done: Callable[[], bool], *workers: subprocess.Popen) -> None:
    """Until `done()`, a worker exits or TIMEOUT passes; then a second for stragglers (the
    assertions after say what was wrong)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and all(w.poll() is None for w in workers):
        if done():
            break
        time.sleep(0.3)
    time.sleep(1.0)  # nothing more may arrive


def stop(*workers: subprocess.Popen) -> list[int]:
    """SIGTERM to each worker; their exit codes."""
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    return [worker.wait(timeout=60) for worker in workers]


def kill(*workers: subprocess.Popen) -> None:
    """What a failed test leaves running."""
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def enqueue(server_db: Path, policy: Path, url: str, *paths: Path) -> None:
    result = invoke("--db", server_db, "process", "--policy", policy, "--queue", url, *paths)
    assert result.exit_code == 0, result.stderr


def spooled(tmp_path: Path) -> list[Path]:
    """The batches of spans the worker (`--db tmp_path/worker.db`) has not yet sent."""
    return sorted((tmp_path / "worker.db.spool").glob("*.pb"))
