"""Running a policy over many files: `--jobs N` files at once, stopping early under
`on_error: fail`. Each file is one run of `FileProcessor`."""

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from vpo.workflow.processor import FileProcessor, RunResult


@dataclass
class BatchReport:
    results: list[RunResult] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.success)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.success)

    @property
    def size_before(self) -> int:
        return sum(r.size_before for r in self.results)

    @property
    def size_after(self) -> int:
        return sum(r.size_after for r in self.results)


def process_files(
    processor: FileProcessor,
    files: Iterable[Path],
    jobs: int = 1,
    stop_on_failure: bool = False,
    on_start: Callable[[Path], None] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> BatchReport:
    """Process `files` with up to `jobs` at a time; results arrive in completion order."""
    report = BatchReport()
    pending = list(files)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="vpo-run") as pool:
        running: set[Future[RunResult]] = set()
        while pending or running:
            while pending and len(running) < max(1, jobs) and not stop.is_set():
                path = pending.pop(0)
                if on_start is not None:
                    on_start(path)
                running.add(pool.submit(processor.process, path))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                report.results.append(result)
                if on_result is not None:
                    on_result(result)
                if not result.success and stop_on_failure:
                    stop.set()
            if stop.is_set() and pending:
                report.stopped_early = True
                pending.clear()
    return report
