"""Workers across a real network boundary (issue #14, docs/workers.md): the server and
Redis stay in this network namespace; two `vpo worker`s run in another one, joined to
this one by a veth pair, each in a UTS namespace with a host name of its own. Nothing
the workers do reaches the server but over that link: their messages from Redis and their
spans to `POST /v1/traces`. Every file is run once, each run is recorded under the
worker that ran it, and the per-worker statistics add up to the summary.

Network namespaces need root, as CI has (scripts/setup.sh installs iproute2)."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import CLEANUP, invoke, query
from tests.queue_support import (
    enqueue,
    kill,
    redis_server,
    runs,
    serve,
    start_worker,
    stop,
    until,
)

WORKERS = ("worker-a", "worker-b")
REDIS_PASSWORD = "queue-test-password"  # noqa: S105 - Redis serves other hosts only with one


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def workers_namespace() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: (its name, this side's
    address). Removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    tag = f"{os.getpid() % 100_000}"
    name, here, there = f"vpo-test-{tag}", f"vh{tag}", f"vw{tag}"
    subnet = f"10.213.{os.getpid() % 250}"  # a /30 of our own: .1 here, .2 there
    host_ip, worker_ip = f"{subnet}.1", f"{subnet}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{worker_ip}/30", "dev", there)
        _ip("netns", "exec", name, "ip", "link", "set", there, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, host_ip
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _reaches(namespace: str, host: str, port: int) -> bool:
    """Whether a process in `namespace` can open a TCP connection to host:port."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=2).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    command = ["ip", "netns", "exec", namespace, sys.executable, "-c", probe]
    return subprocess.run(command, capture_output=True).returncode == 0


def test_workers_in_another_network_namespace_record_each_run_under_their_host_name(
    library: Path, tmp_path: Path
) -> None:
    files = sorted(path.name for path in library.iterdir())
    server_db = tmp_path / "server.db"
    with (
        workers_namespace() as (namespace, host_ip),
        redis_server(tmp_path, also_bind=(host_ip,), password=REDIS_PASSWORD) as local_url,
    ):
        redis_port = int(local_url.rsplit(":", 1)[1].split("/")[0])
        # The boundary is real: loopback over there is not ours.
        assert not _reaches(namespace, "127.0.0.1", redis_port)
        assert _reaches(namespace, host_ip, redis_port)
        enqueue(server_db, CLEANUP, local_url, library)
        served = serve(server_db, tmp_path, options=("--host", host_ip))
        assert served.url.startswith(f"http://{host_ip}:")
        workers = []
        try:
            for name in WORKERS:
                folder = tmp_path / name
                prefix = (
                    "ip", "netns", "exec", namespace, "unshare", "--uts",
                    "sh", "-c", 'hostname "$0" && exec "$@"', name,
                )  # fmt: skip
                url = f"redis://:{REDIS_PASSWORD}@{host_ip}:{redis_port}/0"
                workers.append(start_worker(url, served.url, folder, prefix=prefix))
            until(lambda: runs(server_db) >= len(files), *workers)
            assert stop(*workers) == [0, 0]
        finally:
            kill(*workers)
            assert served.stop() == 0
    logs = {name: (tmp_path / name / "worker.log").read_text() for name in WORKERS}
    for log in logs.values():
        assert "Traceback" not in log and "ERROR" not in log, log
    rows = query(
        server_db,
        "SELECT s.id, s.success, s.worker, s.size_before - s.size_after AS saved, f.path "
        "FROM processing_stats s JOIN files f ON f.id = s.file_id",
    )
    assert sorted(Path(row["path"]).name for row in rows) == files, logs  # each once
    assert all(row["success"] == 1 for row in rows), logs
    assert socket.gethostname() not in {row["worker"] for row in rows}
    for name, log in logs.items():
        mine = [row for row in rows if row["worker"] == name]
        assert len(mine) == log.count(" succeeded: "), (name, log)
        for row in mine:
            assert f"run {row['id']} succeeded" in log
    assert {row["worker"] for row in rows} <= set(WORKERS)

    per_worker = json.loads(_stats(server_db, "workers"))["workers"]
    summary = json.loads(_stats(server_db, "summary"))
    assert sum(w["runs"] for w in per_worker) == summary["total_files_processed"] == len(files)
    assert sum(w["total_size_saved"] for w in per_worker) == summary["total_size_saved"]
    assert summary["total_size_saved"] == sum(row["saved"] for row in rows)
    for entry in per_worker:
        mine = [row for row in rows if row["worker"] == entry["worker"]]
        assert entry["runs"] == entry["successes"] == len(mine)
        assert entry["total_size_saved"] == sum(row["saved"] for row in mine)


def _stats(db: Path, *args: str) -> str:
    result = invoke("--db", db, "stats", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return result.stdout
