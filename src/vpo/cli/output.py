"""Shared pieces of command output: units people read, and consoles.

Results go to stdout, progress and errors to stderr, so `vpo … --format json | jq`
always sees clean JSON.
"""

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PIPED_WIDTH = 200
_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_size(size: float | None) -> str:
    """Bytes in B/KB/MB/GB/TB (powers of 1024), one decimal above bytes; sign kept."""
    if size is None:
        return "-"
    sign = "-" if size < 0 else ""
    value = float(abs(size))
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{sign}{int(value)} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """`15h 28m`, `4m 05s`, `2.3s`."""
    if seconds is None:
        return "-"
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


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def stdout_console() -> "Console":
    """A console for results; when piped, wide enough that tables do not wrap."""
    from rich.console import Console

    width = None if sys.stdout.isatty() else PIPED_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr_console() -> "Console":
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def human_time(stamp: str | None) -> str:
    """A stored timestamp as `2026-11-24 13:05` (UTC), for tables."""
    return "-" if not stamp else stamp[:16].replace("T", " ")


def human_percent(share: float) -> str:
    """A share (0 to 1) as `81.1%`."""
    return f"{share * 100:.1f}%"
