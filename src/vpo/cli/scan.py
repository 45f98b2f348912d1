"""`vpo scan PATH...`: find video files, probe the new and changed ones, report counts."""

import click

from vpo.cli.context import AppContext, db_option
from vpo.cli.paths import require_paths
from vpo.cli.progress import ScanProgressDisplay


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--extensions",
    metavar="LIST",
    help="Comma-separated extensions to scan (default: mkv,mp4,m4v,mov,avi,webm,ts,m2ts,wmv).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="Files probed at once (default: the number of CPUs).",
)
@db_option
@click.pass_obj
def scan(app: AppContext, paths: tuple[str, ...], extensions: str | None, jobs: int | None) -> None:
    """Scan folders (recursively) or files into the library database.

    Unchanged files (same size and modification time) are not probed again. A file
    ffprobe cannot read is recorded with its error and the scan goes on.
    """
    from vpo.media.tools import require_tool
    from vpo.workflow.scan import parse_extensions, scan_paths

    roots = require_paths(paths)
    require_tool("ffprobe")  # before the database is created or touched
    conn = app.connect()
    try:
        with ScanProgressDisplay() as progress:
            report = scan_paths(conn, roots, parse_extensions(extensions), jobs, progress)
    finally:
        conn.close()
    click.echo(
        f"Scanned {report.total} file{'s' if report.total != 1 else ''}: "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.failed} failed."
    )
    if report.unreadable:
        click.echo(
            f"{report.unreadable} known file{'s are' if report.unreadable != 1 else ' is'} "
            "still unreadable (unchanged since a scan that could not read "
            f"{'them' if report.unreadable != 1 else 'it'}; `vpo inspect FILE` says why)."
        )
    for sentence in report.cleaned:
        click.echo(f"Left by an interrupted VPO: {sentence}")
    if report.missing:
        click.echo(
            f"{report.missing} known file{'s are' if report.missing != 1 else ' is'} no longer "
            "on disk (kept in the database with their history)."
        )
    for path, error in report.failures:
        click.echo(f"  failed: {path}: {error}")
    if report.total == 0:
        click.echo(
            "No video files found (looked for: " + ", ".join(parse_extensions(extensions)) + ")."
        )
