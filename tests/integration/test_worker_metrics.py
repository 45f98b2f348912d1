"""`vpo worker --metrics ADDRESS` (issue #14): a real redis-server, a real `vpo serve` and a
worker subprocess run the sample library; the worker's own `/metrics`, scraped with a plain
HTTP GET, counts exactly the runs the server recorded, in both exposition formats (the
OpenMetrics exemplars name recorded runs), passes `promtool check metrics`, and serves no
database gauge; `/healthz` answers; a bad address exits 2 and a taken port 1, each in one
sentence (docs/workers.md, docs/cli.md `vpo worker`)."""

import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import CLEANUP, query, wait_for
from tests.queue_support import enqueue, kill, runs, serve, start_worker, stop, until, worker_log

SERVING = re.compile(r"Serving /metrics on (http://\S+)/metrics")


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    """Status, content type and body of a plain GET."""
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def metrics_url(tmp_path: Path) -> str:
    """The address the worker printed (it was given port 0)."""
    log = tmp_path / "worker.log"
    found = wait_for(lambda: SERVING.search(log.read_text()), 60, "the worker's metrics line")
    return found[1]


def processed(text: str) -> dict[str, float]:
    """`vpo_files_processed_total` by status, from the classic text format."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vpo_files_processed_total":
                status = sample.labels["status"]
                totals[status] = totals.get(status, 0.0) + sample.value
    return totals


def test_the_worker_serves_the_live_metrics_of_its_runs(
    library: Path, tmp_path: Path, redis_url: str
) -> None:
    server_db = tmp_path / "server.db"
    enqueue(server_db, CLEANUP, redis_url, library)
    files = [path for path in library.iterdir() if path.is_file()]
    served = serve(server_db, tmp_path)
    worker = start_worker(redis_url, served.url, tmp_path, "--metrics", "127.0.0.1:0")
    try:
        url = metrics_url(tmp_path)
        until(lambda: runs(server_db) >= len(files), worker)
        recorded = runs(server_db)
        assert recorded == len(files), (tmp_path / "worker.log").read_text()
        # A run is counted when it ends, before or after its spans reach the server.
        wait_for(
            lambda: sum(processed(get(url + "/metrics")[2]).values()) == recorded,
            30,
            "the worker's counter to reach the recorded runs",
        )

        status, content_type, text = get(url + "/metrics")
        assert status == 200 and content_type.startswith("text/plain"), content_type
        assert processed(text) == {"success": float(recorded)}
        families = {family.name: family for family in text_string_to_metric_families(text)}
        (before,) = query(server_db, "SELECT sum(size_before) AS n FROM processing_stats")
        inputs = [
            s.value
            for s in families["vpo_file_input_bytes"].samples
            if s.name == "vpo_file_input_bytes_total"
        ]
        assert sum(inputs) == before["n"]
        assert [s.value for s in families["vpo_files_in_progress"].samples] == [0.0]
        assert "vpo_processing_duration_seconds" in families
        # The server's database is the server's to serve: no library or history gauge here.
        assert not [name for name in families if name.startswith(("vpo_library", "vpo_history"))]
        (info,) = families["target_info"].samples
        assert info.labels["service_name"] == "vpo" and info.labels["host_name"]

        promtool = shutil.which("promtool")
        if promtool is not None:  # scripts/setup.sh installs it (Debian's prometheus)
            checked = subprocess.run(
                [promtool, "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr

        # What Prometheus asks for first: OpenMetrics, whose exemplars name recorded runs.
        status, content_type, text = get(
            url + "/metrics", accept="application/openmetrics-text; version=1.0.0"
        )
        assert status == 200 and content_type.startswith("application/openmetrics-text")
        assert text.endswith("# EOF\n")
        exemplars = {
            sample.exemplar.labels["trace_id"]
            for family in openmetrics_families(text)
            for sample in family.samples
            if sample.exemplar is not None
        }
        traces = {
            row["trace_id"] for row in query(server_db, "SELECT trace_id FROM processing_stats")
        }
        assert exemplars and exemplars <= traces, (exemplars, traces)

        status, content_type, body = get(url + "/healthz")
        assert (status, content_type, json.loads(body)) == (
            200,
            "application/json",
            {"status": "ok"},
        )
        assert get(url + "/nothing")[0] == 404

        assert stop(worker) == [0]
    finally:
        kill(worker)
        assert served.stop() == 0
    worker_log(tmp_path)
    with pytest.raises(urllib.error.URLError):  # the port is closed with the worker
        get(url + "/healthz")


def test_a_bad_address_exits_2_and_a_taken_port_1(tmp_path: Path, redis_url: str) -> None:
    """Both before the worker asks anything of the server (which here does not exist)."""
    nowhere = "http://127.0.0.1:9"
    for address in (":9322", "9322:", "localhost", "[::1]9322", "127.0.0.1:65536"):
        worker = start_worker(redis_url, nowhere, tmp_path, "--metrics", address)
        try:
            assert worker.wait(timeout=60) == 2, address
        finally:
            kill(worker)
        (line,) = (tmp_path / "worker.log").read_text().splitlines()
        assert line.startswith("Error: --metrics ") and "0.0.0.0:9322" in line, line

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker(redis_url, nowhere, tmp_path, "--metrics", f"127.0.0.1:{port}")
        try:
            assert worker.wait(timeout=60) == 1
        finally:
            kill(worker)
    (line,) = (tmp_path / "worker.log").read_text().splitlines()
    assert line == f"Error: Cannot serve /metrics on 127.0.0.1:{port}: Address already in use."
