"""A worker killed at the announcement of an in-place edit (issue #14, docs/workers.md),
with a real redis-server, `vpo serve`, `vpo worker` processes and mkvpropedit.

The worker's requests to the server pass through a proxy that SIGKILLs the worker at the
first heartbeat carrying a phase's after values (the edit done and verified, its journal
not yet dropped) — once after the server stored that heartbeat, once before. Either way
the next worker must leave the file as the server's record says: the edit kept when the
record counts it, undone when it does not; and the redelivered message then runs on that
file, so the two runs' changes add up to the policy's, once.
"""

import gzip
import http.client
import os
import signal
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import query, wait_for
from tests.queue_support import (
    dead_letters,
    enqueue,
    kill,
    messages,
    queue_empty,
    runs,
    serve,
    start_worker,
    stop,
    worker_log,
)
from vpo.media import edit_journal
from vpo.media.hashing import partial_hash
from vpo.telemetry import attributes as attr

WORKER_TIMEOUT = "6"  # the server's --worker-timeout (seconds)
REQUEUE_AFTER = "3"  # the workers' --requeue-after (seconds)
FLAGS = """\
schema_version: 1
name: flags
config:
  audio_languages: [jpn, eng]
phases:
  - name: flags
    default_flags:
      audio: preferred
      subtitle: none
"""
POLICY_CHANGES = 2  # what FLAGS changes on movie-h264-multilang.mkv


def _announces_an_edit(body: bytes) -> bool:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return any(
        span.name == attr.RUN_HEARTBEAT and any(kv.key == attr.HASH_AFTER for kv in span.attributes)
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    )


class KillingProxy:
    """Passes a worker's requests on to the server, and SIGKILLs `victim` at the first
    heartbeat that announces a phase's after values: after the server answered it
    (`stored`) or before it reached the server. The worker never gets that answer."""

    def __init__(self, server_url: str, stored: bool) -> None:
        self.target = urllib.parse.urlsplit(server_url).netloc
        self.stored = stored
        self.victim: int | None = None
        self.fired = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.relay(self, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                plain = gzip.decompress(body) if self.headers["Content-Encoding"] else body
                armed = proxy.victim is not None and not proxy.fired.is_set()
                if armed and plain and _announces_an_edit(plain):
                    proxy.fired.set()
                    if proxy.stored:
                        proxy.forward(self, body)
                    os.kill(proxy.victim, signal.SIGKILL)  # type: ignore[arg-type]
                    self.close_connection = True
                    return
                proxy.relay(self, body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(self.target, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        connection.request(handler.command, handler.path, body or None, headers)
        answer = connection.getresponse()
        answer.body = answer.read()  # type: ignore[attr-defined]
        connection.close()
        assert 200 <= answer.status < 300 or handler.command == "GET", answer.status
        return answer

    def relay(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        answer = self.forward(handler, body)
        handler.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(answer.body)))  # type: ignore[attr-defined]
        handler.end_headers()
        handler.wfile.write(answer.body)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=[True, False], ids=["announced", "not-announced"])
def stored(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def movie(library: Path) -> Iterator[Path]:
    movie = library / "movie-h264-multilang.mkv"
    for other in library.iterdir():
        if other != movie:
            other.unlink()
    yield movie


def test_a_worker_killed_at_its_edits_announcement_leaves_file_and_record_agreeing(
    movie: Path, tmp_path: Path, redis_url: str, stored: bool
) -> None:
    original = movie.read_bytes()
    original_hash = partial_hash(movie)
    policy = tmp_path / "flags.yaml"
    policy.write_text(FLAGS)
    server_db = tmp_path / "server.db"
    enqueue(server_db, policy, redis_url, movie)
    served = serve(server_db, tmp_path, options=("--worker-timeout", WORKER_TIMEOUT))
    proxy = KillingProxy(served.url, stored)
    workers = []
    try:
        doomed = start_worker(
            redis_url, proxy.url, tmp_path / "one", "--requeue-after", REQUEUE_AFTER
        )
        workers.append(doomed)
        proxy.victim = doomed.pid
        assert doomed.wait(timeout=120) == -signal.SIGKILL, worker_log(tmp_path / "one")
        assert proxy.fired.is_set()
        # What the kill left: the edit done and verified, its journal held by nobody.
        edited = movie.read_bytes()
        assert edited != original
        assert len(edit_journal.find_stale(movie.parent)) == 1

        survivor = start_worker(
            redis_url, served.url, tmp_path / "two", "--requeue-after", REQUEUE_AFTER
        )
        workers.append(survivor)
        wait_for(
            lambda: runs(server_db) == 2 and queue_empty(redis_url),
            180,
            "the file was not run again, or the killed run not recorded",
        )
        assert stop(survivor) == [0]
    finally:
        kill(*workers)
        proxy.close()
        assert served.stop() == 0
    log = worker_log(tmp_path / "two")
    interrupted, success = query(server_db, "SELECT * FROM processing_stats ORDER BY success")
    assert interrupted["success"] == 0 and interrupted["error_message"].startswith(
        "interrupted: worker"
    ), dict(interrupted)
    assert success["success"] == 1, dict(success)
    assert edit_journal.find_stale(movie.parent) == []
    assert [p.name for p in movie.parent.iterdir()] == [movie.name]
    if stored:  # the record counts the edit: it is kept, and the retry starts from it
        assert interrupted["phases_completed"] == 1
        assert interrupted["total_changes"] == POLICY_CHANGES
        assert interrupted["hash_after"] == success["hash_before"] != original_hash
        assert f"kept the completed in-place edit of {movie.name}, as recorded" in log
        assert f"as run {interrupted['id']} (" in log
    else:  # the record does not: it is undone, and the retry starts from the original
        assert interrupted["phases_completed"] == 0
        assert interrupted["total_changes"] == 0
        assert interrupted["hash_after"] == success["hash_before"] == original_hash
        assert "kept the completed" not in log
    # The file went through the policy's changes once, and the rows say so.
    assert interrupted["total_changes"] + success["total_changes"] == POLICY_CHANGES
    assert success["hash_after"] == partial_hash(movie) != original_hash
    assert success["size_after"] == movie.stat().st_size
    assert dead_letters(redis_url) == 0 and not messages(redis_url)
