"""`vpo doctor`: which external tools are found, their versions, how to get the missing
ones, and the state of the library database."""

import sqlite3
from pathlib import Path

import click

from vpo.cli.context import AppContext, db_option


@click.command(short_help="Check the external tools and the database VPO uses.")
@click.option(
    "--clean",
    is_flag=True,
    help="Also undo what interrupted runs left: restore edited files, delete temporaries.",
)
@db_option
@click.pass_obj
def doctor(app: AppContext, clean: bool) -> None:
    """Check the external tools and the database VPO uses, and look in the library's
    folders for what interrupted runs left (temporary files, in-place edit journals).

    Exits 1 when a tool VPO needs is missing, or when left-overs remain.
    """
    from vpo.media.tools import check_tools

    statuses = check_tools()
    width = max(len(s.tool.name) for s in statuses)
    click.echo("External tools:")
    for status in statuses:
        tool = status.tool
        name = tool.name.ljust(width)
        tests = "needed by the tests only, to " if tool.tests_only else "needed to "
        if status.found:
            version = status.version or "version unknown"
            note = "  (needed by the tests only)" if tool.tests_only else ""
            click.echo(f"  ok       {name}  {version:<18} {status.path}{note}")
        else:
            label = "MISSING " if tool.required else "optional"
            click.echo(f"  {label} {name}  {tests}{tool.purpose}; install: {tool.install_hint}")
    click.echo("")
    click.echo(f"Database: {_database_state(app.resolved_db_path)}")
    if clean and app.resolved_db_path.exists():
        # Runs of dead processes are recorded first: a journal whose edit a dead run
        # recorded is then kept, not rolled back behind its record.
        app.connect().close()
    left_over = _left_over_work(app.resolved_db_path, clean)
    missing = [s.tool.name for s in statuses if s.tool.required and not s.found]
    if missing:
        packages = sorted({s.tool.package for s in statuses if s.tool.name in missing})
        click.echo(
            f"Error: {', '.join(missing)} missing; run: sudo apt-get install {' '.join(packages)}",
            err=True,
        )
        raise SystemExit(1)
    click.echo("All required tools found.")
    if left_over:
        raise SystemExit(1)


def _left_over_work(db_path: Path, clean: bool) -> bool:
    """Report (or with `clean`, undo) what interrupted runs left beside library files;
    True when some remains."""
    from vpo.executor.safe_replace import clean_stale_work, find_stale_work
    from vpo.pathnames import path_text

    folders = _library_folders(db_path)
    found = {folder: find_stale_work(folder) for folder in folders}
    found = {folder: paths for folder, paths in found.items() if paths}
    if not found:
        click.echo(f"Left by interrupted runs: nothing (looked in {len(folders)} folder(s)).")
        return False
    count = sum(len(paths) for paths in found.values())
    if not clean:
        click.echo(f"Left by interrupted runs: {count} file(s); `vpo doctor --clean` undoes them:")
        for paths in found.values():
            for path in paths:
                click.echo(f"  {path_text(path)}")
        return True
    from vpo.ownership import claim

    click.echo(f"Left by interrupted runs: {count} file(s), cleaned:")
    for folder in found:
        for sentence in clean_stale_work(folder, lambda target: claim(db_path, target)):
            click.echo(f"  {path_text(folder)}: {sentence}")
    return any(find_stale_work(folder) for folder in found)


def _library_folders(db_path: Path) -> list[Path]:
    """The folders that hold the library's files (read-only look at the database)."""
    from vpo.pathnames import path_from_text

    if not db_path.exists():
        return []
    try:
        conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
        try:
            paths = [row[0] for row in conn.execute("SELECT path FROM files")]
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    folders = {Path(path_from_text(p)).parent for p in paths}
    return sorted(f for f in folders if f.is_dir())


def _database_state(path: Path) -> str:
    """Read-only look at the database: never creates or upgrades it."""
    from vpo.db.migrations import SCHEMA_VERSION

    if not path.exists():
        return f"{path} (not created yet; the first scan creates it)"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            files = conn.execute("SELECT count(*) FROM files").fetchone()[0] if version else 0
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{path} (cannot be read: {exc})"
    if version > SCHEMA_VERSION:
        return f"{path} (schema {version}: from a newer VPO; this one knows up to {SCHEMA_VERSION})"
    state = "up to date" if version == SCHEMA_VERSION else f"will be upgraded to {SCHEMA_VERSION}"
    return f"{path} (schema {version}, {state}; {files} files)"
