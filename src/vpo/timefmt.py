"""One timestamp format for every stored time: ISO-8601 UTC, fixed width, so that
string order is time order and SQLite range queries on the text work."""

from datetime import UTC, datetime, timedelta


def format_utc(moment: datetime) -> str:
    """`2026-11-24T13:05:09.123456Z` (naive datetimes are taken as UTC).

    `isoformat` rather than `strftime("%Y")`, which does not pad years before 1000 to
    four digits on every platform: the width is what makes text order time order.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def utc_now() -> str:
    return format_utc(datetime.now(UTC))


_EPOCH = datetime(1970, 1, 1)
_LAST_SECOND = 253402300799  # 9999-12-31T23:59:59


def format_ns(epoch_ns: int) -> str:
    """An OpenTelemetry timestamp (ns since the epoch) in the stored format, to the µs."""
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    if type(epoch_ns) is int and 0 <= seconds <= _LAST_SECOND:
        # The same text, by exact integer arithmetic on a naive UTC time: twice as fast
        # (every recorded run formats its start). Other values take the general way.
        moment = _EPOCH + timedelta(seconds=seconds, microseconds=ns // 1000)
        return moment.isoformat(timespec="microseconds") + "Z"
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=ns // 1000)
    return format_utc(moment)


def parse_utc(text: str) -> datetime:
    """A stored timestamp back to an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_AGE_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}
DATE_FORMS = "YYYY-MM-DD, an ISO-8601 time, or an age like 24h, 7d, 4w"
# The dates a window can reach: a window is cut at the month after its edges
# (vpo.db.windows), and datetime ends with year 9999.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 1, tzinfo=UTC)
_SHOWN = 60  # characters of a rejected value quoted back in a message


def parse_when(text: str, *, now: datetime | None = None, end_of_day: bool = False) -> datetime:
    """A date given by a person: `YYYY-MM-DD` (00:00 UTC that day, or the end of it when
    `end_of_day` — an `--until` date includes its day), full ISO-8601 (UTC when no offset
    is given), or an age back from `now`: `24h`, `7d`, `4w`. Raises ValueError, also for
    a date outside EARLIEST..LATEST (which would otherwise overflow later)."""
    try:
        moment = _parse_when(text, now=now, end_of_day=end_of_day)
    except (OverflowError, _OutOfRange):
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise ValueError(
            f"{_shown(text)} is out of range (dates from {EARLIEST.date().isoformat()} to "
            f"{LATEST.date().isoformat()})"
        ) from None
    return moment


class _OutOfRange(Exception):
    """An age too long for any calendar."""


def _parse_when(text: str, *, now: datetime | None, end_of_day: bool) -> datetime:
    value = text.strip()
    if len(value) >= 2 and value[-1].lower() in _AGE_UNITS and value[:-1].isdigit():
        if len(value) > 20:  # more digits than any age back to year 1 needs
            raise _OutOfRange
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
        raise ValueError(f"{_shown(text)} is not a date ({DATE_FORMS})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _shown(text: str) -> str:
    """`text` quoted for a message, cut to a readable length."""
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "…")
