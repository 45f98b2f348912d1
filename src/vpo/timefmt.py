"""One timestamp format for every stored time: ISO-8601 UTC, fixed width, so that
string order is time order and SQLite range queries on the text work."""

from datetime import UTC, datetime, timedelta


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


_AGE_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}
DATE_FORMS = "YYYY-MM-DD, an ISO-8601 time, or an age like 24h, 7d, 4w"


def parse_when(text: str, *, now: datetime | None = None, end_of_day: bool = False) -> datetime:
    """A date given by a person: `YYYY-MM-DD` (00:00 UTC that day, or the end of it when
    `end_of_day` — an `--until` date includes its day), full ISO-8601 (UTC when no offset
    is given), or an age back from `now`: `24h`, `7d`, `4w`. Raises ValueError."""
    value = text.strip()
    if len(value) >= 2 and value[-1].lower() in _AGE_UNITS and value[:-1].isdigit():
        moment = now or datetime.now(UTC)
        return moment - timedelta(seconds=int(value[:-1]) * _AGE_UNITS[value[-1].lower()])
    if len(value) == 10:
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            pass
        else:
            return day + timedelta(days=1) if end_of_day else day
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date ({DATE_FORMS})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
