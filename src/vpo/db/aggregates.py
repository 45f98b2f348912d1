"""Aggregate statistics — summary, per policy, trends, rolling totals — answered from
the rollups (vpo.db.measures, kept by triggers) plus the raw runs in the partial hours
at a window's edges (vpo.db.windows). Plain SQL over `processing_stats` gives the same
numbers (`plain_totals`, the definition the tests compare against) but reads every run.

The dataclasses carry the field names of docs/statistics.md: the CLI's JSON and the
HTTP API return the same objects, floats rounded by `tidy`.
"""

import sqlite3
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from vpo.db.measures import MEASURE_NAMES, MEASURES, raw_sums, rollup_sums
from vpo.db.windows import Piece, floor_to, pieces
from vpo.timefmt import format_utc

SECONDS_DIGITS = 3  # durations in seconds, to the millisecond
FRACTION_DIGITS = 4  # rates, percentages and other floats
_SECONDS_SUFFIXES = ("_seconds", "_time")


def tidy(data: Any, key: str = "") -> Any:
    """`data` ready for JSON and CSV without float noise (`4.0855288000000005`): floats
    named `…_seconds` or `…_time` to the millisecond, other floats to 4 decimals
    (docs/statistics.md). Dicts and lists are copied; other values pass through."""
    if isinstance(data, dict):
        return {name: tidy(value, name) for name, value in data.items()}
    if isinstance(data, list):
        return [tidy(value, key) for value in data]
    if isinstance(data, float):
        return round(data, SECONDS_DIGITS if key.endswith(_SECONDS_SUFFIXES) else FRACTION_DIGITS)
    return data


@dataclass(frozen=True)
class Totals:
    """The sums of every measure over some runs."""

    runs: int = 0
    successes: int = 0
    size_before: int = 0
    size_after: int = 0
    size_saved: int = 0
    audio_removed: int = 0
    subtitles_removed: int = 0
    attachments_removed: int = 0
    videos_transcoded: int = 0
    videos_skipped: int = 0
    audio_transcoded: int = 0
    duration_us: int = 0

    @property
    def failures(self) -> int:
        return self.runs - self.successes

    @property
    def success_rate(self) -> float:
        return self.successes / self.runs if self.runs else 0.0

    @property
    def savings_percent(self) -> float:
        """Bytes saved as a share of bytes before, in percent (size-weighted)."""
        return 100.0 * self.size_saved / self.size_before if self.size_before else 0.0

    @property
    def total_seconds(self) -> float:
        return self.duration_us / 1_000_000

    @property
    def average_seconds(self) -> float:
        return self.total_seconds / self.runs if self.runs else 0.0


assert tuple(f.name for f in fields(Totals)) == MEASURE_NAMES  # one list of measures


def _totals(row: sqlite3.Row | tuple[Any, ...], offset: int = 0) -> Totals:
    return Totals(*(int(row[offset + i]) for i in range(len(MEASURE_NAMES))))


@dataclass(frozen=True)
class RollingTotal:
    """Runs and bytes saved over the last period (`today` is since 00:00 UTC)."""

    period: str
    since: str | None
    runs: int
    successful: int
    size_saved: int


@dataclass(frozen=True)
class StatsSummary:
    """`vpo stats summary` and GET /api/stats/summary."""

    total_files_processed: int
    total_successful: int
    total_failed: int
    success_rate: float
    total_size_before: int
    total_size_after: int
    total_size_saved: int
    avg_savings_percent: float
    total_audio_removed: int
    total_subtitles_removed: int
    total_attachments_removed: int
    total_videos_transcoded: int
    total_videos_skipped: int
    total_audio_transcoded: int
    avg_processing_time: float
    total_processing_time: float
    earliest_processing: str | None
    latest_processing: str | None
    since: str | None
    until: str | None
    rolling: list[RollingTotal] | None

    def to_dict(self) -> dict[str, Any]:
        return tidy(asdict(self))


@dataclass(frozen=True)
class PolicyStats:
    """One policy's row of `vpo stats policy` and of GET /api/stats/policies."""

    policy_name: str
    files_processed: int
    successful: int
    failed: int
    success_rate: float
    total_size_before: int
    total_size_after: int
    total_size_saved: int
    avg_savings_percent: float
    audio_tracks_removed: int
    subtitle_tracks_removed: int
    attachments_removed: int
    videos_transcoded: int
    videos_skipped: int
    audio_transcoded: int
    avg_processing_time: float
    total_processing_time: float
    first_used: str | None
    last_used: str | None

    def to_dict(self) -> dict[str, Any]:
        return tidy(asdict(self))


@dataclass(frozen=True)
class TrendBucket:
    """Runs of one day, week (starting Monday) or month, named by its first day."""

    bucket: str
    runs: int
    successes: int
    failures: int
    size_before: int
    size_after: int
    size_saved: int

    def to_dict(self) -> dict[str, Any]:
        return tidy(asdict(self))


# -- the rollup engine ---------------------------------------------------------------


def window_totals(
    conn: sqlite3.Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    policy: str | None = None,
    by: str | None = None,
) -> dict[str, Totals]:
    """Sums of every measure over the runs with `since <= processed_at < until`, keyed by
    policy name (`by="policy"`), by day `YYYY-MM-DD` (`by="day"`) or by `""` (all)."""
    parts = pieces(since, until, coarsest="day" if by == "day" else "month")
    selects: list[str] = []
    params: list[Any] = []
    for piece in parts:
        sql, values = _piece_select(piece, policy, by)
        selects.append(sql)
        params += values
    if not selects:
        return {}
    union = " UNION ALL ".join(selects)
    sql = f"SELECT k, {rollup_sums()} FROM ({union}) GROUP BY k"
    return {row[0]: _totals(row, 1) for row in conn.execute(sql, params) if row[1]}


def _piece_select(piece: Piece, policy: str | None, by: str | None) -> tuple[str, list[Any]]:
    raw = piece.span is None
    column = "processed_at" if raw else "bucket"
    key = {None: "''", "policy": "policy_name", "day": f"substr({column}, 1, 10)"}[by]
    where: list[str] = [] if raw else ["span = ?"]
    params: list[Any] = [] if raw else [piece.span]
    if piece.low is not None:
        where.append(f"{column} >= ?")
        params.append(piece.low)
    if piece.high is not None:
        where.append(f"{column} < ?")
        params.append(piece.high)
    if policy is not None:
        where.append("policy_name = ?")
        params.append(policy)
    condition = " AND ".join(where) or "1"
    if raw:
        sql = f"SELECT {key} AS k, {raw_sums('s')} FROM processing_stats s WHERE {condition}"
    else:
        sql = f"SELECT {key} AS k, {rollup_sums()} FROM stats_rollups WHERE {condition}"
    return f"SELECT * FROM ({sql} GROUP BY k)", params


def plain_totals(
    conn: sqlite3.Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    policy: str | None = None,
    by: str | None = None,
    worker: str | None = None,
) -> dict[str, Totals]:
    """The same answer as `window_totals` by plain SQL over every run (slow; the
    reference the rollups are tested and benchmarked against). With `worker`, over that
    worker's runs only — which the rollups, having no worker, cannot answer — read in
    order from the (worker, processed_at) index."""
    key = {None: "''", "policy": "policy_name", "day": "substr(processed_at, 1, 10)"}[by]
    where, params = time_filter(since, until, policy, worker=worker)
    sql = f"SELECT {key} AS k, {raw_sums('s')} FROM processing_stats s WHERE {where} GROUP BY k"
    return {row[0]: _totals(row, 1) for row in conn.execute(sql, params) if row[1]}


def time_filter(
    since: datetime | None,
    until: datetime | None,
    policy: str | None = None,
    *,
    worker: str | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE condition (and its parameters) of the runs started in [since, until), of
    `policy` and of `worker` when given; columns unqualified (`processed_at`,
    `policy_name`, `worker`)."""
    where, params = ["1"], []
    if since is not None:
        where.append("processed_at >= ?")
        params.append(format_utc(since))
    if until is not None:
        where.append("processed_at < ?")
        params.append(format_utc(until))
    if policy is not None:
        where.append("policy_name = ?")
        params.append(policy)
    if worker is not None:
        where.append("worker = ?")
        params.append(worker)
    return " AND ".join(where), params


def time_range(
    conn: sqlite3.Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    policy: str | None = None,
    *,
    worker: str | None = None,
) -> tuple[str | None, str | None]:
    """The first and last `processed_at` in the window (two index seeks)."""
    where, params = time_filter(since, until, policy, worker=worker)
    row = conn.execute(
        f"SELECT (SELECT min(processed_at) FROM processing_stats WHERE {where}), "
        f"(SELECT max(processed_at) FROM processing_stats WHERE {where})",
        params + params,
    ).fetchone()
    return row[0], row[1]


# -- the answers -----------------------------------------------------------------------

ROLLING_PERIODS: tuple[tuple[str, timedelta | None], ...] = (
    ("today", None),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
    ("365d", timedelta(days=365)),
    ("all", None),
)


def summary(
    conn: sqlite3.Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    *,
    worker: str | None = None,
) -> StatsSummary:
    """Everything recorded in `[since, until)`; with no window, also rolling totals.

    With `worker`, the runs of that worker only: the rollups have no worker, so those
    totals are summed from the runs themselves (`plain_totals`, by the worker's index)."""
    if worker is None:
        totals = window_totals(conn, since, until).get("", Totals())
    else:
        totals = plain_totals(conn, since, until, worker=worker).get("", Totals())
    earliest, latest = time_range(conn, since, until, worker=worker)
    rolling = None
    if since is None and until is None:
        rolling = rolling_totals(conn, now or datetime.now(UTC), all_time=totals, worker=worker)
    return StatsSummary(
        total_files_processed=totals.runs,
        total_successful=totals.successes,
        total_failed=totals.failures,
        success_rate=totals.success_rate,
        total_size_before=totals.size_before,
        total_size_after=totals.size_after,
        total_size_saved=totals.size_saved,
        avg_savings_percent=totals.savings_percent,
        total_audio_removed=totals.audio_removed,
        total_subtitles_removed=totals.subtitles_removed,
        total_attachments_removed=totals.attachments_removed,
        total_videos_transcoded=totals.videos_transcoded,
        total_videos_skipped=totals.videos_skipped,
        total_audio_transcoded=totals.audio_transcoded,
        avg_processing_time=totals.average_seconds,
        total_processing_time=totals.total_seconds,
        earliest_processing=earliest,
        latest_processing=latest,
        since=None if since is None else format_utc(since),
        until=None if until is None else format_utc(until),
        rolling=rolling,
    )


def rolling_totals(
    conn: sqlite3.Connection,
    now: datetime,
    all_time: Totals | None = None,
    *,
    worker: str | None = None,
) -> list[RollingTotal]:
    """Today (since 00:00 UTC), the last 7, 30 and 365 days, and all time (`all_time`
    when the caller has just read it); of `worker`'s runs only when given."""
    result = []
    for period, length in ROLLING_PERIODS:
        if period == "today":
            start: datetime | None = floor_to("day", now)
        else:
            start = None if length is None else now - length
        if start is None and all_time is not None:
            totals = all_time
        elif worker is not None:
            totals = plain_totals(conn, start, worker=worker).get("", Totals())
        else:
            totals = window_totals(conn, start).get("", Totals())
        result.append(
            RollingTotal(
                period=period,
                since=None if start is None else format_utc(start),
                runs=totals.runs,
                successful=totals.successes,
                size_saved=totals.size_saved,
            )
        )
    return result


POLICY_SORTS: dict[str, tuple[str, bool]] = {  # name → (field, descending)
    "policy_name": ("policy_name", False),
    "files_processed": ("files_processed", True),
    "total_size_saved": ("total_size_saved", True),
    "last_used": ("last_used", True),
    "avg_processing_time": ("avg_processing_time", True),
}


def policy_stats(
    conn: sqlite3.Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    policy: str | None = None,
    sort: str = "files_processed",
    descending: bool | None = None,
) -> list[PolicyStats]:
    """One row per policy with runs in the window (or just `policy`), sorted by `sort`
    (a key of POLICY_SORTS; numbers largest first unless `descending=False`)."""
    by_policy = window_totals(conn, since, until, policy=policy, by="policy")
    rows = []
    for name, totals in by_policy.items():
        first, last = time_range(conn, since, until, name)
        rows.append(_policy_row(name, totals, first, last))
    field, default_descending = POLICY_SORTS[sort]
    reverse = default_descending if descending is None else descending
    rows.sort(key=lambda p: p.policy_name)  # ties stay in name order
    rows.sort(key=lambda p: getattr(p, field), reverse=reverse)
    return rows


def policies_answer(rows: list[PolicyStats]) -> dict[str, Any]:
    """`{"policies": [...]}`: as `vpo stats policy` and GET /api/stats/policies give them."""
    return {"policies": [row.to_dict() for row in rows]}


def _policy_row(name: str, totals: Totals, first: str | None, last: str | None) -> PolicyStats:
    return PolicyStats(
        policy_name=name,
        files_processed=totals.runs,
        successful=totals.successes,
        failed=totals.failures,
        success_rate=totals.success_rate,
        total_size_before=totals.size_before,
        total_size_after=totals.size_after,
        total_size_saved=totals.size_saved,
        avg_savings_percent=totals.savings_percent,
        audio_tracks_removed=totals.audio_removed,
        subtitle_tracks_removed=totals.subtitles_removed,
        attachments_removed=totals.attachments_removed,
        videos_transcoded=totals.videos_transcoded,
        videos_skipped=totals.videos_skipped,
        audio_transcoded=totals.audio_transcoded,
        avg_processing_time=totals.average_seconds,
        total_processing_time=totals.total_seconds,
        first_used=first,
        last_used=last,
    )


TREND_BUCKETS = ("day", "week", "month")


def trends(
    conn: sqlite3.Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: str = "day",
) -> list[TrendBucket]:
    """Runs and bytes per day, week (Monday first) or month, oldest first; periods
    without runs are left out."""
    if bucket not in TREND_BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(TREND_BUCKETS)}")
    grouped: dict[str, Totals] = {}
    for day, totals in window_totals(conn, since, until, by="day").items():
        key = _trend_key(day, bucket)
        grouped[key] = _add(grouped.get(key, Totals()), totals)
    return [
        TrendBucket(
            bucket=key,
            runs=t.runs,
            successes=t.successes,
            failures=t.failures,
            size_before=t.size_before,
            size_after=t.size_after,
            size_saved=t.size_saved,
        )
        for key, t in sorted(grouped.items())
    ]


def trends_answer(buckets: list[TrendBucket], bucket: str) -> dict[str, Any]:
    """`{"bucket": "day", "trends": [...]}`: GET /api/stats/trends."""
    return {"bucket": bucket, "trends": [b.to_dict() for b in buckets]}


def _trend_key(day: str, bucket: str) -> str:
    if bucket == "day":
        return day
    if bucket == "month":
        return day[:7] + "-01"
    start = datetime.strptime(day, "%Y-%m-%d")
    return (start - timedelta(days=start.weekday())).strftime("%Y-%m-%d")


def _add(a: Totals, b: Totals) -> Totals:
    return Totals(*(getattr(a, n) + getattr(b, n) for n in MEASURES))
