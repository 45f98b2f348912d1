"""Running a policy over many files: `--jobs N` files at once.

One file's trouble — a run that failed, a file skipped because it vanished or another
VPO holds it — never ends the batch. The batch stops early, with every run so far
recorded, only when going on would be wrong: under `on_error: fail` after a failure,
when runs can no longer be recorded (a file must never change without its record), or
when the user interrupts it.
"""

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from vpo.workflow.library_store import RecordingError
from vpo.workflow.processor import FileProcessor, RunResult

log = logging.getLogger(__name__)

WAKE_SECONDS = 0.2
StopCheck = Callable[[], str | None]  # a reason to stop before the next file, or None


@dataclass
class BatchReport:
    results: list[RunResult] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str | None = None  # follows "Stopped ": "after the first failure (…)"
    not_started: int = 0

    @property
    def runs(self) -> list[RunResult]:
        return [r for r in self.results if not r.skipped]

    @property
    def skipped(self) -> list[RunResult]:
        return [r for r in self.results if r.skipped]

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.runs if r.success)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.runs if not r.success)

    @property
    def size_before(self) -> int:
        return sum(r.size_before for r in self.runs)

    @property
    def size_after(self) -> int:
        return sum(r.size_after for r in self.runs)


def process_files(
    processor: FileProcessor,
    files: Iterable[Path],
    jobs: int = 1,
    stop_on_failure: bool = False,
    on_start: Callable[[Path], None] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    stop_check: StopCheck | None = None,
) -> BatchReport:
    """Process `files` with up to `jobs` at a time; results arrive in completion order.

    `stop_check` is asked before each file is started (e.g. "statistics cannot be
    recorded"); a reason ends the batch there.
    """
    report = BatchReport()
    pending = list(files)
    stop = threading.Event()

    def stop_with(reason: str) -> None:
        if not stop.is_set():
            report.stop_reason = reason
            stop.set()

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="vpo-run") as pool:
        running: set[Future[RunResult]] = set()
        started: dict[Future[RunResult], Path] = {}
        while pending or running:
            while pending and len(running) < max(1, jobs) and not stop.is_set():
                reason = _stop_reason(processor, stop_check)
                if reason is not None:
                    stop_with(reason)
                    break
                path = pending.pop(0)
                if on_start is not None:
                    on_start(path)
                future = pool.submit(processor.process, path)
                started[future] = path
                running.add(future)
            if not running:
                break
            # Woken a few times a second: a signal the kernel gave to another thread is
            # handled (Python runs handlers in the main thread) within that, not only
            # when the running file is done.
            done, running = wait(running, timeout=WAKE_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except RecordingError as exc:
                    stop_with(f"because runs cannot be recorded: {exc.message}")
                    continue
                except Exception as exc:  # a bug: that file's entry, never the batch's end
                    log.exception("processing %s failed unexpectedly", started[future])
                    result = RunResult.skip(
                        started[future], f"unexpected {type(exc).__name__}: {exc} (a bug)"
                    )
                report.results.append(result)
                if on_result is not None:
                    on_result(result)
                if result.fatal:
                    stop_with(f"because runs cannot be recorded: {result.error}")
                elif not result.success and not result.skipped and stop_on_failure:
                    stop_with("after the first failure (on_error: fail)")
            if stop.is_set():
                _break_off(report, pending)
    if stop.is_set():
        _break_off(report, pending)
    return report


def _break_off(report: BatchReport, pending: list[Path]) -> None:
    """The batch stops here: what was still to do is counted, not started."""
    if pending:
        report.stopped_early = True
        report.not_started += len(pending)
        pending.clear()


def _stop_reason(processor: FileProcessor, stop_check: StopCheck | None) -> str | None:
    if processor.cancellation.cancelled:
        return f"({processor.cancellation.reason or 'interrupted'})"
    problem = stop_check() if stop_check is not None else None
    return f"because runs cannot be recorded: {problem}" if problem else None
