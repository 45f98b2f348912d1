"""Dates people type, and the cutting of windows into rollup buckets and raw edges."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpo.db.measures import SPANS
from vpo.db.windows import Piece, pieces
from vpo.timefmt import format_ns, format_utc, parse_when

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "end_of_day", "expected"),
    [
        ("2026-01-31", False, datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31", True, datetime(2026, 2, 1, tzinfo=UTC)),
        ("2026-01-31T10:00", True, datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("2026-01-31T10:00:00+02:00", False, datetime(2026, 1, 31, 8, tzinfo=UTC)),
        ("2026-01-31T10:00:00Z", False, datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("24h", False, NOW - timedelta(hours=24)),
        ("7d", True, NOW - timedelta(days=7)),
        ("4w", False, NOW - timedelta(weeks=4)),
        (" 7D ", False, NOW - timedelta(days=7)),
    ],
)
def test_date_forms(text: str, end_of_day: bool, expected: datetime) -> None:
    assert parse_when(text, now=NOW, end_of_day=end_of_day) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "7y", "-7d", "2026-13-01", "2026-02-30", "d"])
def test_dates_that_do_not_parse(text: str) -> None:
    with pytest.raises(ValueError, match="is not a date"):
        parse_when(text, now=NOW)


def test_a_year_is_months_and_edges() -> None:
    since = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
    until = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert pieces(since, until) == [
        Piece(None, "2025-03-14T09:26:53.000000Z", "2025-03-14T10:00:00.000000Z"),
        Piece("hour", "2025-03-14T10", "2025-03-15T00"),
        Piece("day", "2025-03-15", "2025-04-01"),
        Piece("month", "2025-04", "2026-01"),
        Piece("day", "2026-01-01", "2026-01-02"),
        Piece("hour", "2026-01-02T00", "2026-01-02T03"),
    ]
    assert pieces(None, None) == [Piece("month", None, None)]
    assert pieces(since, since) == []


def _contains(piece: Piece, stamp: str) -> bool:
    key = stamp if piece.span is None else stamp[: dict(SPANS)[piece.span]]
    return (piece.low is None or key >= piece.low) and (piece.high is None or key < piece.high)


MOMENTS = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300)
@given(
    since=st.none() | MOMENTS,
    until=st.none() | MOMENTS,
    points=st.lists(MOMENTS, min_size=1, max_size=20),
    coarsest=st.sampled_from(["month", "day", "hour"]),
)
def test_pieces_cover_the_window_exactly_once(since, until, points, coarsest) -> None:
    parts = pieces(since, until, coarsest)
    for point in points + [p for p in (since, until) if p is not None]:
        inside = (since is None or point >= since) and (until is None or point < until)
        stamp = format_utc(point)
        assert sum(_contains(piece, stamp) for piece in parts) == int(inside)


def _format_ns_by_datetime(epoch_ns: int) -> str:
    """The general way `format_ns` took for every time before its integer fast path."""
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    return format_utc(datetime.fromtimestamp(seconds, UTC).replace(microsecond=ns // 1000))


_LAST_NS = 253402300799 * 10**9 + 999_999_999  # 9999-12-31T23:59:59.999999999Z


@given(st.integers(min_value=0, max_value=_LAST_NS))
@settings(max_examples=500, deadline=None)
def test_span_times_are_stored_as_the_datetime_way_writes_them(epoch_ns: int) -> None:
    assert format_ns(epoch_ns) == _format_ns_by_datetime(epoch_ns)


@pytest.mark.parametrize(
    ("epoch_ns", "expected"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        (999, "1970-01-01T00:00:00.000000Z"),
        (1_764_028_799_999_999_999, "2025-11-24T23:59:59.999999Z"),
        (1_764_028_800_000_000_000, "2025-11-25T00:00:00.000000Z"),
        (_LAST_NS, "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_span_time_edges(epoch_ns: int, expected: str) -> None:
    assert format_ns(epoch_ns) == expected == _format_ns_by_datetime(epoch_ns)
