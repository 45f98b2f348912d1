"""The `vpo` command line: a click group whose subcommands are imported on first use.

Only click is imported to print `vpo --help`; each command module keeps its heavy
imports (rich, SQLite, OpenTelemetry) inside the command, so start-up stays fast.
"""

import importlib
import logging
import os
import sys
from typing import Any

import click

from vpo import __version__
from vpo.cli.context import AppContext, db_option
from vpo.errors import ExitCode, VpoError

# name → "module:attribute"; the order of `vpo --help` is alphabetical.
COMMANDS: dict[str, str] = {
    "doctor": "vpo.cli.doctor:doctor",
    "inspect": "vpo.cli.inspect:inspect",
    "process": "vpo.cli.process:process",
    "queue": "vpo.cli.queue:queue",
    "samples": "vpo.cli.samples:samples",
    "scan": "vpo.cli.scan:scan",
    "serve": "vpo.cli.serve:serve",
    "stats": "vpo.cli.stats:stats",
    "worker": "vpo.cli.worker:worker",
}
LOG_LEVELS = ("debug", "info", "warning", "error")


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is needed, and
    turns `VpoError` into one sentence on stderr with the error's exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VpoError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `vpo … | head`: the reader left, nothing more to say
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc} "
                "(run with --log-level debug for the traceback).",
                err=True,
            )
            ctx.exit(int(ExitCode.ERROR))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_path",
    metavar="PATH",
    help="Library database (default: $VPO_DB, else ~/.vpo/library.db).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    help="How much to log on stderr; debug also shows tracebacks.",
)
@click.version_option(__version__, "--version", prog_name="vpo")
@click.pass_context
def cli(ctx: click.Context, db_path: str | None, log_level: str) -> None:
    """VPO — Video Policy Orchestrator.

    Scan a video library, apply YAML policies to it, and see what every run did.
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = AppContext(db_path=db_path)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="vpo")


__all__ = ["cli", "db_option", "main"]
