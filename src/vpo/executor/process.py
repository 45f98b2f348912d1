"""Running one external tool: an argument list (never a shell), a timeout, and the
bytes it read and wrote, taken from the kernel's accounting of the finished process.

The process is waited for without being reaped (`waitid(WNOWAIT)`), so its
`/proc/<pid>/io` can still be read — exact I/O figures for the phase's statistics.

A tool never outlives VPO: it runs in its own process group (a terminal's Ctrl-C
reaches VPO, which stops it cleanly) with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel
kills it when the thread that started it — which waits for it — ends, however VPO ends
(even SIGKILL). A `Cancellation` (VPO's SIGTERM / SIGINT handler cancels it) stops the
tools that are running and refuses to start new ones.
"""

import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpo.errors import VpoError

PR_SET_PDEATHSIG = 1
TERMINATE_GRACE_SECONDS = 5.0
KILLED_EXIT_SECONDS = 10.0  # a SIGKILLed tool is gone within this, barring a stuck disk


class ToolError(VpoError):
    """A tool failed, timed out or could not be started; the message says which and why."""


class RunInterrupted(VpoError):
    """The run was cancelled (e.g. VPO got SIGTERM); the message is the reason."""


class Cancellation:
    """A flag VPO's signal handlers raise; tools started with it are stopped at once.

    `cancel` may run inside a signal handler on a thread that holds the lock, so the
    lock is reentrant and `cancel` never waits: it sends SIGTERM to each running tool's
    process group and leaves a timer to send SIGKILL to those still there after
    `grace` seconds. A second `cancel` sends SIGKILL at once."""

    def __init__(self, grace: float = TERMINATE_GRACE_SECONDS) -> None:
        self.grace = grace
        self._lock = threading.RLock()
        self._reason: str | None = None
        self._groups: set[int] = set()

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._reason is not None:
                self._signal_all(signal.SIGKILL)
                return
            self._reason = reason
            self._signal_all(signal.SIGTERM)
        self._escalate()

    def check(self) -> None:
        """Raise `RunInterrupted` when cancelled."""
        if self._reason is not None:
            raise RunInterrupted(self._reason)

    def _register(self, group: int) -> None:
        with self._lock:
            self._groups.add(group)
            if self._reason is None:
                return
            _signal_group(group, signal.SIGTERM)  # cancelled while the tool was starting
        self._escalate()

    def _unregister(self, group: int) -> None:
        """Called before the tool is reaped: its group id cannot be reused meanwhile."""
        with self._lock:
            self._groups.discard(group)

    def _signal_all(self, signum: signal.Signals) -> None:
        for group in self._groups:
            _signal_group(group, signum)

    def _escalate(self) -> None:
        timer = threading.Timer(self.grace, self._kill_remaining)
        timer.daemon = True
        timer.start()

    def _kill_remaining(self) -> None:
        with self._lock:
            self._signal_all(signal.SIGKILL)


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _load_prctl() -> "ctypes._CFuncPtr | None":
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()  # resolved here: the child after fork only calls it


SETPRIV = shutil.which("setpriv")  # util-linux, on every Debian system


def _dying_with_us(
    args: list[str], extra: Callable[[], None] | None
) -> tuple[list[str], Callable[[], None] | None]:
    """The command line and pre-exec code that make a tool die with this process.

    Python code before exec forces a full fork() of the interpreter (about 6 ms a tool
    start); `setpriv --pdeathsig KILL` sets the same flag from C and lets the tool start
    through vfork. Python's own setup is used only when a caller needs code of its own
    in the child (tests set limits) or setpriv is missing.
    """
    if extra is None and SETPRIV is not None:
        return [SETPRIV, "--pdeathsig", "KILL", "--", *args], None
    return args, _child_setup(os.getpid(), extra)


def _child_setup(parent: int, extra: Callable[[], None] | None) -> Callable[[], None]:
    """The code a tool's process runs before exec: die with its parent, then `extra`."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the line above
                os.kill(os.getpid(), signal.SIGKILL)
        if extra is not None:
            extra()

    return setup


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


class _ToolProcess(subprocess.Popen):
    """`Popen` that hands its caller the child's pid as soon as the fork returns it.

    `Popen.__init__` goes on after the fork (it waits for the exec, wraps the pipes),
    and an exception a signal handler raises there would lose the object, and with it
    the only way to stop the tool. `_execute_child` is where CPython forks, on every
    version VPO supports."""

    def __init__(self, args: list[str], started: list[int], **kwargs: Any) -> None:
        self._started = started
        super().__init__(args, **kwargs)

    def _execute_child(self, *args: Any, **kwargs: Any) -> None:
        try:
            super()._execute_child(*args, **kwargs)  # type: ignore[misc]
        finally:
            if self.pid is not None:
                self._started.append(self.pid)


def run_tool(
    args: Sequence[str],
    *,
    timeout: float,
    on_stdout_line: Callable[[str], None] | None = None,
    ok_codes: Sequence[int] = (0,),
    preexec_fn: Callable[[], None] | None = None,
    cancellation: Cancellation | None = None,
) -> ToolResult:
    """Run `args`, raising `ToolError` on a start failure, a timeout or a bad exit code,
    and `RunInterrupted` when `cancellation` is (or becomes) cancelled."""
    name = Path(args[0]).name
    if cancellation is not None:
        cancellation.check()
    start = time.monotonic()
    command, setup = _dying_with_us(list(args), preexec_fn)
    out: list[str] = []
    err: list[str] = []
    started: list[int] = []  # the child's pid, from the moment it exists
    # From the fork on: a KeyboardInterrupt (or any BaseException) raised in this thread
    # — even inside Popen while it waits for the exec, or while the readers start —
    # takes the tool with it.
    try:
        try:
            proc = _ToolProcess(
                command,
                started,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                preexec_fn=setup,
                start_new_session=True,
            )
        except OSError as exc:
            started.clear()  # the exec failed: Popen has reaped the child already
            raise ToolError(f"cannot start {name}: {exc.strerror}") from exc
        readers = [
            threading.Thread(target=_pump, args=(proc.stdout, out, on_stdout_line), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, err, None), daemon=True),
        ]
        if cancellation is not None:
            cancellation._register(proc.pid)
        try:
            for reader in readers:
                reader.start()
            finished = _wait_unreaped(proc.pid, timeout)
        finally:
            if cancellation is not None:
                cancellation._unregister(proc.pid)
    except BaseException:
        for pid in started:
            _signal_group(pid, signal.SIGKILL)
            # Dead before the caller cleans up: a tool caught mid-open() could otherwise
            # create its output again after the caller removed it.
            with contextlib.suppress(BaseException):
                _wait_unreaped(pid, KILLED_EXIT_SECONDS)
        raise
    if not finished:
        _signal_group(proc.pid, signal.SIGKILL)
        _wait_unreaped(proc.pid, timeout)
    io = _io_of(proc.pid)
    # Whatever the tool left in its group dies with it (the leader is not reaped yet,
    # so the group id cannot belong to anyone else).
    _signal_group(proc.pid, signal.SIGKILL)
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
    if cancellation is not None and cancellation.reason is not None:
        raise RunInterrupted(cancellation.reason)
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
