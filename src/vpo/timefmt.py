"""One timestamp format for every stored time: ISO-8601 UTC, fixed width, so that
string order is time order and SQLite range queries on the text work."""

from datetime import UTC, datetime


def format_utc(moment: datetime) -> str:
    """`2026-11-24T13:05:09.123456Z` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    return format_utc(datetime.now(UTC))
