"""Running one external tool: an argument list (never a shell), a timeout, and the
bytes it read and wrote, taken from the kernel's accounting of the finished process.

The process is waited for without being reaped (`waitid(WNOWAIT)`), so its
`/proc/<pid>/io` can still be read — exact I/O figures for the phase's statistics.
"""

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vpo.errors import VpoError


class ToolError(VpoError):
    """A tool failed, timed out or could not be started; the message says which and why."""


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    bytes_read: int | None
    bytes_written: int | None

    def reason(self) -> str:
        """The tool's last complaint, for error messages."""
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"


def run_tool(
    args: Sequence[str],
    *,
    timeout: float,
    on_stdout_line: Callable[[str], None] | None = None,
    ok_codes: Sequence[int] = (0,),
    preexec_fn: Callable[[], None] | None = None,
) -> ToolResult:
    """Run `args`, raising `ToolError` on a start failure, a timeout or a bad exit code."""
    name = Path(args[0]).name
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            preexec_fn=preexec_fn,
        )
    except OSError as exc:
        raise ToolError(f"cannot start {name}: {exc.strerror}") from exc
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, out, on_stdout_line), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, None), daemon=True),
    ]
    for reader in readers:
        reader.start()
    finished = _wait_unreaped(proc.pid, timeout)
    if not finished:
        proc.kill()
    io = _io_of(proc.pid)
    proc.wait()
    for reader in readers:
        reader.join()
    result = ToolResult(
        returncode=proc.returncode,
        stdout="".join(out),
        stderr="".join(err),
        seconds=time.monotonic() - start,
        bytes_read=io.get("rchar"),
        bytes_written=io.get("wchar"),
    )
    if not finished:
        raise ToolError(f"{name} took longer than {timeout:g} s and was stopped")
    if result.returncode not in ok_codes:
        if result.returncode < 0:
            signame = signal.Signals(-result.returncode).name
            raise ToolError(f"{name} was killed by {signame}: {result.reason()}")
        raise ToolError(f"{name} failed (exit status {result.returncode}): {result.reason()}")
    return result


def _pump(stream: object, sink: list[str], on_line: Callable[[str], None] | None) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line)
        if on_line is not None:
            on_line(line.rstrip("\n"))


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Wait until `pid` exits without reaping it; False when the timeout came first."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if poller.poll(min(remaining, 3600) * 1000):
                    break
        finally:
            os.close(pidfd)
    while True:  # after pidfd says so this returns at once; without pidfd it polls
        status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if status is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _io_of(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            values[key] = int(value)
    return values
