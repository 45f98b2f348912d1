"""`vpo process --policy FILE PATH...`: apply a policy to every video file under PATHs."""

from pathlib import Path
from typing import TYPE_CHECKING

import click

from vpo.cli.context import AppContext, db_option
from vpo.cli.paths import require_paths

if TYPE_CHECKING:
    from vpo.policy.schema import Policy
    from vpo.workflow.batch import BatchReport


@click.command()
@click.option("--policy", "policy_path", required=True, metavar="FILE", help="The policy (YAML).")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan of each file; change and record nothing."
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1, max=32),
    default=1,
    show_default=True,
    help="Files processed at once.",
)
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
) -> None:
    """Apply a policy to every video file under PATHs (recursively).

    Every run is recorded (see `vpo stats`); the original file is replaced only by a
    verified result. Exits 1 when any file failed.
    """
    from vpo.media.tools import require_tool
    from vpo.policy.loader import load_policy
    from vpo.workflow.scan import discover, parse_extensions

    policy = load_policy(policy_path)
    roots = require_paths(paths)
    for tool in ("ffprobe", "mkvpropedit", "mkvmerge", "ffmpeg"):
        require_tool(tool)  # all before any file is touched
    files = discover([r.resolve() for r in roots], parse_extensions(extensions))
    if not files:
        click.echo("No video files found.")
        return
    if dry_run:
        _dry_run(policy, files)
        return
    report = _run(app, policy, files, jobs, metrics_port)
    _summary(report)
    if report.failed:
        raise SystemExit(1)


def _dry_run(policy: "Policy", files: list[Path]) -> None:
    from vpo.media.probe import ProbeError, probe
    from vpo.policy.planner import plan

    for path in files:
        click.echo(str(path))
        try:
            file_plan = plan(probe(path), policy)
        except ProbeError as exc:
            click.echo(f"  cannot plan: {exc.message}")
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
    click.echo(f"Dry run: {len(files)} file(s) planned; nothing was changed or recorded.")


def _run(
    app: AppContext, policy: "Policy", files: list[Path], jobs: int, metrics_port: int | None
) -> "BatchReport":
    from vpo.cli.progress import BatchProgressDisplay
    from vpo.cli.recording import recording
    from vpo.workflow.batch import process_files
    from vpo.workflow.library_store import LibraryStore
    from vpo.workflow.processor import FileProcessor

    with recording(app, metrics_port) as telemetry:
        store = LibraryStore(app.resolved_db_path)
        try:
            processor = FileProcessor(policy, store, telemetry.tracer, telemetry.metrics)
            with BatchProgressDisplay(len(files)) as progress:
                return process_files(
                    processor,
                    files,
                    jobs,
                    stop_on_failure=policy.config.on_error == "fail",
                    on_start=progress.started,
                    on_result=progress.finished,
                )
        finally:
            store.close()


def _summary(report: "BatchReport") -> None:
    from vpo.cli.output import human_size

    saved = report.size_before - report.size_after
    percent = f" ({saved / report.size_before:.1%})" if report.size_before else ""
    click.echo(
        f"Processed {len(report.results)} file(s): {report.succeeded} succeeded, "
        f"{report.failed} failed. Size {human_size(report.size_before)} → "
        f"{human_size(report.size_after)}, saved {human_size(saved)}{percent}."
    )
    for result in report.results:
        if not result.success:
            click.echo(f"  failed: {result.path}: {result.error}")
    if report.stopped_early:
        click.echo("Stopped after the first failure (on_error: fail); the rest was not processed.")
