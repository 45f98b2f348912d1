"""Options shared by several commands: dates (`--since 7d`) and output formats."""

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class DateType(click.ParamType):
    """`YYYY-MM-DD`, ISO-8601 or an age (`24h`, `7d`, `4w`) → an aware UTC datetime.

    With `end_of_day`, a bare date means the end of that day, so `--until 2026-01-31`
    includes the 31st. A value that does not parse is a usage error (exit 2) naming the
    option.
    """

    name = "date"

    def __init__(self, end_of_day: bool = False) -> None:
        self.end_of_day = end_of_day

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        from vpo.timefmt import parse_when

        try:
            return parse_when(str(value), end_of_day=self.end_of_day)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def window_options(command: F) -> F:
    """`--since D` and `--until D`."""
    command = click.option(
        "--until",
        type=DateType(end_of_day=True),
        metavar="D",
        help="Only runs started before D (a bare date includes that day).",
    )(command)
    return click.option(
        "--since",
        type=DateType(),
        metavar="D",
        help="Only runs started at or after D: YYYY-MM-DD, ISO-8601, or an age (24h, 7d, 4w).",
    )(command)


def format_option(*choices: str) -> Callable[[F], F]:
    """`--format` with `choices`, the first being the default."""
    for_scripts = " and ".join(
        {"json": "json (the API's objects)", "csv": "csv"}[c] for c in choices if c != "table"
    )
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help=f"table for people; {for_scripts} for scripts.",
    )


MAX_LIMIT = 100_000  # a bound, so a huge --limit is a clear usage error, not an overflow


def limit_option(default: int) -> Callable[[F], F]:
    """`--limit N`, 1 to MAX_LIMIT."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1, max=MAX_LIMIT),
        default=default,
        show_default=True,
        help="At most this many runs, newest first.",
    )


def jobs_option(help_text: str) -> Callable[[F], F]:
    """`--jobs N` / `-j N`: files processed at once, 1 to 32."""
    return click.option(
        "--jobs",
        "-j",
        type=click.IntRange(min=1, max=32),
        default=1,
        show_default=True,
        metavar="N",
        help=help_text,
    )
