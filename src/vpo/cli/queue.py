"""`vpo queue status|dead|retry|purge-dead --queue URL`: what waits in the queue of
`vpo process --queue`, and its dead letters — the messages `vpo worker` gave up on — to
read, retry or delete (docs/cli.md). The logic is `vpo.queue.dead_letters`."""

import json
import textwrap
from typing import TYPE_CHECKING

import click

from vpo.cli.context import db_option
from vpo.cli.options import format_option

if TYPE_CHECKING:
    from vpo.queue.dead_letters import DeadLetter, DeadLetters

_GAP = "  "


def _queue_option(command: click.Command) -> click.Command:
    return click.option(
        "--queue", "queue_url", required=True, metavar="URL", help="redis://HOST:PORT/DB"
    )(command)


def _open(queue_url: str) -> "DeadLetters":
    from vpo.queue.dead_letters import DeadLetters

    return DeadLetters(queue_url)


@click.group()
@db_option  # unused, but accepted on every command and group
def queue() -> None:
    """The queue of `vpo process --queue`: counts, dead letters, retries."""


@queue.command(short_help="Messages waiting, taken, waiting for a retry, dead.")
@_queue_option
@format_option("table", "json")
@db_option
def status(queue_url: str, output_format: str) -> None:
    """How many messages wait in the queue, are taken by a worker (running or
    prefetched), wait for a retry (their backoff), and are dead letters."""
    with _open(queue_url) as letters:
        counts = letters.counts()
    if output_format == "json":
        click.echo(json.dumps(counts.to_dict(), indent=2))
        return
    from rich.table import Table

    from vpo.cli.output import stdout_console

    table = Table(box=None, pad_edge=False, padding=(0, 1), show_header=False)
    table.add_column("what")
    table.add_column("messages", justify="right")
    table.add_row("waiting", f"{counts.waiting:,}")
    table.add_row("taken by a worker", f"{counts.taken:,}")
    table.add_row("waiting for a retry", f"{counts.delayed:,}")
    table.add_row("dead (vpo queue dead)", f"{counts.dead:,}")
    stdout_console().print(table)


@queue.command(short_help="The dead letters: file, policy, attempts, reason.")
@_queue_option
@format_option("table", "json")
@db_option
def dead(queue_url: str, output_format: str) -> None:
    """The messages the workers gave up on, oldest first: their id (for `vpo queue
    retry`), file, policy, attempts, when they died, why, and their trace id."""
    with _open(queue_url) as letters:
        found = letters.dead_letters()
    if output_format == "json":
        click.echo(json.dumps({"items": [letter.to_dict() for letter in found]}, indent=2))
    elif not found:
        click.echo("No dead letters.")
    else:
        _print_dead(found)


@queue.command(short_help="Move dead letters back to the queue.")
@_queue_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@db_option
def retry(queue_url: str, ids: tuple[str, ...], everything: bool) -> None:
    """Move the dead letters ID... (or --all) back to the queue, their retry count reset:
    a worker runs them again. An ID may be shortened to its first hex digits."""
    if everything == bool(ids):
        raise click.UsageError("Give the ids of dead letters (vpo queue dead), or --all.")
    with _open(queue_url) as letters:
        names = letters.all_ids() if everything else letters.resolve(list(ids))
        moved = letters.retry(names)
    click.echo(f"Moved {moved} dead letter(s) back to the queue.")
    if moved < len(names):
        click.echo(
            f"{len(names) - moved} were no longer dead letters (retried or expired meanwhile).",
            err=True,
        )


@queue.command("purge-dead", short_help="Delete dead letters (asks first).")
@_queue_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@db_option
def purge_dead(queue_url: str, ids: tuple[str, ...], everything: bool, yes: bool) -> None:
    """Delete the dead letters ID... (or --all) for good; nothing else is touched."""
    from vpo.errors import VpoError

    if everything == bool(ids):
        raise click.UsageError("Give the ids of dead letters (vpo queue dead), or --all.")
    with _open(queue_url) as letters:
        names = letters.all_ids() if everything else letters.resolve(list(ids))
        if names and not yes:
            try:
                confirmed = click.confirm(
                    f"Delete {len(names)} dead letter(s)?", default=False, err=True
                )
            except click.exceptions.Abort:
                raise VpoError(
                    "Nothing deleted: no answer (use --yes to delete without a prompt)."
                ) from None
            if not confirmed:
                click.echo("Nothing deleted.", err=True)
                return
        deleted = letters.purge(names)
    click.echo(f"Deleted {deleted} dead letter(s).")


def _print_dead(found: list["DeadLetter"]) -> None:
    """One line per dead letter (short id, when it died, attempts, policy), then its
    file, shortened from the middle, and its reason with its trace id, as the worker's
    log says them, folded and indented. Fits 80 columns; data is never markup."""
    from rich.text import Text

    from vpo.cli.output import MISSING, human_time, short_id, shorten_path, stdout_console

    console = stdout_console()
    header = ["id", "died (UTC)", "attempts", "policy"]
    rows = [
        [
            short_id(letter.id),
            human_time(letter.died_time),
            MISSING if letter.attempts is None else str(letter.attempts),
            letter.policy or MISSING,
        ]
        for letter in found
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(values: list[str]) -> Text:
        cells = [
            value.rjust(width) if column == 2 else value.ljust(width)
            for column, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return Text(_GAP.join(cells).rstrip())

    indent = widths[0] + len(_GAP)
    console.print(line(header), style="bold", no_wrap=True, crop=True)
    for letter, row in zip(found, rows, strict=True):
        console.print(line(row), no_wrap=True, crop=True)
        path = shorten_path(letter.path or MISSING, max(console.width - indent, 20))
        console.print(Text(" " * indent + path), no_wrap=True, crop=True)
        reason = letter.reason or "no reason recorded"
        if letter.trace_id is not None:
            reason += f" (trace {letter.trace_id})"
        for folded in textwrap.wrap(reason, max(console.width - indent, 20)):
            console.print(Text(" " * indent + folded, style="red"), no_wrap=True, crop=True)
