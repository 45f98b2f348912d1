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


def format_ns(epoch_ns: int) -> str:
    """An OpenTelemetry timestamp (ns since the epoch) in the stored format, to the µs."""
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=ns // 1000)
    return format_utc(moment)


def parse_utc(text: str) -> datetime:
    """A stored timestamp back to an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
