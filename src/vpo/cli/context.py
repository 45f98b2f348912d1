"""State shared by the commands: which database to open, and the `--db` option that
every command also accepts after its name (`vpo scan --db x.db DIR`)."""

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    db_path: str | None = None

    @property
    def resolved_db_path(self) -> Path:
        from vpo.db.connection import resolve_db_path

        return resolve_db_path(self.db_path)

    def connect(self) -> sqlite3.Connection:
        """Open and upgrade the library database (creating it on first use)."""
        from vpo.db.connection import open_database

        return open_database(self.resolved_db_path)

    def connect_existing(self) -> sqlite3.Connection:
        """Open the database for reading statistics; a missing file is not created but
        answered with "no statistics" (exit 65)."""
        from vpo.db.connection import check_db_folder
        from vpo.errors import NoStatisticsError

        path = self.resolved_db_path
        check_db_folder(path)  # a mistyped folder is exit 64, not "no statistics yet"
        if not path.exists():
            raise NoStatisticsError(
                f"No statistics yet: there is no database at {path} "
                "(run `vpo process` first, or pass --db)."
            )
        return self.connect()


def _set_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(AppContext).db_path = value


def db_option(command: F) -> F:
    """`--db PATH` on a subcommand, overriding the group's."""
    return click.option(
        "--db",
        metavar="PATH",
        expose_value=False,
        callback=_set_db,
        help="Library database (default: $VPO_DB, else ~/.vpo/library.db).",
    )(command)
