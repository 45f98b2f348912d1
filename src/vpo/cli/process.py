"""`vpo process --policy FILE PATH...`: apply a policy to every video file under PATHs.

SIGINT and SIGTERM stop the batch the way a user wants: the running tools are stopped,
their temporary files removed, the interrupted runs recorded as such, every run so far
flushed to the database, and the command exits 130 / 143 (docs/cli.md).
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vpo.cli.context import AppContext, db_option
from vpo.cli.options import jobs_option
from vpo.cli.paths import require_paths

if TYPE_CHECKING:
    from vpo.cli.recording import RecordingProblemsError
    from vpo.executor.process import Cancellation
    from vpo.policy.schema import Policy
    from vpo.workflow.batch import BatchReport


@click.command()
@click.option("--policy", "policy_path", required=True, metavar="FILE", help="The policy (YAML).")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan of each file; change and record nothing."
)
@jobs_option("Files processed at once.")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    metavar="PORT",
    help="Serve Prometheus /metrics on 127.0.0.1:PORT while the batch runs.",
)
@click.option(
    "--extensions",
    metavar="LIST",
    help="Comma-separated extensions to process (default: the usual video containers).",
)
@click.option(
    "--queue",
    "queue_url",
    metavar="URL",
    help="Enqueue one message per file on this Redis (redis://HOST:PORT/DB) for `vpo worker`.",
)
@db_option
@click.pass_obj
def process(
    app: AppContext,
    policy_path: str,
    paths: tuple[str, ...],
    dry_run: bool,
    jobs: int,
    metrics_port: int | None,
    extensions: str | None,
    queue_url: str | None = None,
) -> None:
    """Apply a policy to every video file under PATHs (recursively).

    Every run is recorded (see `vpo stats`); the original file is replaced only by a
    verified result. Exits 1 when any file failed or was skipped, 130 / 143 when
    stopped by SIGINT / SIGTERM.
    """
    from vpo.media.tools import require_tool
    from vpo.policy.loader import load_policy
    from vpo.workflow.scan import discover, parse_extensions

    policy = load_policy(policy_path)
    roots = require_paths(paths)
    for tool in ("ffprobe",) if queue_url else ("ffprobe", "mkvpropedit", "mkvmerge", "ffmpeg"):
        require_tool(tool)  # all before any file is touched
    files = discover([r.resolve() for r in roots], parse_extensions(extensions))
    if not files:
        click.echo("No video files found.")
        return
    if dry_run:
        if not _dry_run(policy, files):
            raise SystemExit(1)
        return
    if queue_url is not None:  # scanned into this database, run by `vpo worker`
        from vpo.queue.enqueue import enqueue_files

        sent = enqueue_files(app.resolved_db_path, policy_path, roots, files, queue_url)
        click.echo(f"Enqueued {len(sent)} file(s).")
        return
    from vpo.executor.process import Cancellation

    cancellation = Cancellation()
    with stop_on_signals(cancellation) as received:
        report, unrecorded = _run(app, policy, files, jobs, metrics_port, cancellation)
    _summary(report)
    if unrecorded is not None:
        click.echo(f"Error: {unrecorded.message}", err=True)
    if received:
        raise SystemExit(128 + received[0])
    if report.failed or report.skipped or report.stopped_early or unrecorded is not None:
        raise SystemExit(1)


@contextmanager
def stop_on_signals(cancellation: "Cancellation") -> Iterator[list[int]]:
    """SIGINT/SIGTERM cancel the batch (tools stopped, runs recorded as interrupted)
    instead of killing VPO mid-write; yields the signals received, first first."""
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        cancellation.cancel(f"interrupted by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _dry_run(policy: "Policy", files: list[Path]) -> bool:
    """Print each file's plan; False when some file could not be planned."""
    from vpo.media.probe import ProbeError, probe
    from vpo.pathnames import path_text
    from vpo.policy.planner import plan
    from vpo.workflow.processor import resolve_file

    unplannable: list[Path] = []
    for path in files:
        click.echo(path_text(path))
        resolved, problem = resolve_file(path)
        try:
            if resolved is None:
                raise OSError(problem)
            file_plan = plan(probe(resolved), policy)
        except (ProbeError, OSError) as exc:
            reason = exc.message if isinstance(exc, ProbeError) else exc.strerror or str(exc)
            click.echo(f"  cannot plan: {reason}")
            unplannable.append(path)
            continue
        if file_plan.empty:
            click.echo("  already conforms: nothing to do")
        for phase in file_plan.phases:
            if phase.actions:
                click.echo(f"  phase {phase.name}:")
            for action in phase.actions:
                click.echo(f"    {action.describe()}")
        if file_plan.video_skip_reason:
            click.echo(f"  video transcode skipped: {file_plan.video_skip_reason}")
    planned = len(files) - len(unplannable)
    click.echo(f"Dry run: {planned} file(s) planned; nothing was changed or recorded.")
    if unplannable:
        click.echo(f"{len(unplannable)} file(s) could not be planned:")
        for path in unplannable:
            click.echo(f"  {path_text(path)}")
    return not unplannable


def _run(
    app: AppContext,
    policy: "Policy",
    files: list[Path],
    jobs: int,
    metrics_port: int | None,
    cancellation: "Cancellation",
) -> "tuple[BatchReport, RecordingProblemsError | None]":
    """The batch's report, and the error saying which runs could not be recorded."""
    from vpo.cli.progress import BatchProgressDisplay
    from vpo.cli.recording import RecordingProblemsError, recording
    from vpo.db.connection import check_writable
    from vpo.workflow.batch import BatchReport, process_files
    from vpo.workflow.library_store import LibraryStore
    from vpo.workflow.processor import FileProcessor

    store = LibraryStore(app.resolved_db_path)
    try:
        # No file is touched unless its run can be recorded.
        check_writable(store.db_path)
        report = BatchReport()
        try:
            with recording(app, metrics_port) as telemetry:
                processor = FileProcessor(
                    policy, store, telemetry.tracer, telemetry.metrics, cancellation=cancellation
                )
                with BatchProgressDisplay(len(files)) as progress:
                    report = process_files(
                        processor,
                        files,
                        jobs,
                        stop_on_failure=policy.config.on_error == "fail",
                        on_start=progress.started,
                        on_result=progress.finished,
                        stop_check=lambda: (
                            telemetry.recording_problem() or _unwritable(store.db_path)
                        ),
                    )
        except RecordingProblemsError as exc:
            return report, exc  # the summary still says what the batch did
        return report, None
    finally:
        store.close()


def _unwritable(db_path: Path) -> str | None:
    """Why the database cannot take a run's rows now (checked before each file, around
    the files only: the batch began with a committed write, and the exporter reports a
    write that fails since), or None."""
    from vpo.db.connection import check_writable
    from vpo.errors import DatabaseError

    try:
        check_writable(db_path, commit=False)
    except DatabaseError as exc:
        return exc.message
    return None


def _summary(report: "BatchReport") -> None:
    from vpo.cli.output import human_size
    from vpo.pathnames import path_text

    saved = report.size_before - report.size_after
    percent = f" ({saved / report.size_before:.1%})" if report.size_before else ""
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    click.echo(
        f"Processed {len(report.runs)} file(s): {report.succeeded} succeeded, "
        f"{report.failed} failed{skipped}. Size {human_size(report.size_before)} → "
        f"{human_size(report.size_after)}, saved {human_size(saved)}{percent}."
    )
    for result in report.results:
        if result.skipped:
            click.echo(f"  skipped: {path_text(result.path)}: {result.error}")
        elif not result.success:
            click.echo(f"  failed: {path_text(result.path)}: {result.error}")
    if report.stopped_early:
        click.echo(f"Stopped {report.stop_reason}; {report.not_started} file(s) were not started.")
