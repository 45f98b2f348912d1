"""Progress for long work: a rich bar on a terminal, plain lines otherwise (logs, CI)."""

import sys
from types import TracebackType
from typing import TYPE_CHECKING

import click

from vpo.cli.output import stderr_console, stderr_is_terminal
from vpo.pathnames import path_text

if TYPE_CHECKING:
    from pathlib import Path

    from rich.progress import Progress, TaskID

    from vpo.workflow.processor import RunResult
    from vpo.workflow.scan import Outcome


class ScanProgressDisplay:
    """Implements `vpo.workflow.scan.ScanProgress` on stderr."""

    def __init__(self, label: str = "Scanning") -> None:
        self.label = label
        self.total = 0
        self.done = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> "ScanProgressDisplay":
        if stderr_is_terminal():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
                console=stderr_console(),
                transient=True,
            )
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._task = self._bar.add_task(self.label, total=total, current="")
        elif total:
            click.echo(f"{self.label} {total} file{'s' if total != 1 else ''}…", err=True)

    def advance(self, path: str, outcome: "Outcome", error: str | None) -> None:
        self.done += 1
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, current=path[-60:])
            return
        if outcome.value != "unchanged":  # a re-scan of a big library stays quiet
            suffix = f": {error}" if error else ""
            click.echo(f"[{self.done}/{self.total}] {outcome.value} {path}{suffix}", err=True)


class BatchProgressDisplay:
    """Progress of `vpo process`: a bar on a terminal, and one line per finished file —
    on stdout when stdout is not a terminal (`vpo process … > log` shows progress as it
    goes), else above the bar or on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> "BatchProgressDisplay":
        if stderr_is_terminal():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("Processing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
                console=stderr_console(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("process", total=self.total, current="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def started(self, path: "Path") -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, current=path_text(path.name)[-60:])

    def finished(self, result: "RunResult") -> None:
        from vpo.cli.output import human_size

        self.done += 1
        where = path_text(result.path)
        if result.skipped:
            line = f"[{self.done}/{self.total}] skipped {where}: {result.error}"
        elif result.success:
            changes = f"{result.changes} change{'s' if result.changes != 1 else ''}"
            line = (
                f"[{self.done}/{self.total}] ok {where} ({changes}, "
                f"saved {human_size(result.saved)})"
            )
        else:
            line = f"[{self.done}/{self.total}] FAILED {where}: {result.error}"
        if not sys.stdout.isatty():
            click.echo(line)
            sys.stdout.flush()
        elif self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            click.echo(line, err=True)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1)
