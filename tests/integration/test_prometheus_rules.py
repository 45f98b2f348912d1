"""telemetry/: the Prometheus configuration and rules pass the real `promtool` (check config,
check rules, and the unit tests of rules.test.yml, which cover every alert and recording
rule); every metric the rules read is documented in docs/metrics.md and served by a real
`vpo serve` that has processed a sample, in both exposition formats Prometheus can ask for."""

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import CLEANUP
from tests.integration.test_server_api import Server, start_server
from vpo.samples import SampleFile

ROOT = Path(__file__).parents[2]
TELEMETRY = ROOT / "telemetry"
CONFIG = TELEMETRY / "prometheus.yml"
RULES = TELEMETRY / "rules.yml"
RULE_TESTS = TELEMETRY / "rules.test.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"

# What the rules read, by exposed sample name. Spelled out so that a regex that found
# nothing (or a rule that stopped reading a metric) fails here rather than passing.
READ_BY_RULES = {
    "vpo_file_input_bytes_total",
    "vpo_file_output_bytes_total",
    "vpo_files_processed_total",
    "vpo_files_in_progress",
    "vpo_processing_duration_seconds_bucket",
}
RECORDED_NAME = re.compile(r"[A-Za-z_]*:[A-Za-z0-9_:]*")  # level:metric:operations
METRIC_NAME = re.compile(r"\bvpo_[a-z_]+")
DOC_ROW = re.compile(r"^\| `(vpo_[a-z_]+)` \|", re.MULTILINE)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool (Debian's prometheus package) is needed"
    return subprocess.run(
        [tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(RULES)["groups"] for rule in group["rules"]]


def _family(sample_name: str) -> str:
    """The metric family a sample belongs to, as the parsers name it: counters without
    `_total`, histograms by their base name."""
    return re.sub(r"_(total|bucket|sum|count)$", "", sample_name)


def _metrics_read_by_rules() -> set[str]:
    names: set[str] = set()
    for rule in _rules():
        names |= set(METRIC_NAME.findall(RECORDED_NAME.sub(" ", rule["expr"])))
    return names


def test_promtool_check_config_passes() -> None:
    result = promtool("check", "config", "telemetry/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout, result.stdout


def test_the_scrape_job_is_the_one_the_rules_watch() -> None:
    config = _load(CONFIG)
    assert config["rule_files"] == ["rules.yml"]
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "vpo" and job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["vpo:8321"]}]
    (down,) = [rule for rule in _rules() if rule.get("alert") == "VPODown"]
    assert down["expr"] == f'up{{job="{job["job_name"]}"}} == 0'


def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", "telemetry/rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", "telemetry/rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "FAILED" not in result.stdout, result.stdout


def test_every_rule_has_unit_tests_both_ways() -> None:
    """Each recording rule's value is checked; each alert is seen firing and silent."""
    records = {rule["record"] for rule in _rules() if "record" in rule}
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert records == {
        "policy:vpo_bytes_saved:increase1h",
        "job_instance:vpo_files_processed:increase15m",
        "job_instance:vpo_files_failure_ratio:rate15m",
        ":vpo_files_failure_ratio:rate15m",
        "policy:vpo_processing_duration_seconds:p95_rate1h",
    }
    assert alerts == {"VPOFailureRatioHigh", "VPOStuck", "VPODown"}
    tests = _load(RULE_TESTS)
    assert tests["rule_files"] == ["rules.yml"]
    checked_values = [
        check["expr"]
        for test in tests["tests"]
        for check in test.get("promql_expr_test", [])
        if check["exp_samples"]
    ]
    for record in records:
        assert any(record in RECORDED_NAME.findall(expr) for expr in checked_values), record
    firing = {
        check["alertname"]
        for test in tests["tests"]
        for check in test.get("alert_rule_test", [])
        if check["exp_alerts"]
    }
    silent: dict[str, int] = {}
    for test in tests["tests"]:
        for check in test.get("alert_rule_test", []):
            if not check["exp_alerts"]:
                silent[check["alertname"]] = silent.get(check["alertname"], 0) + 1
    assert firing == alerts
    assert set(silent) == alerts and all(count >= 2 for count in silent.values()), silent


def test_alerts_say_how_bad_and_what_to_do() -> None:
    for rule in (rule for rule in _rules() if "alert" in rule):
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["for"] in {"5m", "15m"}, rule["alert"]
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert "{{ $labels.instance }}" in summary, rule["alert"]
        assert "docker compose logs vpo" in description, rule["alert"]
        assert "journalctl -u vpo" in description, rule["alert"]
    said = {
        rule["alert"]: rule["annotations"]["description"] for rule in _rules() if "alert" in rule
    }
    assert "vpo stats recent --failed" in said["VPOFailureRatioHigh"]
    assert "vpo doctor" in said["VPOFailureRatioHigh"]
    assert "/stats" in said["VPOStuck"]
    assert "/healthz" in said["VPODown"]


def test_every_metric_the_rules_read_is_documented() -> None:
    assert _metrics_read_by_rules() == READ_BY_RULES
    documented = {_family(name) for name in DOC_ROW.findall(METRICS_DOC.read_text())}
    assert len(documented) >= 19  # the 13 live and 6 database metrics of the tables
    missing = {_family(name) for name in READ_BY_RULES} - documented
    assert missing == set(), f"read by rules.yml, not in docs/metrics.md: {sorted(missing)}"


@pytest.fixture
def served_after_a_run(tmp_path: Path, sample_files: list[SampleFile]) -> Iterator[Server]:
    """`vpo serve --watch` that has itself processed a sample: its live series exist (they
    appear only once the process scraped has finished a run)."""
    watched = tmp_path / "watched"
    watched.mkdir()
    movie = next(s.path for s in sample_files if s.path.name == "movie-h264-multilang.mkv")
    shutil.copy2(movie, watched / movie.name)
    options = ("--watch", str(watched), "--policy", str(CLEANUP), "--interval", "0.5")
    server = start_server(tmp_path / "vpo.db", tmp_path, options=options)
    try:
        deadline = time.monotonic() + 90
        while "vpo_files_processed_total{" not in server.get("/metrics")[2]:
            assert time.monotonic() < deadline, f"no run finished: {server.log()}"
            time.sleep(0.2)
        yield server
    finally:
        assert server.stop() == 0, server.log()


def test_every_metric_the_rules_read_is_served(served_after_a_run: Server) -> None:
    wanted = {_family(name) for name in READ_BY_RULES}
    status, _data, text = served_after_a_run.get("/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert wanted - set(families) == set(), sorted(families)
    assert families["vpo_files_processed"].type == "counter"
    assert families["vpo_processing_duration_seconds"].type == "histogram"
    assert families["vpo_files_in_progress"].type == "gauge"
    runs = {
        sample.labels["status"]: sample.value
        for sample in families["vpo_files_processed"].samples
        if sample.name == "vpo_files_processed_total"
    }
    assert runs == {"success": 1.0}
    # What Prometheus asks for first, and so what it stores: OpenMetrics.
    status, _data, text = served_after_a_run.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200 and text.endswith("# EOF\n")
    families = {family.name: family for family in openmetrics_families(text)}
    assert wanted - set(families) == set(), sorted(families)
    buckets = [
        sample
        for sample in families["vpo_processing_duration_seconds"].samples
        if sample.name == "vpo_processing_duration_seconds_bucket"
    ]
    assert {sample.labels["policy"] for sample in buckets} == {"language-cleanup"}
    assert {"le", "policy", "status"} <= set(buckets[0].labels)
    # The exemplar that links the run's duration to its trace comes through.
    (exemplar,) = [sample.exemplar for sample in buckets if sample.exemplar is not None]
    assert set(exemplar.labels) == {"trace_id", "span_id"}
    assert re.fullmatch(r"[0-9a-f]{32}", exemplar.labels["trace_id"])
