"""The server's answer cache (`ReadPool.cached`, docs/benchmarks.md): an answer is kept
only while nothing is committed to the database, so a run recorded by another process, a
purge by the CLI and a purge by the server itself all show in the very next request;
identical questions asked at once are computed once; the window-less summary's rolling
totals are those of the whole second of the request."""

import asyncio
import sqlite3
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import database_with_files, query, run_vpo
from tests.integration.test_server_api import Server, start_server
from tests.recorded import EPOCH, RunSpec, days, record
from vpo.db import open_database, transaction
from vpo.db.stats import insert_run
from vpo.server.db import ReadPool
from vpo.timefmt import format_utc

TOKEN = "cache-test-token-0123456789"  # noqa: S105 - a test token
POLICIES = ("cleanup", "transcode")
# Asked again and again: fixed questions, so each is the same cache entry every time.
WINDOW = "?since=2020-01-01&until=2099-01-01"
PATHS = (
    "/api/stats/summary" + WINDOW,
    "/api/stats/policies",
    "/api/stats/policies/cleanup",
    "/api/stats/recent",
    "/api/stats/trends?bucket=month",
)


def commit_run(db: Path, spec: RunSpec) -> str:
    """One run recorded through a connection of the test's own (not the server's)."""
    run = record(spec)
    conn = open_database(db)
    try:
        with transaction(conn):
            insert_run(conn, run)
    finally:
        conn.close()
    return run.id


def ok(server: Server, path: str) -> Any:
    status, data, body = server.get(path)
    assert status == 200, (path, body)
    return data


def answers(server: Server) -> dict[str, Any]:
    """Every fixed question, asked twice: the second answer is the kept one."""
    first = {path: ok(server, path) for path in PATHS}
    assert {path: ok(server, path) for path in PATHS} == first
    return first


def check(seen: dict[str, Any], runs: int, cleanup: int, newest: str) -> None:
    summary = seen["/api/stats/summary" + WINDOW]
    assert summary["total_files_processed"] == runs
    listed = seen["/api/stats/policies"]["policies"]
    assert sum(p["files_processed"] for p in listed) == runs
    assert seen["/api/stats/policies/cleanup"]["files_processed"] == cleanup
    assert seen["/api/stats/recent"]["items"][0]["stats_id"] == newest
    assert sum(b["runs"] for b in seen["/api/stats/trends?bucket=month"]["trends"]) == runs


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    """A server (purge enabled) over a database holding one run of `cleanup`."""
    db = database_with_files(tmp_path / "vpo.db", count=2)
    commit_run(db, RunSpec(EPOCH, policy="cleanup"))
    server = start_server(db, tmp_path, token=TOKEN)
    try:
        yield server
    finally:
        server.stop()


def test_a_run_recorded_by_another_process_shows_in_the_very_next_request(
    served: Server,
) -> None:
    newest = query(served.db, "SELECT id FROM processing_stats")[0][0]
    cleanup = 1
    check(answers(served), 1, cleanup, newest)
    for n in range(1, 13):
        policy = POLICIES[n % 2]
        cleanup += policy == "cleanup"
        newest = commit_run(
            served.db, RunSpec(EPOCH + days(n), policy=policy, file_id=1 + n % 2, success=n != 5)
        )
        # No pause: the very first request after the commit sees it, on every route.
        check(answers(served), n + 1, cleanup, newest)


def test_purges_by_the_cli_and_by_the_server_show_in_the_very_next_request(
    served: Server,
) -> None:
    for n in range(1, 6):
        commit_run(served.db, RunSpec(EPOCH + days(n), policy=POLICIES[n % 2]))
    newest = query(served.db, "SELECT id FROM processing_stats ORDER BY processed_at DESC")[0][0]
    check(answers(served), 6, 3, newest)

    result = run_vpo("--db", served.db, "stats", "purge", "--policy", "transcode", "--yes")
    assert result.returncode == 0, result.stderr
    seen = answers(served)
    check(
        seen,
        3,
        3,
        query(served.db, "SELECT id FROM processing_stats ORDER BY processed_at DESC")[0][0],
    )
    assert [p["policy_name"] for p in seen["/api/stats/policies"]["policies"]] == ["cleanup"]

    before = urllib.parse.quote(format_utc(EPOCH + days(3)))
    status, data, body = served.get(
        f"/api/stats/purge?policy=cleanup&before={before}",
        "DELETE",
        {"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 200 and data["deleted_count"] == 2, body
    seen = answers(served)
    assert seen["/api/stats/summary" + WINDOW]["total_files_processed"] == 1
    assert seen["/api/stats/policies/cleanup"]["files_processed"] == 1


def test_the_window_less_summary_is_that_of_the_whole_second_of_the_request(
    served: Server,
) -> None:
    asked = datetime.now(UTC).replace(microsecond=0)
    summary = ok(served, "/api/stats/summary")
    answered = datetime.now(UTC)
    rolling = {r["period"]: r for r in summary["rolling"]}
    week_ago = datetime.fromisoformat(rolling["7d"]["since"].replace("Z", "+00:00"))
    moment = week_ago + timedelta(days=7)
    assert moment.microsecond == 0 and asked <= moment <= answered, (asked, moment, answered)
    assert rolling["today"]["since"] == format_utc(moment.replace(hour=0, minute=0, second=0))
    assert rolling["all"]["runs"] == summary["total_files_processed"] == 1


def test_an_age_counts_back_from_the_whole_second_of_the_request(served: Server) -> None:
    """So that every request within a second asks the same question (one cached answer)."""
    asked = datetime.now(UTC).replace(microsecond=0)
    since = ok(served, "/api/stats/summary?since=7d")["since"]
    answered = datetime.now(UTC)
    moment = datetime.fromisoformat(since.replace("Z", "+00:00")) + timedelta(days=7)
    assert moment.microsecond == 0 and asked <= moment <= answered, (asked, moment, answered)


def test_identical_questions_are_computed_once_until_something_is_committed(
    tmp_path: Path,
) -> None:
    """ReadPool.cached directly: 32 questions at once are one computation; a commit by
    another connection makes the next question compute afresh; failures are not kept."""
    db = database_with_files(tmp_path / "vpo.db")
    commit_run(db, RunSpec(EPOCH))
    computed: list[str] = []

    def count_runs(conn: sqlite3.Connection, tag: str) -> int:
        computed.append(tag)
        return conn.execute("SELECT count(*) FROM processing_stats").fetchone()[0]

    def broken(conn: sqlite3.Connection) -> int:
        computed.append("broken")
        return conn.execute("SELECT count(*) FROM no_such_table").fetchone()[0]

    async def scenario() -> None:
        pool = ReadPool(db, 4)
        try:
            together = await asyncio.gather(*(pool.cached(count_runs, "a") for _ in range(32)))
            assert together == [1] * 32 and computed == ["a"]
            assert await pool.cached(count_runs, "a") == 1 and computed == ["a"]
            assert await pool.cached(count_runs, "b") == 1 and computed == ["a", "b"]
            commit_run(db, RunSpec(EPOCH + days(1)))
            assert await pool.cached(count_runs, "a") == 2 and computed == ["a", "b", "a"]
            assert await pool.cached(count_runs, "a") == 2 and computed == ["a", "b", "a"]
            for _ in range(2):
                with pytest.raises(sqlite3.OperationalError):
                    await pool.cached(broken)
            assert computed.count("broken") == 2
        finally:
            pool.close()

    asyncio.run(scenario())


def test_the_least_recently_asked_answers_go_first_beyond_the_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most CACHED_ANSWERS answers and CACHED_CHARS characters of text are kept; an
    answer longer than a quarter of that is not kept at all."""
    from vpo.server import db as server_db

    db = database_with_files(tmp_path / "vpo.db")
    computed: list[str] = []

    def text(conn: sqlite3.Connection, tag: str, length: int) -> str:
        computed.append(tag)
        return tag[0] * length

    async def scenario() -> None:
        pool = ReadPool(db, 2)
        try:
            monkeypatch.setattr(server_db, "CACHED_ANSWERS", 3)
            for tag in ("a", "b", "c", "a", "d"):  # "a" asked again: "b" is the oldest
                await pool.cached(text, tag, 1)
            assert computed == ["a", "b", "c", "d"]
            await pool.cached(text, "b", 1)  # dropped for "d": four answers > 3
            await pool.cached(text, "a", 1)  # kept
            assert computed == ["a", "b", "c", "d", "b"]

            monkeypatch.setattr(server_db, "CACHED_ANSWERS", 100)
            monkeypatch.setattr(server_db, "CACHED_CHARS", 100)
            computed.clear()
            for tag in ("t1", "t2", "t3", "t4", "t5"):  # 5 x 20 + 3 x 1 characters > 100
                await pool.cached(text, tag, 20)
            await pool.cached(text, "a", 1)  # one-character answers pushed out first
            await pool.cached(text, "t1", 20)  # ... then the oldest long one
            assert computed == ["t1", "t2", "t3", "t4", "t5", "a", "t1"]
            computed.clear()
            for tag in ("t3", "t4", "t5", "big", "big"):  # 26 characters > 100 / 4
                await pool.cached(text, tag, 26 if tag == "big" else 20)
            assert computed == ["big", "big"]
        finally:
            pool.close()

    asyncio.run(scenario())
