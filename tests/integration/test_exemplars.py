"""Exemplars on /metrics (docs/metrics.md, "Exemplars"): a live `vpo serve --watch` that
processed sample media with the real tools serves, when asked for OpenMetrics, the run's
`trace_id` and `span_id` on the run-duration histogram's bucket and on the files-processed
counter; the plain text format carries none, passes `promtool check metrics`, and is what
the OpenTelemetry exporter alone writes."""

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.trace import SpanContext
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar, Sample

from tests.helpers import CLEANUP, query, wait_for
from tests.integration.test_server_api import Server, start_server
from vpo.db import open_database
from vpo.samples import SampleFile
from vpo.telemetry import attributes as attr
from vpo.telemetry.instruments import RunMetrics, RunOutcome, views
from vpo.telemetry.serving import render_metrics
from vpo.telemetry.setup import Telemetry, build_telemetry

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
DURATION = "vpo_processing_duration_seconds"
FILES = "vpo_files_processed"
SAMPLES = ("movie-h264-multilang.mkv", "anime-hevc.mkv")
HEX = {"trace_id": re.compile(r"[0-9a-f]{32}"), "span_id": re.compile(r"[0-9a-f]{16}")}


def _exemplars(text: str) -> dict[str, list[tuple[Sample, Exemplar]]]:
    """The samples of the two families that carry an exemplar, by sample name (the text
    must parse as OpenMetrics)."""
    found: dict[str, list[tuple[Sample, Exemplar]]] = {}
    for family in openmetrics_families(text):
        for sample in family.samples:
            if sample.exemplar is not None:
                assert family.name in (DURATION, FILES), sample
                found.setdefault(sample.name, []).append((sample, sample.exemplar))
    return found


def _assert_well_formed(exemplar: Exemplar) -> None:
    assert set(exemplar.labels) == {"trace_id", "span_id"}
    for name, value in exemplar.labels.items():
        assert HEX[name].fullmatch(value), (name, value)
    assert sum(len(k) + len(v) for k, v in exemplar.labels.items()) <= 128  # OpenMetrics
    assert exemplar.timestamp is not None


def _bucket_holds(sample: Sample, bounds: list[float], value: float) -> bool:
    """`value` falls in the bucket of `sample` (above the bound below, at most its own)."""
    le = float(sample.labels["le"])
    below = max((b for b in bounds if b < le), default=float("-inf"))
    return below < value <= le


# --- A live `vpo serve --watch` after real runs ---------------------------------------


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory, sample_files: list[SampleFile]
) -> Iterator[Server]:
    """`vpo serve --watch` once it has processed two copied samples."""
    folder = tmp_path_factory.mktemp("exemplars")
    library = folder / "watched"
    library.mkdir()
    options = ("--watch", str(library), "--policy", str(CLEANUP), "--interval", "0.5")
    server = start_server(folder / "vpo.db", folder, options=options)
    try:
        for sample in sample_files:
            if sample.path.name in SAMPLES:
                shutil.copyfile(sample.path, library / sample.path.name)

        def counted() -> bool:
            if not server.db.exists() or len(_runs(server)) < len(SAMPLES):
                return False
            status, _data, text = server.get("/metrics")
            assert status == 200
            return _files_processed(text) == len(SAMPLES)

        wait_for(counted, 120, "both samples processed, recorded and counted")
        yield server
    finally:
        server.stop()


def _runs(server: Server) -> dict[str, Any]:
    rows = query(
        server.db,
        "SELECT trace_id, duration_seconds, policy_name, success FROM processing_stats",
    )
    return {row["trace_id"]: row for row in rows}


def _files_processed(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == FILES
        for sample in family.samples
        if sample.name == FILES + "_total"
    )


def test_openmetrics_carries_the_runs_trace_on_duration_and_files(watched: Server) -> None:
    status, _data, text, headers = watched.request("/metrics", headers={"Accept": OPENMETRICS})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    runs = _runs(watched)
    assert len(runs) == len(SAMPLES) and all(run["success"] for run in runs.values())
    found = _exemplars(text)
    assert set(found) == {DURATION + "_bucket", FILES + "_total"}

    bounds = [
        float(s.labels["le"])
        for family in openmetrics_families(text)
        if family.name == DURATION
        for s in family.samples
        if s.name == DURATION + "_bucket"
    ]
    traced = set()
    for sample, exemplar in found[DURATION + "_bucket"]:
        _assert_well_formed(exemplar)
        run = runs[exemplar.labels["trace_id"]]  # a run of the database
        assert sample.labels["policy"] == run["policy_name"] == "language-cleanup"
        assert sample.labels["status"] == "success"
        # The metric times the whole run; the recorded duration is its root span's.
        assert run["duration_seconds"] - 0.001 <= exemplar.value
        assert exemplar.value <= run["duration_seconds"] + 0.25
        assert _bucket_holds(sample, bounds, exemplar.value), (sample, exemplar)
        assert sample.value >= 1
        traced.add(exemplar.labels["trace_id"])

    (counted,) = found[FILES + "_total"]  # one series: language-cleanup, success
    sample, exemplar = counted
    _assert_well_formed(exemplar)
    assert sample.labels == {"policy": "language-cleanup", "status": "success"}
    assert sample.value == len(SAMPLES) and exemplar.value == 1
    assert exemplar.labels["trace_id"] in runs
    # The counter names the last run counted; so does the bucket that run fell in.
    assert exemplar.labels["trace_id"] in traced
    spans = {e.labels["trace_id"]: e.labels["span_id"] for _s, e in found[DURATION + "_bucket"]}
    assert spans[exemplar.labels["trace_id"]] == exemplar.labels["span_id"]


def test_plain_text_has_no_exemplar_and_passes_promtool(watched: Server) -> None:
    status, _data, plain, headers = watched.request("/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "trace_id" not in plain and " # {" not in plain and "# EOF" not in plain
    families = {f.name: f for f in text_string_to_metric_families(plain)}
    assert families[DURATION].type == "histogram" and families[FILES].type == "counter"
    assert all(s.exemplar is None for f in families.values() for s in f.samples)
    assert _files_processed(plain) == len(SAMPLES)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=plain, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Asking for the plain format by name gets the same body.
    _status, _data, named, _headers = watched.request("/metrics", headers={"Accept": "text/plain"})
    assert named == plain


# --- In-process: where each exemplar goes, and what the plain format stays -------------


@pytest.fixture
def telemetry(tmp_path: Path) -> Iterator[Telemetry]:
    db = tmp_path / "vpo.db"
    open_database(db).close()
    built = build_telemetry(db, otlp=False)
    try:
        yield built
    finally:
        built.shutdown()


def _outcome(
    policy: str, seconds: float, success: bool = True, span: SpanContext | None = None
) -> RunOutcome:
    return RunOutcome(
        policy=policy,
        success=success,
        size_before=10,
        size_after=8,
        duration_seconds=seconds,
        span_context=span,
    )


def _run(telemetry: Telemetry, policy: str, seconds: float, success: bool = True) -> SpanContext:
    """A run's root span, then its metrics, as the processor records them."""
    telemetry.metrics.run_started()
    with telemetry.tracer.start_as_current_span(attr.PROCESS_FILE) as root:
        context = root.get_span_context()
    telemetry.metrics.run_finished(_outcome(policy, seconds, success, context))
    return context


def _ids(context: SpanContext) -> dict[str, str]:
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def _by_series(telemetry: Telemetry) -> dict[tuple[str, ...], tuple[dict[str, str], float]]:
    body, _type = render_metrics(telemetry.registry, OPENMETRICS)
    found = {}
    for name, pairs in _exemplars(body.decode()).items():
        for sample, exemplar in pairs:
            _assert_well_formed(exemplar)
            key = (name, sample.labels["policy"], sample.labels["status"])
            found[(*key, sample.labels["le"]) if "le" in sample.labels else key] = (
                exemplar.labels,
                exemplar.value,
            )
    return found


def test_each_bucket_and_series_keeps_the_last_run_counted_in_it(telemetry: Telemetry) -> None:
    telemetry.metrics.run_finished(_outcome("p", 0.3))  # no run's span: no exemplar
    assert _by_series(telemetry) == {}
    first = _run(telemetry, "p", 0.3)
    slow = _run(telemetry, "p", 7.0)
    last = _run(telemetry, "p", 0.5)  # a bound belongs to its bucket (le is inclusive)
    failed = _run(telemetry, "p", 2.0, success=False)
    overlong = _run(telemetry, "q", 20_000.0)
    telemetry.metrics.run_finished(_outcome("q", 1.0))  # no run's span: no exemplar
    bucket, total = DURATION + "_bucket", FILES + "_total"
    assert _by_series(telemetry) == {
        (bucket, "p", "success", "0.5"): (_ids(last), 0.5),
        (bucket, "p", "success", "10.0"): (_ids(slow), 7.0),
        (bucket, "p", "failure", "2.5"): (_ids(failed), 2.0),
        (bucket, "q", "success", "+Inf"): (_ids(overlong), 20_000.0),
        (total, "p", "success"): (_ids(last), 1.0),
        (total, "p", "failure"): (_ids(failed), 1.0),
        (total, "q", "success"): (_ids(overlong), 1.0),
    }
    assert _ids(first) not in [ids for ids, _value in _by_series(telemetry).values()]
    # Scraping again (either format) shows the same: exemplars are not used up.
    render_metrics(telemetry.registry)
    assert len(_by_series(telemetry)) == 7


def test_plain_text_is_what_the_exporter_alone_writes(telemetry: Telemetry) -> None:
    alone = CollectorRegistry()
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(scope_info_enabled=False, registry=alone)],
        views=views(),
        shutdown_on_exit=False,
    )
    reference = RunMetrics(provider.get_meter("vpo"))
    try:
        for policy, seconds, success in (("p", 0.3, True), ("p", 7.0, True), ("q", 2.0, False)):
            _run(telemetry, policy, seconds, success)
            reference.run_started()
            reference.run_finished(_outcome(policy, seconds, success))
        plain, content_type = render_metrics(telemetry.registry)
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        expected = [
            line
            for line in generate_latest(alone).decode().splitlines()
            if "target_info" not in line
        ]
    finally:
        provider.shutdown()
    assert any(line.startswith(DURATION + "_bucket") for line in expected)
    wanted = set(expected)
    assert [line for line in plain.decode().splitlines() if line in wanted] == expected
    assert b"trace_id" not in plain
