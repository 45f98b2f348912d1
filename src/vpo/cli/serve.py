"""`vpo serve`: the statistics as a long-running HTTP service — the JSON API, `/healthz`
and `/metrics` for Prometheus (docs/cli.md, `vpo serve`).

SIGINT and SIGTERM stop it cleanly: no new connections, running requests finished, the
read connections closed, telemetry flushed, exit 0.
"""

import ipaddress
from typing import TYPE_CHECKING

import click

from vpo.cli.context import AppContext, db_option
from vpo.errors import VpoError

if TYPE_CHECKING:
    from aiohttp import web

SHUTDOWN_TIMEOUT_SECONDS = 5.0  # requests still running after this are cut


@click.command(short_help="Serve the statistics API, /healthz and /metrics.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="Address to listen on; anything but loopback exposes the statistics to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8321,
    show_default=True,
    metavar="PORT",
    help="Port to listen on (0: any free port, printed at start).",
)
@db_option
@click.pass_obj
def serve(app: AppContext, host: str, port: int) -> None:
    """Serve the statistics API, /healthz and /metrics until SIGINT or SIGTERM.

    The answers under /api/stats are the JSON objects of `vpo stats … --format json`.
    """
    import asyncio
    import os

    from vpo.server import make_app
    from vpo.server.writes import TOKEN_VARIABLE
    from vpo.telemetry.setup import open_telemetry

    app.connect().close()  # create or upgrade the database once, before any reader
    token = os.environ.get(TOKEN_VARIABLE) or None
    if not _loopback(host):
        disabled = (
            ""
            if token
            else f" Destructive endpoints (the purge) are disabled: set {TOKEN_VARIABLE} "
            "to enable them."
        )
        click.echo(
            f"Warning: listening on {host}: anyone who can reach this machine can read the "
            f"statistics (VPO has no login for them).{disabled}",
            err=True,
        )
    telemetry = open_telemetry(app.resolved_db_path)
    try:
        application = make_app(app.resolved_db_path, telemetry, api_token=token)
        asyncio.run(_serve(application, host, port))
    finally:
        problems = telemetry.shutdown()
        for problem in dict.fromkeys(problems):
            click.echo(f"  {problem}", err=True)
    click.echo("Stopped.", err=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(application: "web.Application", host: str, port: int) -> None:
    """Listen until SIGINT or SIGTERM, then shut down in order."""
    import asyncio
    import os
    import signal

    from aiohttp import web

    from vpo.server.errors import MAX_REQUEST_LINE

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        application,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        max_line_size=MAX_REQUEST_LINE,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            # aiohttp rewords bind errors; the errno's own words are the clear ones.
            reason = os.strerror(exc.errno) if (exc.errno or 0) > 0 else exc.strerror or str(exc)
            raise VpoError(f"Cannot listen on {host}:{port}: {reason}.") from exc
        for address in runner.addresses:
            bound_host, bound_port = address[0], address[1]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            click.echo(f"Serving on http://{shown}:{bound_port}", err=True)
        await stop.wait()
        click.echo("Stopping…", err=True)
    finally:
        await runner.cleanup()
