"""`vpo worker --queue URL --server URL`: run the files `vpo process --queue` enqueued.

Each message is one run of the same processor as `vpo process` (claims, safe replace);
its spans are spooled on disk, then sent over OTLP/HTTP to `vpo serve` (`--server`, with
`VPO_WORKER_TOKEN`), whose database records the statistics. SIGINT/SIGTERM stop the
worker: the running runs are interrupted (recorded as such, their messages retried
later), and it exits 0.
"""

import os
import time
from pathlib import Path

import click

from vpo.cli.options import jobs_option

TOKEN_VARIABLE = "VPO_WORKER_TOKEN"  # noqa: S105 - the variable's name, not a token
DEFAULT_DB = Path("~/.vpo/worker.db")
POLL_MS = 100  # the longest pause between two polls of the queue
ANNOUNCE_TIMEOUT_SECONDS = 5.0  # a run's announcement waits this long for the server


@click.command()
@click.option("--queue", "queue_url", required=True, metavar="URL", help="redis://HOST:PORT/DB")
@click.option(
    "--server",
    "server_url",
    required=True,
    metavar="URL",
    help="The `vpo serve` that records the runs (http://HOST:8321).",
)
@click.option(
    "--path-map",
    "path_maps",
    multiple=True,
    metavar="SERVER=LOCAL",
    help="Read files under the server's folder SERVER in LOCAL here (repeatable).",
)
@jobs_option("Files processed at once (one message prefetched per job).")
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    metavar="N",
    help="Retries of a failed run before its message is dead-lettered (vpo queue dead).",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(0, 900),
    default=15.0,
    show_default=True,
    metavar="SECONDS",
    help="The first retry's delay; it doubles at each retry, up to 15 minutes.",
)
@click.option(
    "--requeue-after",
    type=click.FloatRange(2, 86_400),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="A worker that has not polled the queue this long is dead: its files go back "
    "to the queue for the others.",
)
@click.option(
    "--db",
    "db_path",
    metavar="PATH",
    help="The worker's scratch database (claims, files) (default: ~/.vpo/worker.db).",
)
@click.option(
    "--metrics",
    "metrics_address",
    metavar="ADDRESS",
    help="Serve Prometheus /metrics and /healthz on PORT, HOST:PORT or [IPv6]:PORT "
    "(0.0.0.0:9322 for a Prometheus on another machine; default: off).",
)
def worker(
    queue_url: str,
    server_url: str,
    path_maps: tuple[str, ...],
    jobs: int,
    retries: int,
    retry_delay: float,
    requeue_after: float,
    db_path: str | None,
    metrics_address: str | None,
) -> None:
    """Run the files `vpo process --queue` enqueued; record on --server.

    Needs VPO_WORKER_TOKEN (the server's). Logs one line per run; exits 0 when stopped
    by SIGINT or SIGTERM.
    """
    from dramatiq import Worker

    from vpo.cli.process import stop_on_signals
    from vpo.errors import VpoError

    try:
        from vpo.queue.spool import SpoolExporter, spool_folder
    except ImportError as exc:
        raise VpoError("vpo worker needs the OTLP exporter: pip install 'vpo[otlp]'") from exc
    from vpo.executor.process import Cancellation
    from vpo.media.tools import require_tool
    from vpo.queue.announce import RunAnnouncer
    from vpo.queue.broker import declare, make_broker
    from vpo.queue.handler import MessageFileStore, MessageHandler
    from vpo.queue.last_run_query import fetch_last_run
    from vpo.queue.message import PathMap
    from vpo.queue.metrics_http import serve_metrics
    from vpo.queue.otlp_post import post_spans
    from vpo.queue.telemetry import server_problem, worker_telemetry
    from vpo.telemetry.setup import tune_garbage_collector

    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise VpoError(f"Set {TOKEN_VARIABLE} to the server's worker token.")
    path_map = PathMap.parse(path_maps)
    for tool in ("ffprobe", "mkvpropedit", "mkvmerge", "ffmpeg"):
        require_tool(tool)
    scratch = Path(db_path) if db_path else DEFAULT_DB.expanduser()
    scratch.parent.mkdir(parents=True, exist_ok=True)
    endpoint = server_url.rstrip("/") + "/v1/traces"
    if not endpoint.startswith(("http://", "https://")):
        raise VpoError(f"--server must be an http:// or https:// URL, not {server_url!r}.")
    # Listening before anything else starts: a taken port ends the worker here (exit 1).
    metrics = serve_metrics(metrics_address) if metrics_address is not None else None
    if metrics is not None:
        click.echo(f"Serving /metrics on {metrics.url}/metrics", err=True)
    problem = server_problem(endpoint, token)
    if problem is not None:
        raise VpoError(f"The server at {endpoint} does not take this worker's runs: {problem}.")
    broker = make_broker(queue_url, requeue_after_ms=round(requeue_after * 1000))
    tune_garbage_collector()
    say = lambda line: click.echo(line, err=True)  # noqa: E731
    # The spans go to --server only, through the spool next to the scratch database;
    # what an earlier worker left there is sent first.
    spool = SpoolExporter(spool_folder(scratch), endpoint, token, say)
    if not spool.send_pending():
        say(f"{spool.pending()} batch(es) of spans still in the spool {spool.folder}")
    spool.start()
    telemetry = worker_telemetry(
        spool,
        metric_readers=[metrics.reader] if metrics is not None else (),
        exemplars=metrics.exemplars if metrics is not None else None,
    )
    if metrics is not None:
        metrics.start()  # answers now that its reader is on the MeterProvider
    # Runs in progress are announced to the server, which records them as interrupted
    # if this worker falls silent (vpo.queue.announce).
    telemetry.tracer_provider.add_span_processor(
        RunAnnouncer(
            lambda body: post_spans(endpoint, token, body, ANNOUNCE_TIMEOUT_SECONDS, False),
            telemetry.tracer_provider.resource,
        )
    )
    store = MessageFileStore(scratch)
    cancellation = Cancellation()
    handler = MessageHandler(
        store,
        telemetry,
        path_map,
        cancellation,
        say,
        server_problem=lambda: server_problem(endpoint, token),
        spool=spool,
        last_run=lambda file_id: fetch_last_run(server_url, token, file_id),
    )
    declare(broker, handler, max_retries=retries, min_backoff_ms=round(retry_delay * 1000))
    # Dramatiq backs off between empty polls up to `worker_timeout` (1 s by default), also
    # while every job is busy, so a finished job waited up to a second for its next file
    # (benchmarks/bench_queue.py): 100 ms keeps that gap small for ~20 cheap polls a second.
    consumer = Worker(broker, worker_threads=jobs, worker_timeout=POLL_MS)
    consumer.queue_prefetch = jobs  # one message waiting per thread, no more
    try:
        with stop_on_signals(cancellation) as received:
            consumer.start()
            click.echo(f"Worker ready: {jobs} job(s), recording on {server_url}.", err=True)
            while not received:
                time.sleep(0.2)
            click.echo(f"Stopping ({cancellation.reason}).", err=True)
            consumer.stop()
    finally:
        broker.close()
        telemetry.shutdown()
        store.close()
        if metrics is not None:
            metrics.shutdown()
