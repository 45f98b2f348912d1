"""Shared pieces of command output: units people read, short ids and paths, consoles.

Results go to stdout, progress and errors to stderr, so `vpo … --format json | jq`
always sees clean JSON. Sizes are binary (KiB, MiB, GiB: powers of 1024, as `ls -h`
and `du -h` count), labelled as such everywhere; see docs/cli.md.
"""

import os
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

PIPED_WIDTH = 200
MISSING = "—"  # a value that is not known or does not apply, in human output
SHORT_ID_LENGTH = 8  # hex digits of a run id shown in tables, like git's short hashes
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: float | None) -> str:
    """Bytes in B/KiB/MiB/GiB/TiB (powers of 1024), one decimal above bytes, at most
    three digits before the point (`1.0 GiB`, not `1023.9 MiB`, as `ls -h`); sign kept."""
    if size is None:
        return MISSING
    sign = "-" if size < 0 else ""
    value = float(abs(size))
    for unit in _UNITS:
        limit = 1024 if unit == "B" else 999.95  # what would print as 1000.0 moves up
        if value < limit or unit == _UNITS[-1]:
            return f"{sign}{int(value)} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """`15h 28m`, `4m 05s`, `2.3s`."""
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def human_time(stamp: str | None, *, seconds: bool = False) -> str:
    """A stored timestamp as `2026-11-24 13:05` (UTC), for tables; with `seconds`,
    `2026-11-24 13:05:09`, for echoing back a time the user gave."""
    if not stamp:
        return MISSING
    return stamp[: 19 if seconds else 16].replace("T", " ")


def human_moment(moment: datetime) -> str:
    """An aware datetime as `2026-11-24 18:56:30 UTC`: what a command used, to the second."""
    from datetime import UTC

    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def human_percent(share: float) -> str:
    """A share (0 to 1) as `81.1%`."""
    return f"{share * 100:.1f}%"


def short_id(run_id: str) -> str:
    """The first 8 hex digits of a run id: what tables show and `stats detail` accepts."""
    return run_id.replace("-", "")[:SHORT_ID_LENGTH]


def human_partial_hash(value: str | None) -> str:
    """A stored partial hash (`sha256:<hex>`) for people: its first hex digits and what
    they hash, so nobody compares them with `sha256sum` of the whole file; callers label
    it "partial hash" (docs/statistics.md)."""
    if not value:
        return MISSING
    digest = value.split(":", 1)[-1]
    return f"{digest[:16]}… (sha256 of the size + first/last MiB)"


def human_state(state: Mapping[str, Any] | None) -> str:
    """A track state as words: `{"language": "fre", "default": True, "forced": False}` →
    `fre, default`. True flags are named; false ones are left out beside other values and
    read `not forced` in a state of flags only; nothing left is `—`."""
    if not state:
        return MISSING
    flags_only = all(isinstance(value, bool) for value in state.values())
    words = []
    for key, value in state.items():
        if value is None or (value is False and not flags_only):
            continue
        if isinstance(value, bool):
            words.append(key if value else f"not {key}")
        elif key == "channels":
            words.append(f"{value} ch")
        elif key in ("language", "codec"):
            words.append(str(value))
        else:
            words.append(f"{key} {value}")
    return ", ".join(words) or MISSING


def shorten_path(path: str, width: int) -> str:
    """`path` in at most `width` characters, cut from the middle at folder boundaries so
    the file name (and the folders nearest to it) stay readable: `/media/…/S01/e01.mkv`."""
    if len(path) <= width:
        return path
    *folders, name = path.split("/")
    if len(name) + 2 > width or not folders:
        return _cut_middle(name, width)
    head: list[str] = []
    tail = [name]
    low, high = 0, len(folders)  # folders[low:high] are the ones left out so far

    def fits(first: list[str], last: list[str]) -> bool:
        return len("/".join([*first, "…", *last])) <= width

    grew = True
    while grew and low < high:
        grew = False
        if fits(head, [folders[high - 1], *tail]):
            high -= 1
            tail.insert(0, folders[high])
            grew = True
        if low < high and fits([*head, folders[low]], tail):
            head.append(folders[low])
            low += 1
            grew = True
    return "/".join([*head, "…", *tail])


def _cut_middle(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    keep_end = (width - 1) // 2
    return text[: width - 1 - keep_end] + "…" + text[len(text) - keep_end :]


def column_room(total: int, others: Iterable[int]) -> int:
    """Width left for one column of a rich table drawn without edges (one space of
    padding on each side of a cell, a rule between columns) whose other columns are
    `others` wide."""
    widths = list(others)
    columns = len(widths) + 1
    return total - sum(widths) - 2 * columns - (columns - 1)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def output_width() -> int | None:
    """The width of results: the terminal's; when piped, $COLUMNS if set, else wide
    enough that tables do not wrap."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


def stdout_console() -> "Console":
    """A console for results (see `output_width`)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=output_width())


def stderr_console() -> "Console":
    from rich.console import Console

    return Console(stderr=True, highlight=False)
