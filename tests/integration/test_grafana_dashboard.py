"""grafana/: the dashboard regenerates byte for byte from scripts/gen_dashboard.py, passes
Grafana's dashboard-linter rules (checked here), references only the provisioned
datasources, and uses only metric names that docs/metrics.md lists and that a real
`vpo serve` exposes after processing sample media.

`expressions(dashboard, variables)` gives every PromQL expression with the variables
substituted, for a test that evaluates them against a real Prometheus."""

import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_server_api import (  # noqa: F401 - `processed` is a fixture
    EXAMPLES,
    Server,
    processed,
    start_server,
)

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "vpo.json"
SCRIPT = ROOT / "scripts" / "gen_dashboard.py"
METRICS_DOC = ROOT / "docs" / "metrics.md"
GRID_WIDTH = 24


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_dashboard", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_dashboard = _load_script()


def expressions(dashboard: dict[str, Any], variables: dict[str, str] | None = None) -> list[str]:
    """Every PromQL expression of `dashboard` (panel targets and the series selectors of the
    query variables), with the variables substituted: $job→vpo, $instance→.+, $policy→.+,
    $__rate_interval→1m, $__interval→1m, $__range→1h, $datasource→the provisioned uid,
    overridden by `variables`."""
    return gen_dashboard.expressions(dashboard, variables)


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in _all_panels(board):
        for target in panel.get("targets", []):
            yield panel, target


def _all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _raw_expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for _panel, target in _targets(board)]


def _variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in board["templating"]["list"]}


def _metric_names(expr: str) -> set[str]:
    """Metric names of the vector selectors of `expr` (every selector has braces here)."""
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))


def _documented() -> dict[str, set[str]]:
    """docs/metrics.md's tables: metric name → its labels."""
    documented: dict[str, set[str]] = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"`\w+`", cells[0]):
            continue
        name = cells[0].strip("`")
        if name.startswith("vpo_"):
            documented[name] = set(re.findall(r"`(\w+)`", cells[3]))
    return documented


def _base(name: str, known: set[str]) -> str:
    """A histogram series name to its metric's name (`_bucket`, `_sum`, `_count`)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in known:
            return name.removesuffix(suffix)
    return name


def _provisioned() -> dict[str, dict[str, Any]]:
    text = (GRAFANA / "provisioning" / "datasources" / "vpo.yaml").read_text(encoding="utf-8")
    return {source["uid"]: source for source in yaml.safe_load(text)["datasources"]}


# The dashboard file itself


def test_regenerating_equals_the_committed_file(tmp_path: Path) -> None:
    committed = DASHBOARD.read_text(encoding="utf-8")
    assert gen_dashboard.render(gen_dashboard.build()) == committed, (
        "grafana/dashboards/vpo.json is stale: run scripts/gen_dashboard.py"
    )
    out = tmp_path / "vpo.json"
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, capture_output=True)
    assert out.read_bytes() == DASHBOARD.read_bytes()
    assert committed.endswith("}\n") and not committed.endswith("\n\n")


def test_identity_time_and_refresh(board: dict[str, Any]) -> None:
    assert board["uid"] == "vpo" and board["title"] == "VPO"
    assert board["time"] == {"from": "now-24h", "to": "now"}
    assert board["refresh"] == "30s"
    assert isinstance(board["annotations"]["list"], list)


def test_rows_as_the_spec_lists(board: dict[str, Any]) -> None:
    rows = [panel["title"] for panel in board["panels"] if panel["type"] == "row"]
    assert rows == ["Overview", "Savings", "Work", "Workers", "Library"]
    for panel in board["panels"]:
        if panel["type"] == "row":
            assert not panel["collapsed"] and panel["panels"] == []


def _row_panels(board: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels under the expanded row `title`, up to the next row."""
    found: list[dict[str, Any]] | None = None
    for panel in board["panels"]:
        if panel["type"] == "row":
            if found is not None:
                break
            if panel["title"] == title:
                found = []
        elif found is not None:
            found.append(panel)
    assert found is not None, f"no row {title!r}"
    return found


def test_the_workers_row_shows_runs_failures_and_in_progress_by_instance(
    board: dict[str, Any],
) -> None:
    """The live metrics have no worker label: `instance` (one per scraped VPO process,
    each worker serving its own /metrics) is what tells the workers apart."""
    panels = {panel["title"]: panel for panel in _row_panels(board, "Workers")}
    assert list(panels) == [
        "Runs per second by instance and status",
        "Failures per second by instance",
        "In progress by instance",
    ]
    wanted = {
        "Runs per second by instance and status": (
            "sum by (instance, status) (rate(vpo_files_processed_total{"
            'job="$job", instance=~"$instance", policy=~"$policy"}[$__rate_interval]))'
        ),
        "Failures per second by instance": (  # 0, not nothing, for a process without any
            "sum by (instance) (rate(vpo_files_processed_total{"
            'job="$job", instance=~"$instance", policy=~"$policy", status="failure"}'
            "[$__rate_interval])) or 0 * sum by (instance) (rate(vpo_files_processed_total{"
            'job="$job", instance=~"$instance", policy=~"$policy"}[$__rate_interval]))'
        ),
        "In progress by instance": (
            'sum by (instance) (vpo_files_in_progress{job="$job", instance=~"$instance"})'
        ),
    }
    for title, expr in wanted.items():
        panel = panels[title]
        assert panel["type"] == "timeseries", title
        assert [target["expr"] for target in panel["targets"]] == [expr], title
        assert all("{{instance}}" in t["legendFormat"] for t in panel["targets"]), title
    assert panels["In progress by instance"]["fieldConfig"]["defaults"]["unit"] == "short"
    assert {panels[t]["fieldConfig"]["defaults"]["unit"] for t in list(wanted)[:2]} == {"ops"}


# Grafana's dashboard-linter rules


def test_a_datasource_variable_defaulting_to_the_provisioned_prometheus(
    board: dict[str, Any],
) -> None:
    variable = _variables(board)["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"]["value"] == "vpo-prometheus"
    assert _provisioned()["vpo-prometheus"]["type"] == "prometheus"


def test_job_instance_and_policy_variables(board: dict[str, Any]) -> None:
    variables = _variables(board)
    for name in ("job", "instance", "policy"):
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"]["uid"] == "${datasource}", name
        query = variable["query"]["query"]
        assert query.startswith("label_values(") and query.endswith(f", {name})"), query
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]
    assert variables["policy"]["multi"] and variables["policy"]["includeAll"]


def test_every_selector_filters_job_and_instance_and_policy_where_labelled(
    board: dict[str, Any],
) -> None:
    with_policy = {name for name, labels in _documented().items() if "policy" in labels}
    documented = set(_documented())
    expressions_ = _raw_expressions(board)
    assert len(expressions_) >= 25
    for expr in expressions_:
        bare = re.findall(r"\b(vpo_\w+)\b(?!\s*\{)", expr)
        assert not bare, f"selector without matchers in {expr}"
        for name, matchers in re.findall(r"\b([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
            assert 'job="$job"' in matchers, expr
            assert 'instance=~"$instance"' in matchers, expr
            if _base(name, documented) in with_policy:
                assert 'policy=~"$policy"' in matchers, f"{name} in {expr}"
            else:
                assert "$policy" not in matchers, f"{name} has no policy label: {expr}"


def test_every_panel_has_a_title_a_description_and_a_unit(board: dict[str, Any]) -> None:
    panels = [panel for panel in _all_panels(board) if panel["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:
        assert panel.get("title"), panel["id"]
        assert panel.get("description"), panel["title"]
        assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit"), panel["title"]
        assert panel.get("targets"), panel["title"]


def test_rate_interval_in_every_rate(board: dict[str, Any]) -> None:
    for expr in _raw_expressions(board):
        calls = len(re.findall(r"\b(?:rate|irate|increase|delta|deriv)\s*\(", expr))
        ranges = re.findall(r"\[([^\]]*)\]", expr)
        assert all(r == "$__rate_interval" for r in ranges), expr
        assert calls == len(ranges), expr


def test_panel_ids_are_unique(board: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in _all_panels(board)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_no_overlapping_grid_positions(board: dict[str, Any]) -> None:
    rows: list[list[dict[str, Any]]] = [[]]
    for panel in board["panels"]:
        if panel["type"] == "row":
            rows.append([panel])
            rows[-1].extend(panel.get("panels", []))
        else:
            rows[-1].append(panel)
    for row in rows:
        for panel in row:
            pos = panel["gridPos"]
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0
            assert pos["x"] + pos["w"] <= GRID_WIDTH, panel["title"]
        for a, b in itertools.combinations(row, 2):
            assert not _overlap(a["gridPos"], b["gridPos"]), (a["title"], b["title"])
    # Rows are expanded, so their panels share one grid: no overlap across rows either.
    for a, b in itertools.combinations(board["panels"], 2):
        assert not _overlap(a["gridPos"], b["gridPos"]), (a["title"], b["title"])


def _datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def test_datasources_are_the_variable_or_provisioned(board: dict[str, Any]) -> None:
    provisioned = _provisioned()
    refs = list(_datasource_refs(board))
    assert refs
    for ref in refs:
        uid = ref["uid"] if isinstance(ref, dict) else ref
        assert uid == "${datasource}" or uid in provisioned, ref


def test_the_run_duration_panel_shows_exemplars_linked_to_traces(board: dict[str, Any]) -> None:
    (panel,) = [p for p in _all_panels(board) if p["title"].startswith("Run duration")]
    assert any(t.get("exemplar") for t in panel["targets"])
    assert all("vpo_processing_duration_seconds_bucket" in t["expr"] for t in panel["targets"])
    prometheus_source = _provisioned()["vpo-prometheus"]
    (destination,) = prometheus_source["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"
    assert _provisioned()[destination["datasourceUid"]]["type"] in {"jaeger", "tempo"}


def test_provisioning_files() -> None:
    sources = _provisioned()
    assert sources["vpo-prometheus"]["url"] == "http://prometheus:9090"
    assert sources["vpo-traces"]["url"] == "http://jaeger:16686"
    text = (GRAFANA / "provisioning" / "dashboards" / "vpo.yaml").read_text(encoding="utf-8")
    (provider,) = yaml.safe_load(text)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_expressions_substitutes_every_variable(board: dict[str, Any]) -> None:
    found = expressions(board)
    assert len(found) == len(_raw_expressions(board)) + 3  # and the three query variables
    for expr in found:
        assert "$" not in expr, expr
        assert 'job="vpo"' in expr or expr == "vpo_library_size_bytes", expr
    assert expressions(board, {"job": "other"})[0].count('job="other"') >= 1


def test_every_expression_parses(board: dict[str, Any], tmp_path: Path) -> None:
    """Offline: `promtool check rules` parses each expression as a recording rule's."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is needed"
    found = expressions(board)
    rules = [{"record": f"dashboard:expression_{n}", "expr": e} for n, e in enumerate(found)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(found)} rules found" in checked.stdout


# Metric names


def test_every_metric_is_documented(board: dict[str, Any]) -> None:
    documented = set(_documented())
    assert "vpo_files_processed_total" in documented and "vpo_history_runs" in documented
    for expr in expressions(board):
        for name in _metric_names(expr) | set(re.findall(r"^\w+$", expr)):
            assert _base(name, documented) in documented, f"{name} in {expr}"


LIVE_WAIT = 90.0


@pytest.fixture(scope="module")
def exposition(processed: Path) -> Iterator[tuple[str, str]]:  # noqa: F811
    """The plain and OpenMetrics /metrics of a real `vpo serve` over the processed sample
    library that also watches a copy of the samples with a transcoding policy, so that
    its live instruments (transcodes, fps, I/O) have recorded runs."""
    watched = processed.parent / "grafana-watched"
    watched.mkdir()
    for media in sorted((processed.parent / "library").iterdir()):
        if media.suffix in {".mkv", ".mp4"}:
            shutil.copyfile(media, watched / media.name)
    options = (
        "--watch",
        str(watched),
        "--policy",
        str(EXAMPLES / "hevc-transcode.yaml"),
        "--interval",
        "0.5",
    )
    server: Server = start_server(processed, processed.parent, options=options)
    try:
        wanted = {"vpo_encoding_fps", "vpo_transcodes", "vpo_io_bytes", "vpo_files_processed"}
        deadline = time.monotonic() + LIVE_WAIT
        while True:
            status, _data, text = server.get("/metrics")
            assert status == 200
            names = {family.name for family in text_string_to_metric_families(text)}
            in_progress = re.search(r"^vpo_files_in_progress (\S+)$", text, re.MULTILINE)
            if wanted <= names and in_progress and float(in_progress.group(1)) == 0:
                break
            assert time.monotonic() < deadline, f"live metrics missing: {wanted - names}"
            time.sleep(0.5)
        status, _data, openmetrics, _headers = server.request(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert status == 200
        yield text, openmetrics
    finally:
        server.stop()


def test_every_metric_is_exposed_by_a_real_server(
    board: dict[str, Any], exposition: tuple[str, str]
) -> None:
    text, _openmetrics = exposition
    exposed: set[str] = set()
    for family in text_string_to_metric_families(text):
        exposed.add(family.name)
        exposed.update(sample.name for sample in family.samples)
    used = set().union(*(_metric_names(expr) for expr in expressions(board)))
    missing = sorted(name for name in used if name not in exposed)
    assert not missing, missing


def test_run_duration_exemplars_carry_a_trace_id(exposition: tuple[str, str]) -> None:
    _text, openmetrics = exposition
    lines = [
        line
        for line in openmetrics.splitlines()
        if line.startswith("vpo_processing_duration_seconds_bucket") and " # {" in line
    ]
    assert lines, "no exemplar on the run-duration histogram"
    assert all("trace_id=" in line for line in lines)
