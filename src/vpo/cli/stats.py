"""`vpo stats …`: what the recorded runs add up to (docs/cli.md, "Statistics").

JSON output is the object the HTTP API returns for the same question, floats rounded
(seconds to the millisecond, ratios to 4 decimals); tables are for people
(vpo.cli.stats_tables); CSV has a header and one line per row, rounded the same way.
"""

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

from vpo.cli.context import AppContext, db_option
from vpo.cli.options import DateType, format_option, limit_option, window_options
from vpo.cli.output import human_moment
from vpo.errors import InvalidInputError, NoStatisticsError, PathNotFoundError, VpoError
from vpo.timefmt import DATE_FORMS

if TYPE_CHECKING:
    import sqlite3

    from vpo.db.purge import PurgeCounts, PurgeFilter

POLICY_SORT_CHOICES = {
    "files": "files_processed",
    "savings": "total_size_saved",
    "time": "avg_processing_time",
}


@click.group(short_help="Statistics of the recorded processing runs.")
@db_option
def stats() -> None:
    """What the recorded processing runs did: savings, policies, files, failures."""


@stats.command(short_help="Totals over all time or a window.")
@window_options
@click.option(
    "--worker",
    metavar="NAME",
    help="Only the runs of the worker (host) NAME, as `vpo stats workers` lists them.",
)
@format_option("table", "json", "csv")
@db_option
@click.pass_obj
def summary(
    app: AppContext,
    since: datetime | None,
    until: datetime | None,
    worker: str | None,
    output_format: str,
) -> None:
    """Totals over all runs, or over the runs between --since and --until.

    With --worker, over that worker's runs only (summed from the runs themselves).
    """
    from vpo.db.aggregates import summary as read_summary

    _check_window(since, until)
    conn = app.connect_existing()
    try:
        result = read_summary(conn, since, until, worker=worker)
    finally:
        conn.close()
    if result.total_files_processed == 0:
        whose = "" if worker is None else f" for the worker {worker!r}"
        raise NoStatisticsError(f"No processing runs recorded{whose}{_window_text(since, until)}.")
    data = result.to_dict()
    csv_row = {k: v for k, v in data.items() if k != "rolling"}
    _emit(output_format, data, [csv_row], lambda tables: tables.print_summary(result))


@stats.command(short_help="Statistics per policy, or of one policy.")
@click.argument("name", required=False)
@window_options
@click.option(
    "--sort",
    type=click.Choice(list(POLICY_SORT_CHOICES)),
    default="files",
    show_default=True,
    help="Order of the rows: most runs, most bytes saved, or slowest on average first.",
)
@format_option("table", "json", "csv")
@db_option
@click.pass_obj
def policy(
    app: AppContext,
    name: str | None,
    since: datetime | None,
    until: datetime | None,
    sort: str,
    output_format: str,
) -> None:
    """One row per policy, or NAME in detail."""
    from vpo.db.aggregates import policies_answer, policy_stats

    _check_window(since, until)
    conn = app.connect_existing()
    try:
        rows = policy_stats(conn, since, until, policy=name, sort=POLICY_SORT_CHOICES[sort])
    finally:
        conn.close()
    window = _window_text(since, until)
    if not rows:
        if name is not None:
            raise NoStatisticsError(f"No runs recorded for the policy {name!r}{window}.")
        raise NoStatisticsError(f"No processing runs recorded{window}.")
    listed = policies_answer(rows)
    dicts = listed["policies"]
    _emit(
        output_format,
        dicts[0] if name else listed,
        dicts,
        lambda tables: tables.print_policy(rows[0]) if name else tables.print_policies(rows),
    )


@stats.command(short_help="Statistics per worker (the host that ran the runs).")
@window_options
@format_option("table", "json", "csv")
@db_option
@click.pass_obj
def workers(
    app: AppContext, since: datetime | None, until: datetime | None, output_format: str
) -> None:
    """One row per worker — the host that ran the runs: runs, failures, bytes saved,
    busy time and when it was last seen. Runs recorded before VPO kept the worker are
    counted as "(unknown)"."""
    from vpo.db.workers import worker_stats, workers_answer

    _check_window(since, until)
    conn = app.connect_existing()
    try:
        rows = worker_stats(conn, since, until)
    finally:
        conn.close()
    if not rows:
        raise NoStatisticsError(f"No processing runs recorded{_window_text(since, until)}.")
    answer = workers_answer(rows)
    _emit(output_format, answer, answer["workers"], lambda tables: tables.print_workers(rows))


@stats.command(short_help="The runs of one file or folder (id or path).")
@click.argument("file_ref", metavar="FILE_ID_OR_PATH")
@limit_option(20)
@format_option("table", "json", "csv")
@db_option
@click.pass_obj
def file(app: AppContext, file_ref: str, limit: int, output_format: str) -> None:
    """The runs of one file, newest first (FILE is a library id or a path).

    Given a folder, the runs of every library file under it, newest first.
    """
    from vpo.db.history import count_files_under, file_runs
    from vpo.pathnames import path_text

    conn = app.connect_existing()
    try:
        # Paths are stored as text (names that are not UTF-8 escaped): look up the same.
        reference = (
            file_ref if file_ref.isdigit() else path_text(Path(file_ref).expanduser().resolve())
        )
        found = file_runs(conn, reference, limit)
        if found is None:
            if file_ref.isdigit():
                raise PathNotFoundError(f"No file with id {file_ref} in the library.")
            files = count_files_under(conn, reference)
            if files or Path(file_ref).expanduser().is_dir():
                _folder(conn, reference, files, limit, output_format)
                return
            raise PathNotFoundError(f"{reference} is not in the library (scan or process it).")
    finally:
        conn.close()
    if not found.history:
        raise NoStatisticsError(f"{found.file_path} (file {found.file_id}) has no recorded runs.")
    data = found.to_dict()
    _emit(
        output_format,
        data,
        data["history"],
        lambda tables: tables.print_file_history(found.file_id, found.file_path, found.history),
    )


@stats.command(short_help="One run in full, with actions and phases.")
@click.argument("stats_id", metavar="STATS_ID")
@click.option("--show-actions", is_flag=True, help="Also list every action of the run.")
@click.option("--show-performance", is_flag=True, help="Also list every phase of the run.")
@click.option(  # not format_option: detail has no CSV form, and its help must not offer one
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people; json (the API's object) for scripts.",
)
@db_option
@click.pass_obj
def detail(
    app: AppContext, stats_id: str, show_actions: bool, show_performance: bool, output_format: str
) -> None:
    """One run in full: sizes, track changes, transcodes, phases, actions.

    STATS_ID is a run's id or any unique start of it (at least 4 hex digits), such as
    the short id `vpo stats recent` shows.
    """
    from vpo.db.history import resolve_run_id, run_detail

    conn = app.connect_existing()
    try:
        run = run_detail(conn, resolve_run_id(conn, stats_id))
    finally:
        conn.close()
    if run is None:  # purged between the two reads
        raise NoStatisticsError(f"No run with id {stats_id} is recorded.")
    _emit(
        output_format,
        run,
        None,
        lambda tables: tables.print_detail(
            run, show_actions=show_actions, show_performance=show_performance
        ),
    )


@stats.command(short_help="The latest runs, newest first.")
@limit_option(10)
@click.option("--failed", is_flag=True, help="Only failed runs.")
@window_options
@format_option("table", "json", "csv")
@db_option
@click.pass_obj
def recent(
    app: AppContext,
    limit: int,
    failed: bool,
    since: datetime | None,
    until: datetime | None,
    output_format: str,
) -> None:
    """The latest runs across the library, newest first (only those between --since and
    --until when given)."""
    from vpo.db.history import recent_runs, runs_answer

    _check_window(since, until)
    conn = app.connect_existing()
    try:
        runs = recent_runs(conn, limit, False if failed else None, since, until)
    finally:
        conn.close()
    if not runs:
        what = "failed runs" if failed else "runs"
        where = " in this window" if since is not None or until is not None else ""
        raise NoStatisticsError(f"No {what} recorded{where}.")
    answer = runs_answer(runs)
    _emit(output_format, answer, answer["items"], lambda tables: tables.print_recent(runs))


@stats.command(short_help="Delete recorded runs (asks first).")
@click.option(
    "--before", type=DateType(), metavar="D", help=f"Runs started before D ({DATE_FORMS})."
)
@click.option("--policy", "policy_name", metavar="NAME", help="Runs of the policy NAME.")
@click.option("--all", "everything", is_flag=True, help="Every recorded run.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@format_option("table", "json", "csv")
@db_option
@click.pass_obj
def purge(
    app: AppContext,
    before: datetime | None,
    policy_name: str | None,
    everything: bool,
    dry_run: bool,
    yes: bool,
    output_format: str,
) -> None:
    """Delete recorded runs (with their action and phase rows) in one transaction.

    Give --before and/or --policy, or --all. Files and the library are not touched.
    """
    from vpo.db.purge import PurgeFilter, count_purge
    from vpo.db.purge import purge as delete_runs

    if everything and (before is not None or policy_name is not None):
        raise click.UsageError("--all cannot be combined with --before or --policy.")
    if not everything and before is None and policy_name is None:
        raise click.UsageError(
            "Say which runs to delete: --before D, --policy NAME (or both), or --all."
        )
    which = PurgeFilter(before=before, policy=policy_name, everything=everything)
    conn = app.connect_existing()
    try:
        counts = count_purge(conn, which)
        description = _purge_text(which)
        deleted = False
        if counts.runs == 0:
            message = f"No runs match {description}; nothing deleted."
        elif dry_run:
            message = f"Dry run: {_counts_text(counts)} {description} would be deleted."
        else:
            if not yes:
                click.echo(f"This deletes {_counts_text(counts)} {description}.", err=True)
                try:
                    confirmed = click.confirm("Delete them?", default=False, err=True)
                except click.exceptions.Abort:
                    raise VpoError(
                        "Nothing deleted: no answer (use --yes to purge without a prompt)."
                    ) from None
                if not confirmed:
                    click.echo("Nothing deleted.", err=True)
                    return
            counts = delete_runs(conn, which)
            deleted = True
            message = f"Deleted {_counts_text(counts)} {description}."
    finally:
        conn.close()
    result: dict[str, Any] = {
        "dry_run": dry_run,
        "deleted_count": counts.runs if deleted else 0,
        **counts.to_dict(),
        "message": message,
    }
    _emit(output_format, result, [result], lambda _tables: click.echo(message))


def _folder(
    conn: "sqlite3.Connection", folder: str, files: int, limit: int, output_format: str
) -> None:
    """`stats file FOLDER`: the runs of the library files under the folder, newest first."""
    from vpo.db.history import folder_history

    if not files:
        raise PathNotFoundError(
            f"{folder} is a folder, and no file under it is in the library (scan or process it)."
        )
    history = folder_history(conn, folder, limit)
    if not history:
        raise NoStatisticsError(
            f"{folder} is a folder; none of the {files:,} library files under it has recorded runs."
        )
    items = [run.to_dict() for run in history]
    _emit(
        output_format,
        {"folder_path": folder, "files": files, "history": items},
        items,
        lambda tables: tables.print_folder_history(folder, files, history),
    )


def _purge_text(which: "PurgeFilter") -> str:
    if which.everything:
        return "(all runs)"
    parts = []
    if which.before is not None:
        parts.append(f"started before {human_moment(which.before)}")
    if which.policy is not None:
        parts.append(f"of the policy {which.policy!r}")
    return "(" + ", ".join(parts) + ")"


def _counts_text(counts: "PurgeCounts") -> str:
    return (
        f"{counts.runs:,} runs, {counts.action_results:,} action rows and "
        f"{counts.performance_metrics:,} phase rows"
    )


def _check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise InvalidInputError("--since must be earlier than --until.")


def _window_text(since: datetime | None, until: datetime | None) -> str:
    parts = []
    if since is not None:
        parts.append(f"since {human_moment(since)}")
    if until is not None:
        parts.append(f"before {human_moment(until)}")
    return (" " + " and ".join(parts)) if parts else ""


def _emit(
    output_format: str,
    json_data: Any,
    csv_rows: list[dict[str, Any]] | None,
    table: Callable[[ModuleType], None],
) -> None:
    """Print one answer as JSON, CSV, or a table (`table` gets vpo.cli.stats_tables,
    imported only then: rich is the slowest import of a stats command)."""
    if output_format == "json":
        _echo_json(json_data)
    elif output_format == "csv" and csv_rows is not None:
        _echo_csv(csv_rows)
    else:
        import vpo.cli.stats_tables as tables

        table(tables)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _echo_csv(rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    click.echo(buffer.getvalue(), nl=False)


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value
