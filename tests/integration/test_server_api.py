"""`vpo serve` as a real process on a loopback port, against a database filled by real
processing of the sample media: every endpoint answers what `vpo stats … --format json`
prints for the same question, errors are JSON with the right status, /healthz and
/metrics (parsed, and `promtool check metrics` clean), and SIGTERM stops it with exit 0."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import assert_statistics_exact, database_with_files, invoke, query
from tests.recorded import EPOCH, RunSpec, days, record
from vpo.db import open_database, transaction
from vpo.db.aggregates import trends
from vpo.db.stats import insert_run
from vpo.timefmt import format_utc

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"
START_TIMEOUT = 20.0
ANY_HOST = "0.0.0.0"  # noqa: S104 - the warning for it is what is tested


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    db: Path
    lines: list[str] = field(default_factory=list)  # stderr after "Serving on", as read
    _drain: threading.Thread | None = None

    def drain(self) -> None:
        """Read stderr in the background: a chatty server never blocks on a full pipe."""
        assert self.process.stderr is not None
        stream = self.process.stderr
        self._drain = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._drain.start()

    def log(self) -> str:
        """Everything the server wrote on stderr since it started serving (all of it
        once it has exited)."""
        if self._drain is not None and self.process.poll() is not None:
            self._drain.join(timeout=10)
        return "".join(self.lines)

    def get(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[int, Any, str]:
        """Status, parsed JSON (None when not JSON) and raw text of one request."""
        status, data, body, _headers = self.request(path, method, headers)
        return status, data, body

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[int, Any, str, Any]:
        """As `get`, with the response headers."""
        request = urllib.request.Request(  # noqa: S310 - http on loopback
            self.url + path, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                status, body = response.status, response.read().decode()
                answer_headers = response.headers
        except urllib.error.HTTPError as exc:
            status, body, answer_headers = exc.code, exc.read().decode(), exc.headers
        content_type = answer_headers.get("Content-Type", "")
        data = json.loads(body) if content_type.startswith("application/json") else None
        return status, data, body, answer_headers

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


def start_server(
    db: Path,
    cwd: Path,
    token: str | None = None,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Server:
    """`vpo serve --port 0 OPTIONS` in `cwd`, with `VPO_API_TOKEN` set to `token` (unset
    without one) and `env` added to its environment (`VPO_TRACE_URL` only from there);
    the address is read from its "Serving on" line."""
    unset = ("VPO_API_TOKEN", "VPO_TRACE_URL")
    env = {**{k: v for k, v in os.environ.items() if k not in unset}, **(env or {})}
    if token is not None:
        env["VPO_API_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "vpo", "--db", str(db), "serve", "--port", "0", *options],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + START_TIMEOUT
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        found = re.match(r"Serving on (http://\S+)", line)
        if found:
            served = Server(process, found.group(1), db)
            served.drain()
            return served
    process.kill()
    raise AssertionError(f"vpo serve did not start: {process.stderr.read()}")


def cli_json(db: Path, *args: str) -> Any:
    result = invoke("--db", db, "stats", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sample media made and processed by two policies with the real tools."""
    folder = tmp_path_factory.mktemp("served")
    library, db = folder / "library", folder / "vpo.db"
    assert invoke("samples", "make", library).exit_code == 0
    for policy in ("cleanup-organize.yaml", "language-cleanup.yaml"):
        result = invoke("--db", db, "process", "--policy", EXAMPLES / policy, library)
        assert result.exit_code == 0, result.output
    return db


@pytest.fixture(scope="module")
def server(processed: Path) -> Iterator[Server]:
    served = start_server(processed, processed.parent)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def synthetic(tmp_path: Path) -> Iterator[Server]:
    """A server over two recorded runs whose ids share the prefix `abcdef12`."""
    db = database_with_files(tmp_path / "vpo.db")
    conn = open_database(db)
    try:
        with transaction(conn):
            for n, suffix in enumerate(
                ("0000-4000-8000-000000000001", "1111-4000-8000-000000000002")
            ):
                run = replace(record(RunSpec(EPOCH + days(n))), id=f"abcdef12-{suffix}")
                insert_run(conn, run)
    finally:
        conn.close()
    served = start_server(db, tmp_path)
    try:
        yield served
    finally:
        served.stop()


def ok(server: Server, path: str) -> Any:
    status, data, body = server.get(path)
    assert status == 200, body
    return data


# -- the same answers as the command line ----------------------------------------------------


def _rolling_unstamped(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with the rolling periods' start moments left out: `7d` starts seven
    days before the moment of the question, which differs between two questions."""
    rolling = [{k: v for k, v in r.items() if k != "since"} for r in summary["rolling"]]
    return {**summary, "rolling": rolling}


def test_summary_equals_the_cli(server: Server) -> None:
    assert _rolling_unstamped(ok(server, "/api/stats/summary")) == _rolling_unstamped(
        cli_json(server.db, "summary")
    )
    window = ("2026-01-01", "2099-12-31")
    assert ok(server, f"/api/stats/summary?since={window[0]}&until={window[1]}") == cli_json(
        server.db, "summary", "--since", window[0], "--until", window[1]
    )
    assert ok(server, "/api/stats/summary")["total_files_processed"] == 10


def test_policies_and_one_policy_equal_the_cli(server: Server) -> None:
    listed = ok(server, "/api/stats/policies")
    assert listed == cli_json(server.db, "policy")
    assert {p["policy_name"] for p in listed["policies"]} == {
        "cleanup-organize",
        "language-cleanup",
    }
    by_saved = ok(server, "/api/stats/policies?sort=total_size_saved")
    assert by_saved == cli_json(server.db, "policy", "--sort", "savings")
    ascending = ok(server, "/api/stats/policies?sort=total_size_saved&order=asc")
    assert ascending["policies"] == list(reversed(by_saved["policies"]))
    names = [
        p["policy_name"] for p in ok(server, "/api/stats/policies?sort=policy_name")["policies"]
    ]
    assert names == sorted(names)
    for name in names:
        assert ok(server, f"/api/stats/policies/{name}") == cli_json(server.db, "policy", name)


def test_file_recent_and_detail_equal_the_cli(server: Server) -> None:
    assert ok(server, "/api/stats/files/1") == cli_json(server.db, "file", "1")
    assert ok(server, "/api/stats/files/2?limit=1") == cli_json(
        server.db, "file", "2", "--limit", "1"
    )
    recent = ok(server, "/api/stats/recent?limit=7")
    assert recent == cli_json(server.db, "recent", "--limit", "7")
    assert ok(server, "/api/stats/recent") == cli_json(server.db, "recent")
    middle = recent["items"][3]["processed_at"]
    windowed = ok(server, f"/api/stats/recent?limit=100&until={urllib.parse.quote(middle)}")
    assert windowed == cli_json(server.db, "recent", "--limit", "100", "--until", middle)
    assert windowed["items"] and all(i["processed_at"] < middle for i in windowed["items"])
    successes = ok(server, "/api/stats/recent?limit=100&success_only=true")["items"]
    assert successes and all(run["success"] for run in successes)
    for run in recent["items"][:3]:
        stats_id = run["stats_id"]
        expected = cli_json(server.db, "detail", stats_id)
        assert ok(server, f"/api/stats/{stats_id}") == expected
        assert ok(server, f"/api/stats/{stats_id[:8]}") == expected
        assert isinstance(expected["action_results"], list)


def test_trends_add_up_to_the_summary(server: Server) -> None:
    conn = open_database(server.db)
    try:
        expected = [bucket.to_dict() for bucket in trends(conn, bucket="week")]
    finally:
        conn.close()
    answer = ok(server, "/api/stats/trends?bucket=week")
    assert answer == {"bucket": "week", "trends": expected}
    daily = ok(server, "/api/stats/trends")["trends"]
    assert (
        sum(b["runs"] for b in daily) == ok(server, "/api/stats/summary")["total_files_processed"]
    )


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/stats/summary?since=yesterday", 400),
        ("/api/stats/summary?since=2026-02-01&until=2026-01-01", 400),
        ("/api/stats/recent?limit=0", 400),
        ("/api/stats/recent?limit=101", 400),
        ("/api/stats/recent?limit=ten", 400),
        ("/api/stats/recent?success_only=maybe", 400),
        ("/api/stats/files/1?limit=101", 400),
        ("/api/stats/files/abc", 400),
        ("/api/stats/trends?bucket=year", 400),
        ("/api/stats/policies?sort=size", 400),
        ("/api/stats/policies?order=up", 400),
        ("/api/stats/summary?sinse=7d", 400),
        ("/api/stats/not-a-run-id", 400),
        ("/api/stats/ab", 400),
        ("/api/stats/" + "a" * 200, 400),
        ("/api/stats/policies/no-such-policy", 404),
        ("/api/stats/files/9999", 404),
        ("/api/stats/files/99999999999999999999999", 404),
        ("/api/stats/00000000-0000-4000-8000-000000000000", 404),
        ("/api/stats/0000", 404),
        ("/no/such/page", 404),
        ("/api/stats/summary?x=" + "a" * 5000, 414),
        ("/api/stats/summary?x=" + "a" * 50000, 414),
    ],
)
def test_errors_are_one_json_sentence(server: Server, path: str, status: int) -> None:
    got, data, body = server.get(path)
    assert got == status, body
    assert isinstance(data, dict) and set(data) == {"error"}, body
    assert data["error"].endswith(".") and "Traceback" not in body


@pytest.mark.parametrize("path", ["/api/stats/summary", "/healthz", "/metrics"])
def test_wrong_method_is_405_in_json(server: Server, path: str) -> None:
    for method in ("POST", "DELETE", "PUT"):
        status, data, body = server.get(path, method=method)
        assert status == 405, body
        assert data is not None and "GET" in data["error"]


def test_an_ambiguous_prefix_is_409_with_the_candidates(synthetic: Server) -> None:
    status, data, body = synthetic.get("/api/stats/abcdef12")
    assert status == 409, body
    assert sorted(c["stats_id"] for c in data["candidates"]) == [
        "abcdef12-0000-4000-8000-000000000001",
        "abcdef12-1111-4000-8000-000000000002",
    ]
    assert "ambiguous" in data["error"]
    unique = ok(synthetic, "/api/stats/abcdef12-1")
    assert unique["stats_id"] == "abcdef12-1111-4000-8000-000000000002"


# -- health, metrics, lifecycle ----------------------------------------------------------------


def test_healthz(server: Server) -> None:
    assert ok(server, "/healthz") == {"status": "ok", "db": "ok"}


def test_healthz_is_503_while_the_database_cannot_be_read(synthetic: Server) -> None:
    assert ok(synthetic, "/healthz") == {"status": "ok", "db": "ok"}
    aside = synthetic.db.with_name("aside.db")
    synthetic.db.rename(aside)
    try:
        status, data, body = synthetic.get("/healthz")
        assert status == 503, body
        assert data["db"] == "unreadable" and data["error"]
        assert "Traceback" not in body
    finally:
        aside.rename(synthetic.db)
    garbage = synthetic.db.read_bytes()
    synthetic.db.write_bytes(b"not a database" * 100)
    try:
        status, data, body = synthetic.get("/healthz")
        assert status == 503 and "not a database" in data["error"], body
    finally:
        synthetic.db.write_bytes(garbage)
    assert ok(synthetic, "/healthz") == {"status": "ok", "db": "ok"}


def test_metrics_parse_and_pass_promtool(server: Server) -> None:
    status, _data, text = server.get("/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in ("vpo_library_files", "vpo_library_size_bytes", "vpo_history_runs"):
        assert name in families, name
    files = sum(s.value for s in families["vpo_library_files"].samples)
    assert files == len(query(server.db, "SELECT id FROM files"))
    runs = {
        (s.labels["policy"], s.labels["status"]): s.value
        for s in families["vpo_history_runs"].samples
    }
    assert runs[("cleanup-organize", "success")] == 5
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is needed"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_sigterm_stops_the_server_with_exit_0(synthetic: Server) -> None:
    assert ok(synthetic, "/healthz")["status"] == "ok"
    started = time.monotonic()
    synthetic.process.send_signal(signal.SIGTERM)
    assert synthetic.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in synthetic.log()


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_a_non_loopback_host_warns(tmp_path: Path, token: str | None) -> None:
    """The warning also says the purge is disabled, unless a token is configured."""
    db = database_with_files(tmp_path / "vpo.db")
    env = {k: v for k, v in os.environ.items() if k != "VPO_API_TOKEN"}
    if token is not None:
        env["VPO_API_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "vpo", "--db", str(db), "serve", "--host", ANY_HOST, "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first.startswith("Warning: listening on 0.0.0.0"), first
        assert ("Destructive endpoints" in first) is (token is None), first
        if token is None:
            assert "VPO_API_TOKEN" in first
        assert process.stderr.readline().startswith("Serving on http://0.0.0.0:")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


# -- the purge and its token (docs/cli.md, `vpo serve`) ----------------------------------------

TOKEN = "test-token-0123456789"  # noqa: S105 - a test token
SCRIPT = "<script>alert(1)</script>"
PURGE = "/api/stats/purge"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Server]:
    """A server with `VPO_API_TOKEN` over recorded runs of three policies (one named like
    markup), with action and phase rows."""
    db = database_with_files(tmp_path / "vpo.db", count=3)
    conn = open_database(db)
    try:
        with transaction(conn):
            for n in range(12):
                policy = ("cleanup", "transcode", SCRIPT)[n % 3]
                spec = RunSpec(
                    EPOCH + days(n), policy=policy, file_id=1 + n % 3, actions=n % 2, phases=2
                )
                insert_run(conn, record(spec))
    finally:
        conn.close()
    served = start_server(db, tmp_path, token=TOKEN)
    try:
        yield served
    finally:
        served.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_purge_without_a_configured_token_is_403_saying_how_to_enable_it(
    server: Server,
) -> None:
    runs = query(server.db, "SELECT count(*) FROM processing_stats")[0][0]
    for headers in (None, bearer("anything")):
        status, data, body = server.get(PURGE + "?policy=x", "DELETE", headers)
        assert status == 403, body
        assert "VPO_API_TOKEN" in data["error"] and "Bearer" in data["error"]
    assert query(server.db, "SELECT count(*) FROM processing_stats")[0][0] == runs


@pytest.mark.parametrize(
    "headers",
    [
        None,
        bearer("wrong"),
        bearer(TOKEN + "x"),
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer \xff\xfe"},
    ],
    ids=["none", "wrong", "longer", "basic", "not-utf8"],
)
def test_purge_without_the_right_token_is_401(
    guarded: Server, headers: dict[str, str] | None
) -> None:
    status, data, body, answer_headers = guarded.request(
        PURGE + "?policy=cleanup", "DELETE", headers
    )
    assert status == 401, body
    assert answer_headers.get("WWW-Authenticate") == "Bearer"
    assert set(data) == {"error"}
    assert query(guarded.db, "SELECT count(*) FROM processing_stats")[0][0] == 12


def test_purge_asked_with_get_is_405_naming_delete(guarded: Server) -> None:
    status, data, body, headers = guarded.request(PURGE + "?policy=cleanup")
    assert status == 405 and headers["Allow"] == "DELETE" and "DELETE" in data["error"], body
    assert query(guarded.db, "SELECT count(*) FROM processing_stats")[0][0] == 12


@pytest.mark.parametrize(
    "query_string",
    ["", "?policy=", "?before=yesterday-ish", "?all=1", "?before=2026-01-01&limit=3"],
)
def test_purge_with_no_or_bad_filters_is_400(guarded: Server, query_string: str) -> None:
    status, data, body = guarded.get(PURGE + query_string, "DELETE", bearer(TOKEN))
    assert status == 400, body
    assert set(data) == {"error"}
    assert query(guarded.db, "SELECT count(*) FROM processing_stats")[0][0] == 12


def test_purge_with_the_token_deletes_what_the_cli_would_and_rollups_stay_exact(
    guarded: Server,
) -> None:
    before = format_utc(EPOCH + days(7))
    would = cli_json(guarded.db, "purge", "--policy", "cleanup", "--before", before, "--dry-run")
    assert would["runs"] > 0
    status, data, body = guarded.get(
        f"{PURGE}?policy=cleanup&before={urllib.parse.quote(before)}", "DELETE", bearer(TOKEN)
    )
    assert status == 200, body
    assert data["deleted_count"] == would["runs"] and set(data) == {"deleted_count", "message"}
    assert query(guarded.db, "SELECT count(*) FROM processing_stats")[0][0] == 12 - would["runs"]
    again = cli_json(guarded.db, "purge", "--policy", "cleanup", "--before", before, "--dry-run")
    assert again["runs"] == 0
    assert_statistics_exact(guarded.db)
    # The server still reads the database it wrote, and agrees with the command line.
    assert ok(guarded, "/api/stats/summary")["total_files_processed"] == 12 - would["runs"]
    guarded.stop()
    log = guarded.log()
    assert TOKEN not in log and "Authorization" not in log


def test_a_policy_named_like_markup_comes_back_as_data(guarded: Server) -> None:
    status, data, _body, headers = guarded.request("/api/stats/policies")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert SCRIPT in [row["policy_name"] for row in data["policies"]]
    one = ok(guarded, "/api/stats/policies/" + urllib.parse.quote(SCRIPT, safe=""))
    assert one["policy_name"] == SCRIPT and one["files_processed"] == 4
    status, data, body = guarded.get(
        f"{PURGE}?policy={urllib.parse.quote(SCRIPT)}", "DELETE", bearer(TOKEN)
    )
    assert status == 200 and data["deleted_count"] == 4, body
    assert SCRIPT in data["message"]


# -- the library's composition ------------------------------------------------------------------

RESOLUTION = """CASE
    WHEN video_width IS NULL AND video_height IS NULL THEN 'unknown'
    WHEN coalesce(video_width, 0) >= 3000 OR coalesce(video_height, 0) >= 1800 THEN '2160p'
    WHEN coalesce(video_width, 0) >= 1600 OR coalesce(video_height, 0) >= 900 THEN '1080p'
    WHEN coalesce(video_width, 0) >= 1100 OR coalesce(video_height, 0) >= 650 THEN '720p'
    ELSE 'sd' END"""


def test_composition_equals_plain_sql_over_files_and_tracks(server: Server) -> None:
    def counts(sql: str) -> dict[str, int]:
        return {row[0]: row[1] for row in query(server.db, sql)}

    languages: dict[str, dict[str, int]] = {}
    for row in query(server.db, "SELECT track_type, language, count(*) FROM tracks GROUP BY 1, 2"):
        languages.setdefault(row[0], {})[row[1]] = row[2]
    answer = ok(server, "/api/library/composition")
    assert answer == {
        "files": query(server.db, "SELECT count(*) FROM files")[0][0],
        "containers": counts(
            "SELECT coalesce(container, 'unknown'), count(*) FROM files GROUP BY 1"
        ),
        "video_codecs": counts(
            "SELECT coalesce(video_codec, 'none'), count(*) FROM files GROUP BY 1"
        ),
        "resolutions": counts(f"SELECT {RESOLUTION}, count(*) FROM files GROUP BY 1"),
        "audio_codecs": counts(
            "SELECT coalesce(codec, 'unknown'), count(*) FROM tracks "
            "WHERE track_type = 'audio' GROUP BY 1"
        ),
        "tracks": counts("SELECT track_type, count(*) FROM tracks GROUP BY 1"),
        "track_languages": languages,
    }
    assert answer["files"] > 0 and answer["audio_codecs"]
    status, data, body = server.get("/api/library/composition?x=1")
    assert status == 400 and set(data) == {"error"}, body


# -- the application in-process --------------------------------------------------------------


def test_without_telemetry_metrics_are_the_library_collector_and_sqlite_stays_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make_app(db)` alone: an empty database answers zeros, `/metrics` is the library
    collector, and every SQLite connection is opened in a pool thread, never the loop's."""
    import asyncio
    import sqlite3
    import threading

    from aiohttp.test_utils import TestClient, TestServer

    from vpo.server import make_app

    db = database_with_files(tmp_path / "vpo.db")
    opened_in: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened_in.append(threading.current_thread().name)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)

    async def scenario() -> None:
        async with TestClient(TestServer(make_app(db))) as client:
            summary = await client.get("/api/stats/summary")
            assert summary.status == 200
            data = await summary.json()
            assert data["total_files_processed"] == 0 and data["earliest_processing"] is None
            assert await (await client.get("/api/stats/policies")).json() == {"policies": []}
            assert await (await client.get("/api/stats/recent")).json() == {"items": []}
            file = await (await client.get("/api/stats/files/1")).json()
            assert file == {"file_id": 1, "file_path": "/library/file-1.mkv", "history": []}
            assert (await client.get("/healthz")).status == 200
            metrics = await client.get("/metrics")
            text = await metrics.text()
            names = {f.name for f in text_string_to_metric_families(text)}
            assert "vpo_library_files" in names
            assert not any(name.startswith("vpo_files_processed") for name in names)

    asyncio.run(scenario())
    assert opened_in, "the scenario read the database"
    assert all(name.startswith("vpo-db") for name in opened_in), opened_in


def test_the_purge_writes_in_the_writer_thread_never_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purge opens its read-write connection in the single writer thread."""
    import asyncio
    import sqlite3
    import threading

    from aiohttp.test_utils import TestClient, TestServer

    from vpo.server import make_app

    db = database_with_files(tmp_path / "vpo.db")
    conn = open_database(db)
    try:
        with transaction(conn):
            insert_run(conn, record(RunSpec(EPOCH, policy="old")))
    finally:
        conn.close()
    opened_in: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened_in.append(threading.current_thread().name)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)

    async def scenario() -> None:
        app = make_app(db, api_token=TOKEN)
        async with TestClient(TestServer(app)) as client:
            answer = await client.delete(PURGE + "?policy=old", headers=bearer(TOKEN))
            assert answer.status == 200
            assert (await answer.json())["deleted_count"] == 1

    asyncio.run(scenario())
    assert any(name.startswith("vpo-writer") for name in opened_in), opened_in
    assert all(name.startswith(("vpo-db", "vpo-writer")) for name in opened_in), opened_in


def test_a_request_that_is_not_http_is_refused_with_one_log_line(synthetic: Server) -> None:
    host, port = urllib.parse.urlsplit(synthetic.url).hostname, synthetic.url.rsplit(":", 1)[1]
    malformed = (
        b"GET /api/stats/summary HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    for raw in malformed:
        with socket.create_connection((str(host), int(port)), timeout=10) as connection:
            connection.sendall(raw)
            assert connection.recv(64).startswith(b"HTTP/1.0 400 ")
    assert ok(synthetic, "/healthz")["status"] == "ok"  # and the server carries on
    assert synthetic.stop() == 0
    log = synthetic.log()
    refused = [line for line in log.splitlines() if "not valid HTTP" in line]
    assert len(refused) == 2, log
    assert "Invalid header value char" in refused[0] and "65536" in refused[1]
    assert all(len(line) < 300 for line in refused)
    assert "Traceback" not in log
