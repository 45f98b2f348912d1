"""Cutting a time window into rollup buckets and raw edges.

A window `[since, until)` is covered by whole months, then whole days, then whole
hours of the rollups, and by raw `processing_stats` rows only inside the partial hours
at its two edges — like a segment tree over the calendar. The pieces do not overlap and
cover the window exactly, so summing them gives the plain SQL answer.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vpo.db.measures import SPANS
from vpo.timefmt import format_utc


@dataclass(frozen=True)
class Piece:
    """Rollup buckets of `span` in `[low, high)` (bucket names), or — when `span` is
    None — raw runs with `low <= processed_at < high` (stored timestamps). A None bound
    is open."""

    span: str | None
    low: str | None
    high: str | None


def pieces(since: datetime | None, until: datetime | None, coarsest: str = "month") -> list[Piece]:
    """The pieces that cover `[since, until)`, using spans from `coarsest` down."""
    names = [name for name, _ in SPANS]
    spans = SPANS[names.index(coarsest) :]
    return _cover(_aware(since), _aware(until), spans)


def _cover(
    low: datetime | None, high: datetime | None, spans: tuple[tuple[str, int], ...]
) -> list[Piece]:
    if low is not None and high is not None and low >= high:
        return []
    if not spans:
        return [Piece(None, _stamp(low), _stamp(high))]
    (span, length), finer = spans[0], spans[1:]
    first = None if low is None else ceil_to(span, low)
    end = None if high is None else floor_to(span, high)
    if first is not None and end is not None and first >= end:
        return _cover(low, high, finer)  # no whole bucket of this span inside
    left = [] if low is None else _cover(low, first, finer)
    right = [] if high is None else _cover(end, high, finer)
    middle = Piece(span, _bucket(first, length), _bucket(end, length))
    return [*left, middle, *right]


def floor_to(span: str, moment: datetime) -> datetime:
    """The start of the `span` bucket holding `moment`."""
    moment = moment.astimezone(UTC)
    if span == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if span == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if span == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown span {span!r}")


def next_bucket(span: str, start: datetime) -> datetime:
    """The start of the bucket after the one starting at `start`."""
    if span == "month":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month)
    return start + (timedelta(days=1) if span == "day" else timedelta(hours=1))


def ceil_to(span: str, moment: datetime) -> datetime:
    """The first bucket start at or after `moment`."""
    start = floor_to(span, moment)
    return start if start == moment else next_bucket(span, start)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_utc(moment)


def _bucket(moment: datetime | None, length: int) -> str | None:
    return None if moment is None else format_utc(moment)[:length]
