"""The dashboard page (`/stats`) of `vpo serve` at 1,000,000 runs: its first load in Chromium.

The database is the one of benchmarks/bench_server.py (`prepare`: filled once by
`bench_stats._bulk_fill`, migrated by VPO, kept under /tmp/vpo-bench-server/). For each
time range a real `vpo --db DB serve --port 0` is started and Debian's headless Chromium
(/usr/bin/chromium, driven by Playwright) loads `/stats?range=R`:

- the very first load after the server started (its answers are not cached yet, its
  SQLite connections are new);
- `--repeat` cold loads, each in a fresh browser context (an empty HTTP cache: the HTML,
  scripts and stylesheet all come over the wire);
- `--repeat` warm reloads in the last of those contexts (the page's files revalidated
  by ETag, 304).

Everything is measured inside the page with the Performance API, in milliseconds from the
start of the navigation: time to first byte and DOMContentLoaded (navigation timing), the
cards filled and all charts drawn (the marks `vpo:cards` and `vpo:charts` that
static/dashboard.js sets), and the next animation frame after the page said it was ready.
The bytes come from the navigation and resource timing entries (transferSize: on the
wire, headers included; encodedBodySize / decodedBodySize: the body as sent and as
decoded — equal when nothing is compressed), per type: HTML, JS, CSS, JSON API. Each API
call's time (request start to last byte) shows which one holds the page up.

Target (docs/benchmarks.md, issue #12): cards and charts within 1 s on loopback. The
figures are printed, never asserted.
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.helpers

from tests.helpers import CHROMIUM, CHROMIUM_ARGS

from _common import drop_page_cache
from bench_server import Server, prepare

VIEWPORT = {"width": 1920, "height": 1080}
TARGET_MS = 1000.0
TIMEOUT_MS = 120_000
SETTLED = "main[data-state=ready], main[data-state=empty], main[data-state=error]"
FIGURES = (  # (key, label)
    ("ttfb", "first byte"),
    ("dcl", "DOMContentLoaded"),
    ("api_start", "first API request"),
    ("api_end", "last API answer"),
    ("cards", "cards filled"),
    ("charts", "charts drawn"),
    ("frame", "next frame"),
)
TYPES = ("HTML", "JS", "CSS", "JSON API")

# Installed before the page's own scripts (by the DevTools protocol, so the page's CSP does
# not apply): the first animation frame after the page says it is ready.
FRAME_WATCH = """
new MutationObserver((changes, observer) => {
  const main = document.getElementById("dashboard");
  if (main && main.dataset.state !== "loading") {
    observer.disconnect();
    requestAnimationFrame(() => { window.__vpoFrame = performance.now(); });
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
"""

COLLECT = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const mark = (name) => {
    const found = performance.getEntriesByName(name, "mark");
    return found.length ? found[found.length - 1].startTime : null;
  };
  const entry = (e) => ({
    name: e.name,
    start: e.startTime,
    requestStart: e.requestStart,
    responseStart: e.responseStart,
    end: e.responseEnd,
    transfer: e.transferSize,
    encoded: e.encodedBodySize,
    decoded: e.decodedBodySize,
  });
  const canvases = Array.from(document.querySelectorAll("#figures canvas"));
  return {
    state: document.getElementById("dashboard").dataset.state,
    ttfb: nav.responseStart,
    dcl: nav.domContentLoadedEventEnd,
    cards: mark("vpo:cards"),
    charts: mark("vpo:charts"),
    frame: window.__vpoFrame === undefined ? null : window.__vpoFrame,
    drawn: canvases.filter((c) => typeof Chart !== "undefined" && Chart.getChart(c)).length,
    canvases: canvases.length,
    resources: [entry(nav), ...performance.getEntriesByType("resource").map(entry)],
  };
}
"""


# -- one load -----------------------------------------------------------------------------


def kind(url: str) -> str:
    path = urlsplit(url).path
    if path.startswith("/api/"):
        return "JSON API"
    if path.endswith(".js"):
        return "JS"
    if path.endswith(".css"):
        return "CSS"
    return "HTML"


def endpoint(url: str) -> str:
    return urlsplit(url).path


def settle(page: Any) -> dict[str, Any]:
    """Wait for the page to be ready (or to say why not), then read its timings."""
    page.wait_for_selector(SETTLED, timeout=TIMEOUT_MS)
    deadline = time.monotonic() + 5
    figures = page.evaluate(COLLECT)
    while figures["frame"] is None and time.monotonic() < deadline:
        page.wait_for_timeout(20)
        figures = page.evaluate(COLLECT)
    if figures["state"] != "ready":
        raise SystemExit(f"the page did not get ready: data-state={figures['state']}")
    if figures["cards"] is None or figures["charts"] is None:
        raise SystemExit(
            "no vpo:cards / vpo:charts mark: is static/dashboard.js the one with them?"
        )
    calls = [e for e in figures["resources"] if kind(e["name"]) == "JSON API"]
    figures["api_start"] = min((e["start"] for e in calls), default=None)
    figures["api_end"] = max((e["end"] for e in calls), default=None)
    return figures


def cold_load(browser: Any, url: str) -> tuple[dict[str, Any], Any]:
    """`url` in a fresh context (empty HTTP cache); the context is returned open."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(FRAME_WATCH)
    page = context.new_page()
    page.goto(url, wait_until="commit", timeout=TIMEOUT_MS)
    return settle(page), context


def warm_reload(context: Any) -> dict[str, Any]:
    page = context.pages[0]
    page.reload(wait_until="commit", timeout=TIMEOUT_MS)
    return settle(page)


# -- figures ------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def timing_cells(loads: list[dict[str, Any]]) -> list[str]:
    """`median / max` of each figure over `loads` (just the value for one load)."""
    cells = []
    for key, _ in FIGURES:
        values = [load[key] for load in loads if load[key] is not None]
        if not values:
            cells.append("—")
        elif len(values) == 1:
            cells.append(fmt(values[0]))
        else:
            cells.append(f"{fmt(statistics.median(values))} / {fmt(max(values))}")
    return cells


def byte_totals(load: dict[str, Any]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {
        t: {"files": 0, "transfer": 0, "encoded": 0, "decoded": 0} for t in TYPES
    }
    for entry in load["resources"]:
        row = totals[kind(entry["name"])]
        row["files"] += 1
        for key in ("transfer", "encoded", "decoded"):
            row[key] += entry[key]
    return totals


def api_times(loads: list[dict[str, Any]]) -> dict[str, list[tuple[float, float, float]]]:
    """Per API path: (request start → last byte, waiting for the first byte, end) of each
    load, in ms."""
    found: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for load in loads:
        for entry in load["resources"]:
            if kind(entry["name"]) == "JSON API":
                found[endpoint(entry["name"])].append(
                    (
                        entry["end"] - entry["start"],
                        entry["responseStart"] - entry["requestStart"],
                        entry["end"],
                    )
                )
    return found


def print_api(label: str, loads: list[dict[str, Any]]) -> None:
    print(f"  API calls, {label} (ms from the request to its last byte; waiting; ended at):")
    for path, times in sorted(api_times(loads).items()):
        total = [t[0] for t in times]
        wait = [t[1] for t in times]
        end = [t[2] for t in times]
        if len(times) == 1:
            print(f"    {path:<28} {total[0]:7.1f}   wait {wait[0]:7.1f}   ended {end[0]:7.1f}")
        else:
            print(
                f"    {path:<28} median {statistics.median(total):7.1f} max {max(total):7.1f}"
                f"   wait median {statistics.median(wait):7.1f}"
                f"   ended median {statistics.median(end):7.1f}"
            )


def chromium_version() -> str:
    try:
        out = subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="cold loads and warm reloads")
    parser.add_argument(
        "--ranges", default="30d,all,24h", help="comma-separated ?range= values (30d first)"
    )
    parser.add_argument("--no-actions", action="store_true", help="fill no action rows")
    parser.add_argument("--fresh", action="store_true", help="refill the database")
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="drop the kernel's page cache before each server start (root; slows others)",
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is needed (Debian package chromium)")
    print(
        f"machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
        f"sqlite {sqlite3.sqlite_version}; {chromium_version()}; "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    db = prepare(args.runs, not args.no_actions, args.fresh)
    ranges = [r.strip() for r in args.ranges.split(",") if r.strip()]

    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            print(f"browser: {browser.version}, viewport {VIEWPORT['width']}x{VIEWPORT['height']}")
            for chosen in ranges:
                if args.drop_caches and not drop_page_cache():
                    print("  (the page cache could not be dropped: not root)")
                server = Server(db)
                url = f"{server.base}/stats?range={chosen}"
                try:
                    first, context = cold_load(browser, url)
                    context.close()
                    cold = []
                    context = None
                    for _ in range(args.repeat):
                        if context is not None:
                            context.close()
                        load, context = cold_load(browser, url)
                        cold.append(load)
                    warm = [warm_reload(context) for _ in range(args.repeat)]
                    context.close()
                finally:
                    server.stop()
                results[chosen] = {"first": [first], "cold": cold, "warm": warm}
                report_range(chosen, url, results[chosen])
        finally:
            browser.close()

    print()
    print("| range | load | " + " | ".join(name for _, name in FIGURES) + " |")
    print("|---|---|" + "---|" * len(FIGURES))
    for chosen, loads in results.items():
        for label, key in (
            ("very first after start", "first"),
            (f"cold, median / max of {args.repeat}", "cold"),
            (f"warm reload, median / max of {args.repeat}", "warm"),
        ):
            print(f"| {chosen} | {label} | " + " | ".join(timing_cells(loads[key])) + " |")
    print()
    any_range = next(iter(results.values()))
    totals = byte_totals(any_range["cold"][0])
    warm_totals = byte_totals(any_range["warm"][0])
    print("| type | files | on the wire (cold) | body as sent | decoded | on the wire (warm) |")
    print("|---|---|---|---|---|---|")
    for t in TYPES:
        row = totals[t]
        print(
            f"| {t} | {row['files']} | {row['transfer']:,} B | {row['encoded']:,} B | "
            f"{row['decoded']:,} B | {warm_totals[t]['transfer']:,} B |"
        )
    page_bytes = sum(totals[t]["transfer"] for t in ("HTML", "JS", "CSS"))
    print(f"| HTML + JS + CSS | | {page_bytes:,} B | | | |")
    compressed = any(
        e["encoded"] != e["decoded"] for load in any_range["cold"] for e in load["resources"]
    )
    print(f"compression: {'used' if compressed else 'none (encoded == decoded body sizes)'}")
    print()
    for chosen, loads in results.items():
        cold_charts = [load["charts"] for load in loads["cold"]]
        first_charts = loads["first"][0]["charts"]
        worst = max(cold_charts)
        print(
            f"target <= {TARGET_MS:,.0f} ms to charts drawn, {chosen}: cold "
            f"{'met' if worst <= TARGET_MS else 'NOT met'} (median "
            f"{statistics.median(cold_charts):,.0f} ms, max {worst:,.0f} ms); very first "
            f"after start {'met' if first_charts <= TARGET_MS else 'NOT met'} "
            f"({first_charts:,.0f} ms)"
        )


def report_range(chosen: str, url: str, loads: dict[str, list[dict[str, Any]]]) -> None:
    print(f"range {chosen}: {url}")
    first = loads["first"][0]
    print(f"  charts drawn on {first['drawn']} of {first['canvases']} canvases")
    for label, key in (("very first", "first"), ("cold", "cold"), ("warm", "warm")):
        cells = timing_cells(loads[key])
        shown = "   ".join(f"{name} {cell}" for (_, name), cell in zip(FIGURES, cells, strict=True))
        print(f"  {label:<10} {shown}  (ms; median / max)")
    print_api("very first load", loads["first"])
    print_api("cold loads", loads["cold"])


if __name__ == "__main__":
    main()
