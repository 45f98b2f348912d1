"""The monitoring stack end to end, with the real Prometheus server: a `vpo serve --watch`
processes sample media; Prometheus, started with the repository's telemetry/prometheus.yml
(only the target and the intervals changed) and exemplar storage, scrapes it and evaluates
telemetry/rules.yml; then every PromQL expression of grafana/dashboards/vpo.json and of
rules.yml is evaluated through Prometheus's HTTP API, and the run-duration exemplars lead
to runs recorded in the database."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import EXAMPLES, query
from tests.integration.test_grafana_dashboard import expressions
from tests.integration.test_server_api import Server, start_server
from vpo.samples import SampleFile

ROOT = Path(__file__).parents[2]
TELEMETRY = ROOT / "telemetry"
DASHBOARD = ROOT / "grafana" / "dashboards" / "vpo.json"
COPIES = 3  # of each sample: runs spread over several scrapes, so counters are seen rising


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return json.load(response)


class Prometheus:
    """A real Prometheus on a loopback port, its data in a temporary folder."""

    def __init__(self, folder: Path, target: str) -> None:
        config = yaml.safe_load((TELEMETRY / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(TELEMETRY / name) for name in config["rule_files"]]
        (job,) = config["scrape_configs"]
        job["static_configs"] = [{"targets": [target]}]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (folder / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        answer = _get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[Any]:
        data = self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, sample_files: list[SampleFile]
) -> Iterator[tuple[Server, Prometheus]]:
    if shutil.which("prometheus") is None:
        pytest.fail("the prometheus server is needed (Debian package prometheus)")
    folder = tmp_path_factory.mktemp("stack")
    library = folder / "library"
    library.mkdir()
    policy = EXAMPLES / "hevc-transcode.yaml"  # transcodes too: every live series moves
    options = ("--watch", str(library), "--policy", str(policy), "--interval", "1")
    server = start_server(folder / "vpo.db", folder, options=options)
    prometheus = Prometheus(folder / "prometheus", urllib.parse.urlsplit(server.url).netloc)
    try:
        # Scraped before any run, so Prometheus sees the counters rise, not just appear.
        _until(lambda: prometheus.query('up{job="vpo"} == 1'), 60, "a first scrape")
        for copy in range(COPIES):
            for sample in sample_files:
                target = library / f"{copy}-{sample.path.name}"
                shutil.copyfile(sample.path, target)
                os.utime(target, (time.time() - 3600,) * 2)  # long still: run at once
        expected = COPIES * len(sample_files)
        _until(lambda: _runs(server.db) == expected, 180, "every sample run")
        _until(lambda: _scraped_total(prometheus) == expected, 60, "a scrape of the last run")
        time.sleep(3)  # a few rule evaluations over the finished runs
        yield server, prometheus
    finally:
        prometheus.stop()
        server.stop()


def _until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:  # Prometheus still starting
            pass
        time.sleep(0.25)
    raise AssertionError(f"not within {seconds} s: {what}")


def _runs(db: Path) -> int:
    try:
        return int(query(db, "SELECT count(*) FROM processing_stats")[0][0])
    except Exception:
        return 0


def _scraped_total(prometheus: Prometheus) -> float:
    result = prometheus.query('sum(vpo_files_processed_total{job="vpo"})')
    return float(result[0]["value"][1]) if result else 0.0


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((TELEMETRY / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_dashboard_expression_returns_data(stack: tuple[Server, Prometheus]) -> None:
    _server, prometheus = stack
    dashboard = json.loads(DASHBOARD.read_text())
    found = expressions(dashboard)
    assert len(found) > 20
    empty = [expr for expr in found if not prometheus.query(expr)]
    assert empty == [], f"{len(empty)} dashboard expression(s) returned no series: {empty}"


def test_every_recording_rule_has_recorded_data(stack: tuple[Server, Prometheus]) -> None:
    _server, prometheus = stack
    records = [rule for rule in _rules() if "record" in rule]
    assert records
    for rule in records:
        assert prometheus.query(rule["expr"]), rule["expr"]  # parses and answers
        assert prometheus.query(rule["record"]), rule["record"]  # and Prometheus records it
    loaded = prometheus.api("rules")
    health = [r["health"] for g in loaded["groups"] for r in g["rules"]]
    assert len(health) == len(_rules()) and set(health) == {"ok"}, loaded


def test_every_alert_parses_and_reads_live_series(stack: tuple[Server, Prometheus]) -> None:
    """An alert's expression answers nothing while all is well (that is the point), so each
    is checked to parse, and each series it reads to have data."""
    _server, prometheus = stack
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {"VPOFailureRatioHigh", "VPOStuck", "VPODown"}
    firing = {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]}
    for alert in alerts:
        prometheus.query(alert["expr"])  # a parse error fails inside api()
        # The series it reads: VPO's metrics, `up`, and recorded rules (level:metric:ops).
        selectors = re.findall(
            r"\b(?:vpo_[a-z_]+|up|[a-z_]+:[a-z0-9_]+:[a-z0-9_]+)(?:\{[^}]*\})?", alert["expr"]
        )
        assert selectors, alert["alert"]
        for selector in selectors:
            assert prometheus.query(selector), (alert["alert"], selector)
    assert firing == set(), firing  # a healthy VPO that finished its runs pages nobody


def test_exemplars_lead_to_recorded_runs(stack: tuple[Server, Prometheus]) -> None:
    server, prometheus = stack
    now = time.time()
    data = prometheus.api(
        "query_exemplars",
        query='vpo_processing_duration_seconds_bucket{job="vpo"}',
        start=str(now - 3600),
        end=str(now + 60),
    )
    trace_ids = {
        exemplar["labels"]["trace_id"] for series in data for exemplar in series["exemplars"]
    }
    recorded = {row[0] for row in query(server.db, "SELECT trace_id FROM processing_stats")}
    assert trace_ids and trace_ids <= recorded, (trace_ids, recorded)
