"""Commands that process files record their runs through telemetry; this is how they
start it, optionally serve `/metrics`, and make sure every run is in the database
before the command exits — or exit 1 saying which runs could not be recorded.

Each command gets a `Telemetry` of its own, shut down when it ends: nothing global that
one finished command could shut down under another."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from vpo.cli.context import AppContext
from vpo.errors import VpoError

if TYPE_CHECKING:
    from vpo.telemetry.setup import Telemetry


class RecordingProblemsError(VpoError):
    """Some runs could not be recorded (each problem was printed on stderr)."""


@contextmanager
def recording(
    app: AppContext, metrics_port: int | None = None, metrics_host: str = "127.0.0.1"
) -> Iterator["Telemetry"]:
    """Telemetry for the command's runs; flushed and shut down on the way out."""
    from vpo.telemetry.serving import start_metrics_server
    from vpo.telemetry.setup import open_telemetry

    telemetry = open_telemetry(app.resolved_db_path)
    server = None
    if metrics_port is not None:
        try:
            server, _thread = start_metrics_server(telemetry.registry, metrics_port, metrics_host)
        except OSError as exc:
            telemetry.shutdown()
            raise VpoError(
                f"Cannot serve /metrics on {metrics_host}:{metrics_port}: {exc.strerror}."
            ) from exc
        click.echo(
            f"Serving /metrics on http://{metrics_host}:{server.server_port}/metrics", err=True
        )
    try:
        yield telemetry
    finally:
        problems = telemetry.shutdown()
        if server is not None:
            server.shutdown()
        if problems:
            for problem in dict.fromkeys(problems):  # each once, in order
                click.echo(f"  {problem}", err=True)
            raise RecordingProblemsError(
                f"{len(problems)} problem(s) while recording statistics in "
                f"{app.resolved_db_path}; see above."
            )
