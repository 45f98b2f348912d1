"""Generate grafana/dashboards/vpo.json with Grafana's foundation SDK.

    python scripts/gen_dashboard.py            # writes grafana/dashboards/vpo.json
    python scripts/gen_dashboard.py OUT.json   # writes elsewhere (the test compares)

The output is stable (sorted keys, indent 2, trailing newline): regenerating is
byte-identical, and a test checks the committed file equals what this script builds.
Every query selects `job="$job", instance=~"$instance"` (and `policy=~"$policy"` where the
metric has a policy label); every rate/increase uses `$__rate_interval`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "grafana" / "dashboards" / "vpo.json"

UID = "vpo"
TITLE = "VPO"
# The provisioned datasources (grafana/provisioning/datasources/vpo.yaml).
PROMETHEUS_UID = "vpo-prometheus"
TRACES_UID = "vpo-traces"

DS = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Matchers of every query; POLICY is added where the metric has a policy label.
SEL = 'job="$job", instance=~"$instance"'
SELP = SEL + ', policy=~"$policy"'
RI = "$__rate_interval"

# What the end-to-end test substitutes for the dashboard's variables.
DEFAULT_VARIABLES = {
    "datasource": PROMETHEUS_UID,
    "job": "vpo",
    "instance": ".+",
    "policy": ".+",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}


def _query(
    expr: str, legend: str = "", *, instant: bool = False, exemplar: bool = False
) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(DS)
    if legend:
        query = query.legend_format(legend)
    query = query.instant() if instant else query.range()
    if exemplar:
        query = query.exemplar(True)
    return query


def _with_targets(panel: Any, targets: list[prometheus.Dataquery]) -> Any:
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel


def _stat(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DS)
        .span(6)
        .height(4)
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _with_targets(panel, [_query(expr)])


def _series(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    *,
    width: int = 12,
    bars: bool = False,
    stacked: bool = False,
) -> ts.Panel:
    panel = (
        ts.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DS)
        .span(width)
        .height(8)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
    )
    if bars:
        panel = panel.draw_style(common_models.GraphDrawStyle.BARS).fill_opacity(80)
    else:
        panel = panel.fill_opacity(10)
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    return _with_targets(panel, targets)


def _bars(
    title: str, description: str, unit: str, expr: str, legend: str, width: int = 12
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DS)
        .span(width)
        .height(8)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _with_targets(panel, [_query(expr, legend, instant=True)])


def _variables() -> list[Any]:
    datasource = (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(models.VariableOption(selected=True, text=PROMETHEUS_UID, value=PROMETHEUS_UID))
    )
    job = _query_variable(
        "job", "Job", "label_values(vpo_library_size_bytes, job)", _ON_LOAD
    ).current(models.VariableOption(selected=True, text="vpo", value="vpo"))
    instance = _all_of(
        _query_variable(
            "instance",
            "Instance",
            'label_values(vpo_library_size_bytes{job="$job"}, instance)',
            _ON_LOAD,
        )
    )
    policy = _all_of(
        _query_variable(
            "policy",
            "Policy",
            f"label_values(vpo_history_runs{{{SEL}}}, policy)",
            models.VariableRefresh.ON_TIME_RANGE_CHANGED,
        )
    )
    return [datasource, job, instance, policy]


_ON_LOAD = models.VariableRefresh.ON_DASHBOARD_LOAD


def _query_variable(
    name: str, label: str, query: str, refresh: models.VariableRefresh
) -> dashboard.QueryVariable:
    """A Prometheus label variable, its values sorted A-Z."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(_variable_query(query))
        .refresh(refresh)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


def _all_of(variable: dashboard.QueryVariable) -> dashboard.QueryVariable:
    """Several values at once, "All" (any value) by default."""
    return (
        variable.multi(True)
        .include_all(True)
        .all_value(".+")
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def _variable_query(query: str) -> dict[str, object]:
    return {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"}


def _overview() -> list[Any]:
    return [
        _stat(
            "Files processed",
            "All runs recorded in the database for the selected policies, whichever process "
            "made them (vpo_history_runs).",
            "short",
            f"sum(vpo_history_runs{{{SELP}}})",
        ),
        _stat(
            "Bytes saved",
            "Net bytes saved by all recorded runs of the selected policies; a run that grew a "
            "file counts negative (vpo_history_saved_bytes).",
            "decbytes",
            f"sum(vpo_history_saved_bytes{{{SELP}}})",
        ),
        _stat(
            "Success ratio",
            "Share of all recorded runs of the selected policies that succeeded.",
            "percentunit",
            f'sum(vpo_history_runs{{{SELP}, status="success"}}) / sum(vpo_history_runs{{{SELP}}})',
        ),
        _stat(
            "In progress",
            "Runs the scraped process has started and not yet finished.",
            "short",
            f"sum(vpo_files_in_progress{{{SEL}}})",
        ),
    ]


def _savings() -> list[Any]:
    return [
        _series(
            "Bytes saved by policy",
            "Input bytes minus output bytes of the runs finished in each interval, by policy "
            "(live counters of the scraped process).",
            "decbytes",
            [
                _query(
                    f"sum by (policy) (increase(vpo_file_input_bytes_total{{{SELP}}}[{RI}]))"
                    f" - sum by (policy) (increase(vpo_file_output_bytes_total{{{SELP}}}[{RI}]))",
                    "{{policy}}",
                )
            ],
            bars=True,
            stacked=True,
        ),
        _series(
            "Savings ratio",
            "Share of the input bytes removed by the runs, by policy (1 - output / input).",
            "percentunit",
            [
                _query(
                    f"1 - sum by (policy) (rate(vpo_file_output_bytes_total{{{SELP}}}[{RI}]))"
                    f" / sum by (policy) (rate(vpo_file_input_bytes_total{{{SELP}}}[{RI}]))",
                    "{{policy}}",
                )
            ],
        ),
        _series(
            "File size before and after",
            "Median and 95th percentile of file sizes before and after their run "
            "(vpo_file_size_bytes, stage before/after).",
            "decbytes",
            [
                _query(
                    f"histogram_quantile(0.5, sum by (le, stage) "
                    f"(rate(vpo_file_size_bytes_bucket{{{SELP}}}[{RI}])))",
                    "p50 {{stage}}",
                ),
                _query(
                    f"histogram_quantile(0.95, sum by (le, stage) "
                    f"(rate(vpo_file_size_bytes_bucket{{{SELP}}}[{RI}])))",
                    "p95 {{stage}}",
                ),
            ],
        ),
        _series(
            "Average file size before and after",
            "Mean file size before and after their run, by stage (sum / count).",
            "decbytes",
            [
                _query(
                    f"sum by (stage) (rate(vpo_file_size_bytes_sum{{{SELP}}}[{RI}]))"
                    f" / sum by (stage) (rate(vpo_file_size_bytes_count{{{SELP}}}[{RI}]))",
                    "{{stage}}",
                )
            ],
        ),
    ]


def _work() -> list[Any]:
    return [
        _series(
            "Runs per second by status",
            "File runs finished per second by the scraped process, success or failure.",
            "ops",
            [
                _query(
                    f"sum by (status) (rate(vpo_files_processed_total{{{SELP}}}[{RI}]))",
                    "{{status}}",
                )
            ],
            stacked=True,
        ),
        _series(
            "Run duration p50 / p95",
            "Wall time of a run, median and 95th percentile by policy. Exemplars (points) "
            "open the run's trace.",
            "s",
            [
                _query(
                    f"histogram_quantile(0.5, sum by (le, policy) "
                    f"(rate(vpo_processing_duration_seconds_bucket{{{SELP}}}[{RI}])))",
                    "p50 {{policy}}",
                ),
                _query(
                    f"histogram_quantile(0.95, sum by (le, policy) "
                    f"(rate(vpo_processing_duration_seconds_bucket{{{SELP}}}[{RI}])))",
                    "p95 {{policy}}",
                    exemplar=True,
                ),
            ],
        ),
        _series(
            "Phase durations",
            "Average wall time of each phase, by policy and phase.",
            "s",
            [
                _query(
                    f"sum by (policy, phase) (rate(vpo_phase_duration_seconds_sum{{{SELP}}}[{RI}]))"
                    f" / sum by (policy, phase) "
                    f"(rate(vpo_phase_duration_seconds_count{{{SELP}}}[{RI}]))",
                    "{{policy}} / {{phase}}",
                )
            ],
        ),
        _series(
            "Actions by type and status",
            "Actions carried out (success) or failed (failure) per second, by action type, "
            "track type and status.",
            "ops",
            [
                _query(
                    f"sum by (action_type, track_type, status) "
                    f"(rate(vpo_actions_total{{{SEL}}}[{RI}]))",
                    "{{action_type}} {{track_type}} {{status}}",
                )
            ],
            stacked=True,
        ),
        _series(
            "Tool time by action type",
            "Seconds of tool time per second, by action type (each tool call counted once; "
            "1 = one tool busy all the time).",
            "short",
            [
                _query(
                    f"sum by (action_type) (rate(vpo_action_duration_seconds_sum{{{SEL}}}[{RI}]))",
                    "{{action_type}}",
                )
            ],
            stacked=True,
        ),
        _series(
            "Tracks removed by type",
            "Tracks removed by the runs finished in each interval, by track type.",
            "short",
            [
                _query(
                    f"sum by (track_type) (increase(vpo_tracks_removed_total{{{SELP}}}[{RI}]))",
                    "{{track_type}}",
                )
            ],
            bars=True,
            stacked=True,
        ),
        _series(
            "Transcodes by outcome",
            "Transcode decisions in each interval, by kind (video/audio) and outcome "
            "(transcoded, skipped, preserved).",
            "short",
            [
                _query(
                    f"sum by (kind, outcome) (increase(vpo_transcodes_total{{{SELP}}}[{RI}]))",
                    "{{kind}} {{outcome}}",
                )
            ],
            bars=True,
            stacked=True,
        ),
        _series(
            "Encoding speed",
            "Average and median frames per second of video transcodes, by target codec.",
            "suffix: fps",
            [
                _query(
                    f"sum by (codec) (rate(vpo_encoding_fps_sum{{{SEL}}}[{RI}]))"
                    f" / sum by (codec) (rate(vpo_encoding_fps_count{{{SEL}}}[{RI}]))",
                    "mean {{codec}}",
                ),
                _query(
                    f"histogram_quantile(0.5, sum by (le, codec) "
                    f"(rate(vpo_encoding_fps_bucket{{{SEL}}}[{RI}])))",
                    "p50 {{codec}}",
                ),
            ],
        ),
        _series(
            "Tool disk I/O",
            "Bytes per second the tools read and wrote, as counted by the kernel.",
            "Bps",
            [
                _query(
                    f"sum by (direction) (rate(vpo_io_bytes_total{{{SEL}}}[{RI}]))",
                    "{{direction}}",
                )
            ],
            width=24,
        ),
    ]


def _workers() -> list[Any]:
    # The live metrics have no worker label: Prometheus's `instance` label names each
    # scraped VPO process, so a process that Prometheus does not scrape is not shown.
    return [
        _series(
            "Runs per second by instance and status",
            "File runs finished per second by each scraped VPO process (Prometheus's instance "
            "label), success or failure. Only processes whose /metrics Prometheus scrapes show.",
            "ops",
            [
                _query(
                    f"sum by (instance, status) (rate(vpo_files_processed_total{{{SELP}}}[{RI}]))",
                    "{{instance}} {{status}}",
                )
            ],
            width=8,
            stacked=True,
        ),
        _series(
            "Failures per second by instance",
            "File runs that failed per second, by scraped VPO process (instance); 0 for a "
            "process whose runs all succeeded.",
            "ops",
            [
                _query(
                    # `or 0 * …`: a process with runs and no failure has no failure series.
                    f"sum by (instance) "
                    f'(rate(vpo_files_processed_total{{{SELP}, status="failure"}}[{RI}]))'
                    f" or 0 * sum by (instance) (rate(vpo_files_processed_total{{{SELP}}}[{RI}]))",
                    "{{instance}}",
                )
            ],
            width=8,
        ),
        _series(
            "In progress by instance",
            "Runs each scraped VPO process (instance) has started and not yet finished.",
            "short",
            [_query(f"sum by (instance) (vpo_files_in_progress{{{SEL}}})", "{{instance}}")],
            width=8,
            stacked=True,
        ),
    ]


def _library() -> list[Any]:
    return [
        _bars(
            "Files by container",
            "Files in the library by container (from the database at scrape time).",
            "short",
            f"sum by (container) (vpo_library_files{{{SEL}}})",
            "{{container}}",
            width=8,
        ),
        _bars(
            "Tracks by type and codec",
            "Tracks in the library by track type and codec.",
            "short",
            f"sum by (track_type, codec) (vpo_library_tracks{{{SEL}}})",
            "{{track_type}} {{codec}}",
            width=8,
        ),
        _bars(
            "Video files by codec and resolution",
            "Files by the codec and resolution class of their first video track.",
            "short",
            f"sum by (video_codec, resolution) (vpo_library_video_files{{{SEL}}})",
            "{{video_codec}} {{resolution}}",
            width=8,
        ),
        _series(
            "Library size",
            "Total size of the files in the library.",
            "decbytes",
            [_query(f"sum(vpo_library_size_bytes{{{SEL}}})", "library")],
            width=8,
        ),
        _bars(
            "Recorded runs by policy and status",
            "All runs recorded in the database by policy and status, whichever process made them.",
            "short",
            f"sum by (policy, status) (vpo_history_runs{{{SELP}}})",
            "{{policy}} {{status}}",
            width=8,
        ),
        _series(
            "Bytes saved by policy, all time",
            "Net bytes saved by all recorded runs of each policy (a purge makes it dip).",
            "decbytes",
            [
                _query(
                    f"sum by (policy) (vpo_history_saved_bytes{{{SELP}}})",
                    "{{policy}}",
                )
            ],
            width=8,
        ),
    ]


ROWS = (
    ("Overview", _overview),
    ("Savings", _savings),
    ("Work", _work),
    ("Workers", _workers),
    ("Library", _library),
)


def build() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    builder = (
        dashboard.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Video Policy Orchestrator: what VPO is doing now (live metrics of the scraped "
            "process) and what it has done (history and library gauges read from its database)."
        )
        .tags(["vpo"])
        .editable()
        .timezone("browser")
        .time("now-24h", "now")
        .refresh("30s")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .variables(_variables())
    )
    panel_id = 0
    for title, panels in ROWS:
        panel_id += 1
        builder = builder.with_row(dashboard.Row(title).id(panel_id))
        for panel in panels():
            panel_id += 1
            builder = builder.with_panel(panel.id(panel_id))
    board = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # Post-processing: the SDK writes `"annotations": {}` when none are added; Grafana reads
    # `annotations.list` (and adds its built-in "Annotations & Alerts" query to it).
    board.setdefault("annotations", {}).setdefault("list", [])
    return board


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def expressions(board: dict[str, Any], variables: dict[str, str] | None = None) -> list[str]:
    """Every PromQL expression of the dashboard's panels and query variables, with the
    variables substituted (`DEFAULT_VARIABLES` and then `variables`); an unknown variable is
    an error."""
    values = {**DEFAULT_VARIABLES, **(variables or {})}

    def substitute(text: str) -> str:
        def one(found: re.Match[str]) -> str:
            name = found.group(1) or found.group(2)
            if name not in values:
                raise KeyError(f"no value for ${name} in {text!r}")
            return values[name]

        return _VARIABLE.sub(one, text)

    found: list[str] = []
    for panel in board.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if target.get("expr"):
                    found.append(substitute(target["expr"]))
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
            if inner:  # the series selector of label_values(SELECTOR, LABEL)
                found.append(substitute(inner.group(1)))
    return found


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUTPUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(build()), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
