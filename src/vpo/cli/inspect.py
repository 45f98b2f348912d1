"""`vpo inspect FILE`: the tracks of one file, read live with ffprobe."""

import json
from typing import TYPE_CHECKING

import click

from vpo.cli.context import db_option
from vpo.cli.paths import require_file

if TYPE_CHECKING:
    from vpo.media.tracks import MediaInfo, Track


@click.command(short_help="Show the container, duration and tracks of FILE.")
@click.argument("file", metavar="FILE")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
@db_option  # unused, but accepted like on every command (`vpo inspect --db X FILE`)
def inspect(file: str, output_format: str) -> None:
    """Show the container, duration and tracks of FILE, and its partial hash."""
    from vpo.media.probe import ProbeError, probe
    from vpo.pathnames import path_text

    path = require_file(file)
    try:
        media = probe(path)
    except ProbeError as exc:
        raise ProbeError(f"{path_text(path)}: {exc.message}") from exc
    if output_format == "json":
        click.echo(json.dumps({**media.to_dict(), "path": path_text(media.path)}, indent=2))
    else:
        from vpo.media.hashing import partial_hash

        try:
            content_hash: str | None = partial_hash(path)
        except OSError:  # ffprobe read it, but it went away or became unreadable since
            content_hash = None
        _print_table(media, content_hash)


def _print_table(media: "MediaInfo", content_hash: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    from vpo.cli.output import (
        MISSING,
        human_duration,
        human_partial_hash,
        human_size,
        stdout_console,
    )
    from vpo.pathnames import path_text

    console = stdout_console()
    console.print(Text(path_text(media.path), style="bold"), soft_wrap=True)
    console.print(
        Text(
            f"{media.container or MISSING} · {human_duration(media.duration_seconds)} · "
            f"{human_size(media.size_bytes)} · {len(media.tracks)} tracks"
        )
    )
    console.print(Text(f"partial hash {human_partial_hash(content_hash)}"))
    table = Table(show_edge=False)
    for column in ("#", "type", "codec", "language", "title", "default", "forced", "details"):
        table.add_column(column, overflow="fold")  # wrapped on a narrow terminal, never cut
    for track in media.tracks:
        cells = (
            str(track.index),
            track.track_type.value,
            track.codec or MISSING,
            track.language,
            track.title or "",
            "yes" if track.is_default else "",
            "yes" if track.is_forced else "",
            _details(track),
        )
        table.add_row(*(Text(cell) for cell in cells))  # Text: titles are not markup
    console.print(table)


def _details(track: "Track") -> str:
    details = []
    if track.width and track.height:
        details.append(f"{track.width}x{track.height}")
    if track.channels:
        details.append(f"{track.channels} ch")
    if track.bitrate and track.bitrate >= 1000:
        details.append(f"{track.bitrate // 1000} kb/s")
    return ", ".join(details)
