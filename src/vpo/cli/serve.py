"""`vpo serve`: the statistics as a long-running HTTP service — the JSON API, `/healthz`
and `/metrics` for Prometheus — and, with `--watch`, the library kept conforming to a
policy (docs/cli.md, `vpo serve`).

With `--watch … --queue URL` the passes enqueue the files for `vpo worker`s instead of
running them (vpo.workflow.watch_queue); the workers' runs come back over OTLP.

SIGINT and SIGTERM stop it cleanly: no new connections or files, the running runs
interrupted and recorded as such (their tools stopped, temporary files removed), the
running requests finished, telemetry flushed, the database closed, exit 0.
"""

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from vpo.cli.context import AppContext, db_option
from vpo.cli.options import jobs_option
from vpo.errors import VpoError

if TYPE_CHECKING:
    from aiohttp import web

    from vpo.executor.process import Cancellation
    from vpo.policy.schema import Policy
    from vpo.telemetry.setup import Telemetry
    from vpo.workflow.watch import BaseWatcher

SHUTDOWN_TIMEOUT_SECONDS = 5.0  # requests still running after this are cut
log = logging.getLogger("vpo.serve")


@dataclass
class WatchJob:
    """The watcher of `--watch` and what stopping it takes."""

    watcher: "BaseWatcher"
    close: Callable[[], None]  # its store, or its enqueuer (broker and store)
    cancellation: "Cancellation | None"  # its runs' (None with --queue: it runs nothing)
    stop: threading.Event
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self.watcher.run, args=(self.stop,), name="vpo-watch", daemon=True
        )
        self.thread.start()

    def interrupt(self, reason: str) -> None:
        """No new file; the running runs stopped (tools get SIGTERM, then SIGKILL)."""
        self.stop.set()
        if self.cancellation is not None:
            self.cancellation.cancel(reason)

    def join(self) -> None:
        """Wait for the running pass to end; idempotent."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        self.close()


@click.command(short_help="Serve the statistics API and /metrics; --watch keeps folders tidy.")
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
@click.option(
    "--watch",
    "watch_dirs",
    multiple=True,
    metavar="DIR",
    help="Keep DIR conforming to --policy: process new and changed files (repeatable).",
)
@click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    help="The policy (YAML) that --watch applies.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.5),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Time between the starts of two watch passes.",
)
@jobs_option("Files --watch processes at once (not with --queue).")
@click.option(
    "--queue",
    "queue_url",
    metavar="URL",
    envvar="VPO_QUEUE",  # how a container gets it (docker-compose.yml); empty: off
    help="Enqueue what --watch finds on this Redis (redis://HOST:PORT/DB) for `vpo worker` "
    "(or VPO_QUEUE).",
)
@click.option(
    "--worker-timeout",
    type=click.FloatRange(min=5.0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="A worker's run not heard from for this long is recorded as interrupted.",
)
@db_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    watch_dirs: tuple[str, ...],
    policy_path: str | None,
    interval: float,
    jobs: int,
    worker_timeout: float,
    queue_url: str | None = None,
) -> None:
    """Serve the statistics API, /healthz and /metrics until SIGINT or SIGTERM.

    The answers under /api/stats are the JSON objects of `vpo stats … --format json`.
    With --watch, every pass (one each --interval) processes the new and changed video
    files under the folders with --policy, once they hold still; each run is recorded
    like one of `vpo process`. With --queue, the passes enqueue those files for `vpo
    worker`s instead (set VPO_WORKER_TOKEN), whose runs are recorded here.
    """
    import asyncio
    import os

    from vpo.server import make_app
    from vpo.server.otlp_ingest import TOKEN_VARIABLE as WORKER_TOKEN_VARIABLE
    from vpo.server.writes import TOKEN_VARIABLE
    from vpo.telemetry.setup import open_telemetry

    app: AppContext = ctx.obj
    if bool(watch_dirs) != bool(policy_path):
        given, missing = ("--watch", "--policy") if watch_dirs else ("--policy", "--watch")
        raise click.UsageError(f"{given} needs {missing} too.")
    if queue_url is not None and not watch_dirs:
        raise click.UsageError("--queue needs --watch: it enqueues the files the watch finds.")
    if (
        queue_url is not None
        and ctx.get_parameter_source("jobs") != click.core.ParameterSource.DEFAULT
    ):
        raise click.UsageError(
            "--jobs does not apply with --queue: each worker's --jobs says how many files it runs."
        )
    if ctx.find_root().get_parameter_source("log_level") == click.core.ParameterSource.DEFAULT:
        logging.getLogger("vpo").setLevel(logging.INFO)  # a service says what it does
    from vpo.server import logs

    logs.install()
    policy = _load_watch_policy(policy_path, watch_dirs, queued=queue_url is not None)
    app.connect().close()  # create or upgrade the database once, before any reader
    token = os.environ.get(TOKEN_VARIABLE) or None
    if queue_url is not None and not os.environ.get(WORKER_TOKEN_VARIABLE):
        raise VpoError(
            f"--queue needs {WORKER_TOKEN_VARIABLE} set: the workers record their runs here "
            "with it."
        )
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
    job: WatchJob | None = None
    try:
        if policy is not None and queue_url is not None:
            assert policy_path is not None
            job = _queue_job(
                app.resolved_db_path,
                telemetry,
                policy,
                policy_path,
                watch_dirs,
                interval,
                queue_url,
            )
        elif policy is not None:
            job = _watch_job(app.resolved_db_path, telemetry, policy, watch_dirs, interval, jobs)
        application = make_app(
            app.resolved_db_path, telemetry, api_token=token, worker_timeout=worker_timeout
        )
        asyncio.run(_serve(application, host, port, job))
    finally:
        if job is not None:
            job.interrupt("interrupted: vpo serve is stopping")
            job.join()
        problems = telemetry.shutdown()  # every run is in the database after this
        for problem in dict.fromkeys(problems):
            click.echo(f"  {problem}", err=True)
    click.echo("Stopped.", err=True)


def _load_watch_policy(
    policy_path: str | None, watch_dirs: tuple[str, ...], *, queued: bool = False
) -> "Policy | None":
    """The policy of --watch, checked with its folders and tools before anything starts
    (with --queue only ffprobe: the workers run the rest)."""
    if policy_path is None:
        return None
    from vpo.cli.paths import require_paths
    from vpo.media.tools import require_tool
    from vpo.policy.loader import load_policy

    policy = load_policy(policy_path)
    for root in require_paths(watch_dirs):
        if not root.is_dir():
            raise click.BadParameter(f"{root} is not a folder.", param_hint="--watch")
    for tool in ("ffprobe",) if queued else ("ffprobe", "mkvpropedit", "mkvmerge", "ffmpeg"):
        require_tool(tool)
    return policy


def _watch_job(
    db_path: Path,
    telemetry: "Telemetry",
    policy: "Policy",
    watch_dirs: tuple[str, ...],
    interval: float,
    jobs: int,
) -> WatchJob:
    from vpo.db.connection import check_writable
    from vpo.executor.process import Cancellation
    from vpo.workflow.library_store import LibraryStore
    from vpo.workflow.processor import FileProcessor
    from vpo.workflow.scan import DEFAULT_EXTENSIONS
    from vpo.workflow.watch import Watcher

    check_writable(db_path)  # no file is touched unless its run can be recorded
    cancellation = Cancellation()
    store = LibraryStore(db_path)
    processor = FileProcessor(
        policy, store, telemetry.tracer, telemetry.metrics, cancellation=cancellation
    )
    roots = [Path(d).resolve() for d in watch_dirs]
    watcher = Watcher(
        roots,
        processor,
        DEFAULT_EXTENSIONS,
        interval=interval,
        jobs=jobs,
        recording_problem=telemetry.recording_problem,
    )
    shown = ", ".join(str(r) for r in roots)
    log.info("watching %s with the policy %s every %gs", shown, policy.name, interval)
    return WatchJob(watcher, store.close, cancellation, threading.Event())


def _queue_job(
    db_path: Path,
    telemetry: "Telemetry",
    policy: "Policy",
    policy_path: str,
    watch_dirs: tuple[str, ...],
    interval: float,
    queue_url: str,
) -> WatchJob:
    """The watch of --queue: its Redis must answer now (exit 1 saying so otherwise)."""
    from vpo.db.connection import check_writable
    from vpo.queue.enqueue import Enqueuer
    from vpo.workflow.scan import DEFAULT_EXTENSIONS
    from vpo.workflow.watch_queue import QueueWatcher

    check_writable(db_path)  # no file is enqueued unless its run can be recorded
    enqueuer = Enqueuer(db_path, Path(policy_path).read_text(encoding="utf-8"), queue_url)
    roots = [Path(d).resolve() for d in watch_dirs]
    watcher = QueueWatcher(
        roots,
        policy,
        enqueuer,
        DEFAULT_EXTENSIONS,
        interval=interval,
        recording_problem=telemetry.recording_problem,
    )
    shown = ", ".join(str(r) for r in roots)
    log.info(
        "watching %s with the policy %s every %gs, enqueueing on %s for vpo worker",
        shown,
        policy.name,
        interval,
        _without_password(queue_url),
    )
    return WatchJob(watcher, enqueuer.close, None, threading.Event())


def _without_password(url: str) -> str:
    """The URL to log: a password in it is not shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(
    application: "web.Application", host: str, port: int, job: WatchJob | None
) -> None:
    """Listen (and watch) until SIGINT or SIGTERM, then shut down in order: the watcher's
    runs are interrupted at once while the running requests finish."""
    import asyncio
    import os
    import signal

    from aiohttp import web

    from vpo.server.errors import MAX_REQUEST_LINE

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s received: stopping", sig.name)
        stop.set()
        if job is not None:
            job.interrupt(f"interrupted by {sig.name}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
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
            base = f"http://{shown}:{bound_port}"
            click.echo(f"Serving on {base}", err=True)
            click.echo(f"  dashboard:      {base}/stats", err=True)
            click.echo(f"  statistics API: {base}/api/stats/summary", err=True)
            click.echo(f"  API document:   {base}/api/openapi.json", err=True)
            click.echo(f"  Prometheus:     {base}/metrics", err=True)
            click.echo(f"  health:         {base}/healthz", err=True)
        if job is not None:
            job.start()
        await stop.wait()
        click.echo("Stopping…", err=True)
    finally:
        await runner.cleanup()
        if job is not None:
            await asyncio.to_thread(job.join)  # its runs end within the tools' grace time
