"""The dashboard page of `vpo serve` (/stats) in a real headless Chromium (Debian's), against
live servers: what a person reads on it — cards in the page's units, charts with drawn
marks, tables (policies, workers), a run's detail, a file's runs — equals what the API answers; the time range
lives in the URL; a fresh or unreadable database says so; markup in user data stays text;
no request leaves 127.0.0.1; and desk and phone screenshots are kept as artifacts."""

import json
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, database_with_files
from tests.integration.test_server_api import (
    Server,
    processed,  # noqa: F401 - a fixture: sample media processed by two policies
    start_server,
)
from tests.recorded import RunSpec, record
from vpo.cli.output import human_duration, human_size
from vpo.db import open_database, transaction
from vpo.db.stats import insert_run
from vpo.db.workers import UNKNOWN_WORKER_LABEL

TRACE = "http://localhost:16686/trace/{trace_id}"
MARKUP_POLICY = "<img src=x onerror=alert(1)>"
MARKUP_PATH = "/library/<b>bold</b> & co.mkv"
MARKUP_WORKER = "<img src=x onerror=alert(1)>"
DESK = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}
CHARTS = ("saved", "runs", "policies", "tracks", "containers", "codecs", "resolutions", "workers")
TIMEOUT_MS = 15_000


# -- the units of the page, as documented (docs/cli.md: sizes in powers of 1024) -------------


def count(n: int) -> str:
    return f"{n:,}"


def expected_cards(s: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each card's value and detail line, written from a summary answer."""
    removed = (
        s["total_audio_removed"] + s["total_subtitles_removed"] + s["total_attachments_removed"]
    )
    return {
        "card-runs": (
            count(s["total_files_processed"]),
            f"{count(s['total_successful'])} successful · {count(s['total_failed'])} failed",
        ),
        "card-saved": (
            human_size(s["total_size_saved"]),
            f"{s['avg_savings_percent']:.1f}% of the size before",
        ),
        "card-tracks": (
            count(removed),
            f"{count(s['total_audio_removed'])} audio · {count(s['total_subtitles_removed'])} "
            f"subtitle · {count(s['total_attachments_removed'])} attachment",
        ),
        "card-transcoded": (
            count(s["total_videos_transcoded"]),
            f"{count(s['total_videos_skipped'])} skipped",
        ),
        "card-time": (
            human_duration(s["avg_processing_time"]) if s["total_files_processed"] else "—",
            f"{human_duration(s['total_processing_time'])} in all",
        ),
    }


def expected_workers(workers: list[dict[str, Any]]) -> list[list[str]]:
    """The worker table's cells, written from a /api/stats/workers answer."""
    return [
        [
            UNKNOWN_WORKER_LABEL if w["worker"] is None else w["worker"],
            count(w["runs"]),
            count(w["failures"]),
            human_size(w["total_size_saved"]),
            human_duration(w["busy_seconds"]),
            w["last_seen"][:16].replace("T", " "),
        ]
        for w in workers
    ]


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed (scripts/setup.sh installs it)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    """One page in a fresh browser context, with what it asked for and what it said."""

    page: Any
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def open(self, url: str, state: str = "ready") -> None:
        self.page.goto(url)
        self.wait(state)

    def wait(self, state: str = "ready") -> None:
        self.page.wait_for_selector(f"main[data-state={state}]", timeout=TIMEOUT_MS)

    def until(self, expression: str) -> None:
        """Wait until `expression` is true. Not wait_for_function: it evaluates a string
        with eval, which the page's CSP refuses (page.evaluate goes around the CSP)."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not self.page.evaluate(expression):
            assert time.monotonic() < deadline, f"never true: {expression}"
            self.page.wait_for_timeout(50)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()

    def workers(self) -> list[list[str]]:
        return self.page.eval_on_selector_all(
            "#worker-table tbody tr",
            "rows => rows.map(r => Array.from(r.cells, c => c.textContent))",
        )

    def cards(self) -> dict[str, tuple[str, str]]:
        return {
            card: (self.text(f"#{card} .value"), self.text(f"#{card} .detail"))
            for card in ("card-runs", "card-saved", "card-tracks", "card-transcoded", "card-time")
        }


@pytest.fixture
def tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Opens tabs (desk size unless asked); afterwards, none of them asked another host,
    met a dialog or logged an error (a CSP refusal is a console error)."""
    contexts = []
    tabs: list[Tab] = []

    def new(viewport: dict[str, int] = DESK, scheme: str = "light") -> Tab:
        context = browser.new_context(viewport=viewport, color_scheme=scheme)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        opened = Tab(page)
        page.on("request", lambda request: opened.requests.append(request.url))
        page.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
        page.on(
            "console",
            lambda message: (
                opened.console.append(message.text) if message.type == "error" else None
            ),
        )
        page.on("pageerror", lambda error: opened.console.append(str(error)))
        tabs.append(opened)
        return opened

    try:
        yield new
    finally:
        for context in contexts:
            context.close()
    for opened in tabs:
        hosts = {urllib.parse.urlsplit(url).hostname for url in opened.requests}
        assert hosts <= {"127.0.0.1", None}, opened.requests  # None: data: URLs
        assert opened.dialogs == []
        unexpected = [line for line in opened.console if "503" not in line]
        assert unexpected == [], opened.console


def charts_drawn(page: Any) -> dict[str, Any]:
    """Per chart: None when no chart is drawn there (its canvas hidden, no Chart object),
    else its data points and how many of its marks (bar or arc centres) show their
    dataset's colour on the canvas."""
    return page.evaluate(
        """(ids) => {
        const rgb = (css) => {
            const probe = document.createElement("canvas").getContext("2d");
            probe.fillStyle = css; probe.fillRect(0, 0, 1, 1);
            return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3));
        };
        const out = {};
        for (const id of ids) {
            const figure = document.getElementById("chart-" + id);
            const canvas = figure.querySelector("canvas");
            const chart = Chart.getChart(canvas);
            if (!chart) {
                out[id] = { drawn: null, hidden: canvas.offsetParent === null,
                    empty: figure.querySelector(".chart-empty").innerText };
                continue;
            }
            const context = canvas.getContext("2d");
            const ratio = chart.currentDevicePixelRatio;
            let marks = 0, points = 0, matching = 0;
            chart.data.datasets.forEach((dataset, d) => {
                chart.getDatasetMeta(d).data.forEach((element, i) => {
                    if (!dataset.data[i]) return;
                    points += 1;
                    const centre = element.getCenterPoint();
                    const pixel = context.getImageData(
                        Math.round(centre.x * ratio), Math.round(centre.y * ratio), 1, 1).data;
                    const colours = [].concat(dataset.backgroundColor);
                    const want = rgb(colours[i % colours.length]);
                    if (pixel[3] > 0) marks += 1;
                    if (want.every((v, k) => Math.abs(v - pixel[k]) <= 8)) matching += 1;
                });
            });
            let painted = 0;
            const all = context.getImageData(0, 0, canvas.width, canvas.height).data;
            for (let k = 3; k < all.length; k += 4) if (all[k] > 0) painted += 1;
            out[id] = { drawn: true, labels: chart.data.labels.length, points, marks, matching,
                painted, data: chart.data.datasets.map((d) => d.data) };
        }
        return out;
    }""",
        list(CHARTS),
    )


def assert_drawn(chart: dict[str, Any], name: str) -> None:
    assert chart["drawn"], (name, chart)
    assert chart["labels"] > 0 and chart["points"] > 0, (name, chart)
    assert chart["marks"] == chart["points"] == chart["matching"], (name, chart)
    assert chart["painted"] > 500, (name, chart)


# -- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(processed: Path) -> Iterator[Server]:  # noqa: F811
    """`vpo serve` over really processed samples, with a trace-link template."""
    served = start_server(processed, processed.parent, env={"VPO_TRACE_URL": TRACE})
    try:
        yield served
    finally:
        served.stop()


NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Runs at chosen past moments: 3 in the last day (one failed, none saving anything or
    removing a track) by the workers encoder-a (1) and encoder-b (2, the failed one), 4 of
    a policy named like markup 100 days ago (2 by a worker named like markup, 2 by no
    known worker), 2 two years ago (encoder-a); one file's path is markup too."""
    folder = tmp_path_factory.mktemp("timed")
    db = database_with_files(folder / "vpo.db", count=2)
    conn = open_database(db)
    try:
        with transaction(conn):
            conn.execute(
                "INSERT INTO files (id, path, size_bytes, mtime, scanned_at, container) "
                "VALUES (3, ?, 1, 1, 'x', 'mkv')",
                (MARKUP_PATH,),
            )
            for n in range(3):
                spec = RunSpec(
                    NOW - timedelta(hours=n + 1),
                    policy="tidy",
                    size_after=1_000_000,
                    success=n != 1,
                    file_id=3,
                    actions=1,
                    phases=2,
                    worker="encoder-a" if n == 0 else "encoder-b",
                )
                insert_run(conn, record(spec))
            for n in range(4):
                spec = RunSpec(
                    NOW - timedelta(days=100, hours=n),
                    policy=MARKUP_POLICY,
                    size_before=3_000_000,
                    size_after=1_000_000,
                    audio_removed=2,
                    subtitles_removed=1,
                    file_id=1 + n % 2,
                    worker=MARKUP_WORKER if n % 2 == 0 else None,
                )
                insert_run(conn, record(spec))
            for n in range(2):
                spec = RunSpec(
                    NOW - timedelta(days=730 + n),
                    policy="old",
                    transcoded=True,
                    worker="encoder-a",
                )
                insert_run(conn, record(spec))
    finally:
        conn.close()
    served = start_server(db, folder)
    try:
        yield served
    finally:
        served.stop()


def api(server: Server, path: str) -> Any:
    status, data, body = server.get(path)
    assert status == 200, body
    return data


# -- the page over really processed media ------------------------------------------------------


def test_the_page_is_served_with_a_strict_csp_and_root_redirects(real: Server) -> None:
    status, _data, body, headers = real.request("/")  # urllib follows the redirect
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "http" not in csp
    assert "<script>" not in body.replace("\n", "")  # no inline script: only src=
    assert 'data-trace-url="http://localhost:16686/trace/{trace_id}"' in body
    assert 'data-state="loading"' in body and "Loading…" in body  # until the script has read
    status, _data, script, headers = real.request("/static/vendor/chart.umd.min.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert script.startswith("/*!\n * Chart.js v4.")
    status, data, _body = real.get("/static/../pages.py")
    assert status == 404 and set(data) == {"error"}


def test_cards_show_the_summary_and_charts_draw_it(
    real: Server, tab: Callable[..., Tab], tmp_path_factory: pytest.TempPathFactory
) -> None:
    desk = tab(DESK)
    desk.open(real.url + "/stats?range=all")
    summary = api(real, "/api/stats/summary")
    assert summary["total_files_processed"] == 10
    assert desk.cards() == expected_cards(summary)
    drawn = charts_drawn(desk.page)
    for name in CHARTS:
        assert_drawn(drawn[name], name)
    trends = api(real, "/api/stats/trends")["trends"]
    assert drawn["runs"]["data"] == [
        [t["successes"] for t in trends],
        [t["failures"] for t in trends],
    ]
    policies = api(real, "/api/stats/policies")["policies"]
    assert sorted(drawn["policies"]["data"][0]) == sorted(p["total_size_saved"] for p in policies)
    composition = api(real, "/api/library/composition")
    assert sorted(drawn["containers"]["data"][0]) == sorted(composition["containers"].values())
    workers = api(real, "/api/stats/workers")["workers"]
    assert drawn["workers"]["data"] == [
        [w["successes"] for w in workers],
        [w["failures"] for w in workers],
    ]
    assert desk.workers() == expected_workers(workers)
    # The default range (30 d) holds every run here too, and so says the same.
    default = tab(DESK)
    default.open(real.url + "/stats")
    assert default.page.locator(".ranges a[aria-current=page]").inner_text() == "30 d"
    assert default.cards() == expected_cards(api(real, "/api/stats/summary?since=30d"))
    # Artifacts: desk and phone screenshots, light and dark.
    shots = tmp_path_factory.mktemp("dashboard-screenshots")
    desk.page.screenshot(path=shots / "desk.png", full_page=True)
    phone = tab(PHONE, scheme="dark")
    phone.open(real.url + "/stats?range=all")
    assert phone.cards() == expected_cards(summary)
    lefts = phone.page.eval_on_selector_all(
        ".card, .chart", "nodes => nodes.map(n => Math.round(n.getBoundingClientRect().left))"
    )
    assert len(set(lefts)) == 1, lefts  # one column
    overflow = phone.page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"], overflow
    phone.page.screenshot(path=shots / "phone-dark.png", full_page=True)
    print(f"dashboard screenshots: {shots}")
    assert (shots / "desk.png").stat().st_size > 20_000


SIZES = [0, 1, 1023, 1024, 1075, 1126, 1_048_524, 1_048_576, 1_310_720, 1_363_149, -2_621_440]
SIZES += [int(1024**3 * 999.95), 5 * 1024**5, 3 * 1024**6]
DURATIONS = [0.0, 0.05, 0.25, 1.25, 59.94, 59.96, 90.5, 91.5, 3600, 3661, 90_061, 10**6]


def test_the_page_units_are_those_of_the_command_line(
    real: Server, tab: Callable[..., Tab]
) -> None:
    """Exact halves included: Python rounds them to even, the page must too."""
    page = tab()
    page.open(real.url + "/stats")
    units = page.page.evaluate(
        """([sizes, durations]) => ({
            sizes: sizes.map(window.vpoUnits.humanSize),
            durations: durations.map(window.vpoUnits.humanDuration),
            percents: [0.25, 12.75, 49.65, -3.25, 100].map(window.vpoUnits.percent),
        })""",
        [SIZES, DURATIONS],
    )
    assert units["sizes"] == [human_size(n) for n in SIZES]
    assert units["durations"] == [human_duration(s) for s in DURATIONS]
    assert units["percents"] == [f"{p:.1f}%" for p in (0.25, 12.75, 49.65, -3.25, 100)]


def test_the_policy_table_lists_and_sorts_the_policies(
    real: Server, tab: Callable[..., Tab]
) -> None:
    page = tab()
    page.open(real.url + "/stats?range=all")
    policies = api(real, "/api/stats/policies")["policies"]

    def names() -> list[str]:
        return page.page.eval_on_selector_all(
            "#policy-table tbody tr td:first-child", "cells => cells.map(c => c.textContent)"
        )

    assert sorted(names()) == sorted(p["policy_name"] for p in policies)
    page.page.click("#policy-table button[data-sort=policy_name]")
    assert names() == sorted(p["policy_name"] for p in policies)
    page.page.click("#policy-table button[data-sort=policy_name]")
    assert names() == sorted((p["policy_name"] for p in policies), reverse=True)
    page.page.click("#policy-table button[data-sort=total_size_saved]")
    by_saved = sorted(policies, key=lambda p: p["total_size_saved"], reverse=True)
    assert names() == [p["policy_name"] for p in by_saved]
    first = page.page.locator("#policy-table tbody tr").first.locator("td").nth(3).inner_text()
    assert first == human_size(by_saved[0]["total_size_saved"])


def test_a_run_opens_with_its_actions_phases_and_trace_link(
    real: Server, tab: Callable[..., Tab]
) -> None:
    page = tab()
    page.open(real.url + "/stats?range=all")
    items = api(real, "/api/stats/recent?limit=20")["items"]
    rows = page.page.locator("#recent-table tbody tr")
    assert rows.count() == len(items) == 10
    details = [api(real, f"/api/stats/{item['stats_id']}") for item in items]
    run = max(details, key=lambda d: len(d["action_results"]))
    assert run["action_results"] and run["performance_metrics"] and run["trace_id"]
    page.page.click(f"#recent-table tr[data-stats-id='{run['stats_id']}']")
    page.page.wait_for_selector("#run-detail[data-state=ready]")
    body = page.text("#run-body")
    assert run["file_path"] in body and run["policy_name"] in body and run["stats_id"] in body
    tables = page.page.locator("#run-body table")
    phases, actions = tables.nth(0), tables.nth(1)
    assert phases.locator("tbody tr").count() == len(run["performance_metrics"])
    assert actions.locator("tbody tr").count() == len(run["action_results"])
    first_phase = run["performance_metrics"][0]["phase_name"]
    assert phases.locator("tbody tr").first.locator("td").first.inner_text() == first_phase
    first_action = run["action_results"][0]["action_type"]
    assert actions.locator("tbody tr").first.locator("td").first.inner_text() == first_action
    link = page.page.locator("#trace-link")
    assert link.get_attribute("href") == TRACE.format(trace_id=run["trace_id"])
    page.page.click("#run-close")
    assert not page.page.locator("#run-detail").is_visible()


def test_the_file_view_finds_a_path_and_lists_its_runs(
    real: Server, tab: Callable[..., Tab]
) -> None:
    page = tab()
    page.open(real.url + "/stats?range=all")
    found = api(real, "/api/library/files?path=MULTILANG")["files"]
    assert len(found) == 1
    history = api(real, f"/api/stats/files/{found[0]['file_id']}?limit=50")["history"]
    page.page.fill("#file-path", "MULTILANG")
    page.page.click("#file-search button[type=submit]")
    page.page.wait_for_selector("#file-runs:not([hidden])")
    assert page.text("#file-title") == found[0]["file_path"]
    rows = page.page.locator("#file-runs tbody tr")
    assert rows.count() == len(history) == found[0]["runs"] == 2
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.statsId)")
    assert shown == [run["stats_id"] for run in history]  # newest first
    page.page.fill("#file-path", "no-such-file")
    page.page.click("#file-search button[type=submit]")
    page.until("document.getElementById('file-status').textContent.startsWith('No file')")
    assert page.page.locator("#file-results li").count() == 0


# -- runs at controlled moments -----------------------------------------------------------------


def test_the_range_changes_the_cards_and_the_url_and_a_reload_keeps_it(
    timed: Server, tab: Callable[..., Tab]
) -> None:
    page = tab()
    page.open(timed.url + "/stats?range=24h")
    assert page.cards()["card-runs"] == ("3", "2 successful · 1 failed")
    assert page.page.locator("#recent-table tbody tr").count() == 3  # the range's runs only
    assert page.cards() == expected_cards(api(timed, "/api/stats/summary?since=24h"))
    for name, runs in (("all", "9"), ("365d", "7"), ("7d", "3")):
        page.page.click(f".ranges a[data-range='{name}']")
        page.page.wait_for_url(f"**/stats?range={name}")
        page.wait()
        assert page.text("#card-runs .value") == runs, name
        assert page.page.locator("#recent-table tbody tr").count() == int(runs), name
    page.page.click(".ranges a[data-range='365d']")
    page.until("document.querySelector('#card-runs .value').textContent === '7'")
    page.wait()
    page.page.reload()
    page.wait()
    assert page.page.url.endswith("/stats?range=365d")
    assert page.page.locator(".ranges a[aria-current=page]").inner_text() == "365 d"
    assert page.cards() == expected_cards(api(timed, "/api/stats/summary?since=365d"))
    page.page.go_back()
    page.until("document.querySelector('#card-runs .value').textContent === '3'")
    assert page.page.url.endswith("/stats?range=7d")
    # An unknown range shows the default and says so; the address is corrected.
    page.open(timed.url + "/stats?range=%3Cb%3Efortnight")
    assert "There is no time range “<b>fortnight”" in page.text(".notice")
    assert page.page.url.endswith("/stats?range=30d")


def test_charts_without_data_draw_nothing_and_say_so(
    timed: Server, tab: Callable[..., Tab]
) -> None:
    """The last day's runs saved nothing and removed no track: those charts stay empty."""
    page = tab()
    page.open(timed.url + "/stats?range=24h")
    drawn = charts_drawn(page.page)
    for name in ("saved", "policies", "tracks"):
        assert drawn[name]["drawn"] is None and drawn[name]["hidden"], (name, drawn[name])
        assert drawn[name]["empty"].startswith("No "), drawn[name]
    assert_drawn(drawn["runs"], "runs")
    succeeded, failed = drawn["runs"]["data"]  # one day, or two if midnight UTC fell between
    assert (sum(succeeded), sum(failed)) == (2, 1)
    page.page.click(".ranges a[data-range='all']")
    page.page.wait_for_url("**/stats?range=all")
    page.wait()
    drawn = charts_drawn(page.page)
    for name in ("saved", "policies", "tracks"):
        assert_drawn(drawn[name], name)


def test_the_workers_section_shows_the_workers_of_the_range(
    timed: Server, tab: Callable[..., Tab]
) -> None:
    page = tab()
    page.open(timed.url + "/stats?range=24h")
    workers = api(timed, "/api/stats/workers?since=24h")["workers"]
    assert [(w["worker"], w["runs"], w["failures"]) for w in workers] == [
        ("encoder-a", 1, 0),
        ("encoder-b", 2, 1),
    ]
    assert page.workers() == expected_workers(workers)
    assert page.page.locator("#worker-table tbody td.failed").all_inner_texts() == ["1"]
    drawn = charts_drawn(page.page)["workers"]
    assert_drawn(drawn, "workers")
    assert drawn["labels"] == 2 and drawn["data"] == [[1, 1], [0, 1]]  # succeeded, failed
    # All time: the worker named like markup, and the runs of no known worker, last.
    page.page.click(".ranges a[data-range='all']")
    page.page.wait_for_url("**/stats?range=all")
    page.wait()
    workers = api(timed, "/api/stats/workers")["workers"]
    assert [w["worker"] for w in workers] == [MARKUP_WORKER, "encoder-a", "encoder-b", None]
    shown = page.workers()
    assert shown == expected_workers(workers)
    assert shown[0][0] == MARKUP_WORKER and shown[-1][0] == "(unknown)"
    assert shown[0][3] == human_size(4_000_000)  # 2 runs of 3 MB → 1 MB, in KiB/MiB
    drawn = charts_drawn(page.page)["workers"]
    assert_drawn(drawn, "workers")
    assert drawn["data"] == [[w["successes"] for w in workers], [w["failures"] for w in workers]]
    labels = page.page.evaluate(
        "Chart.getChart(document.querySelector('#chart-workers canvas')).data.labels"
    )
    assert labels == [MARKUP_WORKER, "encoder-a", "encoder-b", "(unknown)"]
    assert page.page.locator("main img").count() == 0  # the markup stayed text


def test_markup_in_a_policy_name_or_path_stays_text(timed: Server, tab: Callable[..., Tab]) -> None:
    page = tab()
    page.open(timed.url + "/stats?range=all")
    cells = page.page.eval_on_selector_all(
        "#policy-table tbody td:first-child", "cells => cells.map(c => c.textContent)"
    )
    assert MARKUP_POLICY in cells
    assert MARKUP_WORKER in [row[0] for row in page.workers()]
    assert MARKUP_PATH in page.text("#recent-table tbody")
    assert page.page.locator("main img, main b").count() == 0
    page.page.click("#policy-table button[data-sort=policy_name]")  # re-rendered, still text
    assert page.page.locator("main img").count() == 0
    # The failed-only toggle lists the failed run; its detail shows the error in full.
    page.page.check("#failed-only")
    page.until("document.querySelectorAll('#recent-table tbody tr').length === 1")
    assert page.text("#recent-table tbody td.failed") == "failed"
    page.page.click("#recent-table tbody tr")
    page.page.wait_for_selector("#run-detail[data-state=ready]")
    assert page.text("#run-body .run-error") == "ffmpeg exited with status 1"
    assert MARKUP_PATH in page.text("#run-body")
    assert page.page.locator("#trace-link").count() == 0  # no VPO_TRACE_URL on this server


def test_the_file_search_api_matches_plain_sql(timed: Server) -> None:
    for text in ("LIBRARY", "<b>", "file-1", "%", "_", "/"):
        answer = api(timed, "/api/library/files?" + urllib.parse.urlencode({"path": text}))
        conn = sqlite3.connect(timed.db)
        try:
            rows = conn.execute(
                "SELECT id, path, (SELECT count(*) FROM processing_stats WHERE file_id = files.id) "
                "FROM files WHERE lower(path) LIKE '%' || lower(?) || '%' ESCAPE '\\' "
                "ORDER BY path LIMIT 20",
                (text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),),
            ).fetchall()
        finally:
            conn.close()
        got = [(f["file_id"], f["file_path"], f["runs"]) for f in answer["files"]]
        assert got == [tuple(row) for row in rows], text
    assert [f["file_id"] for f in api(timed, "/api/library/files?path=mkv&limit=2")["files"]] == [
        3,
        1,
    ]
    for bad in ("path=", "path=%20%20", "path=" + "a" * 1025, "limit=3", "path=a&limit=101"):
        status, data, body = timed.get("/api/library/files?" + bad)
        assert status == 400 and set(data) == {"error"}, (bad, body)


def test_recent_runs_can_be_only_the_failed_ones(timed: Server) -> None:
    """The API side of the Failed-only switch: `failed_only` (with `success_only`, 400)."""
    failed = api(timed, "/api/stats/recent?failed_only=true&limit=100")["items"]
    assert [run["success"] for run in failed] == [False]
    assert failed[0]["error_message"] == "ffmpeg exited with status 1"
    everything = api(timed, "/api/stats/recent?failed_only=false&limit=100")["items"]
    assert len(everything) == 9
    status, data, body = timed.get("/api/stats/recent?failed_only=true&success_only=true")
    assert status == 400 and "cannot both" in data["error"], body
    status, data, body = timed.get("/api/stats/recent?failed_only=perhaps")
    assert status == 400 and set(data) == {"error"}, body


# -- a fresh database and an unreadable one ------------------------------------------------------


def test_a_fresh_database_shows_how_to_get_a_first_run(
    tmp_path: Path, tab: Callable[..., Tab]
) -> None:
    db = tmp_path / "vpo.db"
    open_database(db).close()
    served = start_server(db, tmp_path)
    try:
        page = tab(PHONE)
        page.open(served.url + "/stats", state="empty")
        assert page.page.locator("#empty").is_visible()
        assert "vpo process --policy FILE DIR" in page.text("#empty")
        assert not page.page.locator("#figures").is_visible()
        assert page.page.evaluate("Chart.getChart(document.querySelector('canvas'))") is None
        workers = page.page.locator("#chart-workers .chart-empty")
        assert workers.text_content() == "No runs in this time range."
        assert workers.get_attribute("hidden") is None  # shown once the figures are
        assert (
            page.page.evaluate("Chart.getChart(document.querySelector('#chart-workers canvas'))")
            is None
        )
        assert page.page.locator("#worker-table tbody tr").count() == 0
    finally:
        served.stop()


def test_an_unreadable_database_shows_the_error_and_retry_recovers(
    tmp_path: Path, tab: Callable[..., Tab]
) -> None:
    db = database_with_files(tmp_path / "vpo.db")
    conn = open_database(db)
    try:
        with transaction(conn):
            insert_run(conn, record(RunSpec(NOW - timedelta(hours=2))))
    finally:
        conn.close()
    served = start_server(db, tmp_path)
    saved = db.read_bytes()
    try:
        db.write_bytes(b"not a database" * 100)
        page = tab()
        page.open(served.url + "/stats", state="error")
        assert page.page.locator("#error").is_visible()
        text = page.text("#error")
        assert "could not be loaded" in text and "cannot be read" in text and "503" in text
        db.write_bytes(saved)
        page.page.click("#retry")
        page.wait()
        assert not page.page.locator("#error").is_visible()
        assert page.text("#card-runs .value") == "1"
    finally:
        db.write_bytes(saved)
        served.stop()


def test_the_openapi_document_lists_the_pages(real: Server) -> None:
    document = json.loads(real.get("/api/openapi.json")[2])
    stats = document["paths"]["/stats"]["get"]
    assert "text/html" in stats["responses"]["200"]["content"]
    (range_param,) = stats["parameters"]
    assert range_param["schema"]["enum"] == ["24h", "7d", "30d", "90d", "365d", "all"]
    assert "/static/{name}" in document["paths"] and "/api/library/files" in document["paths"]
