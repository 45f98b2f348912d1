"""Who is working on what, told by locks the kernel releases when their process dies.

A PID alone cannot say whether a run is alive: PIDs are reused, and a VPO in another
PID namespace (a container on the same host) has a PID that means nothing here. An
`flock` held on an open file can: every process on the host that opens the same file
sees it, and it disappears with its holder however that holder ends (exit, crash,
SIGKILL, power loss). So:

- a `Lease` is held by each VPO process that records runs in a library, for the
  process's whole life, in `<library.db>.locks/`; run markers name its token, and a
  marker whose lease nobody holds belongs to a dead run;
- a `Claim` is held on one media file for the whole of its run, in the same folder; a
  second VPO on that library skips the file and says who holds it;
- temporary outputs and edit journals lock themselves (`hold_lock`), so one that is
  not locked was left by a process that is gone (`is_locked`).

flock locks belong to an open file description, so two claims on one file conflict
even inside one process (two `--jobs` threads, a file listed twice).
"""

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from vpo.errors import VpoError

LOCKS_SUFFIX = ".locks"


@dataclass(frozen=True)
class Owner:
    """A VPO process: where it runs, its PID there, when it started, a unique token."""

    host: str
    pid: int
    started: str | None
    token: str

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Owner | None":
        try:
            data = json.loads(text)
            return cls(str(data["host"]), int(data["pid"]), data.get("started"), str(data["token"]))
        except (ValueError, KeyError, TypeError):
            return None


@cache
def _owner_for(pid: int) -> Owner:
    return Owner(socket.gethostname(), pid, process_start_time(pid), secrets.token_hex(8))


def this_owner() -> Owner:
    """This process (a new token after a fork: the child is another owner)."""
    return _owner_for(os.getpid())


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    return stat[stat.rfind(")") + 2 :].split()[19]


def locks_dir(db_path: str | os.PathLike[str]) -> Path:
    """`library.db` → `library.db.locks/` (beside the database, like its WAL)."""
    db = Path(db_path)
    return db.with_name(db.name + LOCKS_SUFFIX)


# --- locks on single files ----------------------------------------------------------


def is_locked(path: str | os.PathLike[str]) -> bool:
    """True when some open file holds an flock on `path` (False when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # a filesystem without locks: nothing can be held there either
    finally:
        os.close(fd)
    return False


class HeldLock:
    """An exclusive flock on a file this process created (or opened) and keeps open."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def release(self, unlink: bool = False) -> None:
        """Drop the lock; with `unlink`, remove the file first (while still holding it,
        so nobody can lock the old file after we let go)."""
        if self.fd < 0:
            return
        if unlink:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)
        self.fd = -1


# A stale-lock cleaner holds a lock for microseconds while it tests it: a few short
# retries tell that from a real holder, who keeps it for a whole run.
BUSY_RETRIES = 3
BUSY_RETRY_SECONDS = 0.005


def hold_lock(path: str | os.PathLike[str], create: bool = True) -> HeldLock | None:
    """Lock `path` exclusively (creating it when `create`); None when another holds it.

    Safe against the holder unlinking the file between our open and our lock: after
    locking, the path must still name the file we locked, else we try again.
    """
    target = Path(path)
    # An existing file is only locked (and perhaps deleted, which needs the folder, not
    # the file, to be writable): read-only is enough, so a 0444 leftover is no obstacle.
    access = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    flags = access | os.O_CLOEXEC | os.O_NOFOLLOW
    for attempt in range(100):
        try:
            fd = os.open(target, flags, 0o644)
        except FileNotFoundError:
            if create:
                raise
            return None  # another cleaner just removed it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if attempt < BUSY_RETRIES:  # perhaps a cleaner testing it for a moment
                time.sleep(BUSY_RETRY_SECONDS)
                continue
            return None
        except OSError:  # a filesystem without flock (ENOLCK): nothing left behind
            os.close(fd)
            if create:
                with contextlib.suppress(OSError):
                    target.unlink()
            raise
        try:
            same = target.lstat().st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return HeldLock(target, fd)
        os.close(fd)
        if not create:
            return None
    raise OSError(f"cannot lock {target}: it keeps being replaced")


# --- leases: a process's liveness -------------------------------------------------------


class Lease:
    """This process's lease in a library's locks folder, held until the process ends.

    One per process and library (`lease_for`): released by the kernel at exit, its file
    removed by `release` on a clean exit or by `remove_stale_leases` after a crash.
    """

    def __init__(self, directory: Path, owner: Owner) -> None:
        directory.mkdir(exist_ok=True)
        self.owner = owner
        self.path = lease_path(directory, owner.token)
        held = hold_lock(self.path)
        if held is None:  # a random 64-bit token in use: cannot happen
            raise OSError(f"lease {self.path} is held by another process")
        self._held = held
        try:
            os.ftruncate(held.fd, 0)
            os.write(held.fd, owner.to_json().encode())
        except OSError:
            held.release(unlink=True)  # e.g. a full disk: leave no half-made lease behind
            raise

    def release(self) -> None:
        self._held.release(unlink=True)


def lease_path(directory: Path, token: str) -> Path:
    return directory / f"owner-{token}.lock"


_leases: dict[tuple[int, Path], Lease] = {}


def lease_for(db_path: str | os.PathLike[str]) -> Lease:
    """This process's lease on the library at `db_path`, taken on first use."""
    directory = locks_dir(Path(db_path).resolve())
    key = (os.getpid(), directory)
    lease = _leases.get(key)
    if lease is None:
        if not _leases:
            # Registered before any telemetry's own exit hook, so it runs after them (atexit
            # is last in, first out): the lease goes once every run is flushed.
            atexit.register(_release_leases)
        lease = _leases[key] = Lease(directory, this_owner())
    return lease


def _release_leases() -> None:
    """On a clean exit, remove this process's lease files (a crash leaves them to
    `remove_stale_leases`)."""
    for (pid, _directory), lease in list(_leases.items()):
        if pid == os.getpid():
            with contextlib.suppress(OSError):
                lease.release()


def lease_alive(db_path: str | os.PathLike[str], token: str) -> bool:
    """Is the process that holds lease `token` on this library still running?"""
    return is_locked(lease_path(locks_dir(db_path), token))


def remove_stale_leases(db_path: str | os.PathLike[str]) -> int:
    """Delete lease and claim files nobody holds (left by crashed processes)."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in locks_dir(db_path).iterdir():
            held = hold_lock(entry, create=False)
            if held is not None:
                held.release(unlink=True)
                removed += 1
    return removed


# --- claims: one run per file ---------------------------------------------------------------


class FileClaimedError(VpoError):
    """Another VPO process is working on the file; the message names it."""

    def __init__(self, path: Path, holder: Owner | None) -> None:
        who = holder.describe() if holder else "another VPO process"
        super().__init__(f"being processed by {who}")
        self.path = path
        self.holder = holder


def claim_path(db_path: str | os.PathLike[str], file_path: str | os.PathLike[str]) -> Path:
    digest = hashlib.sha256(os.fsencode(os.fspath(file_path))).hexdigest()[:32]
    return locks_dir(db_path) / f"claim-{digest}.lock"


class LocksFolderError(VpoError):
    """The library's locks folder refuses a claim (read-only, full disk)."""


@contextlib.contextmanager
def claim(db_path: str | os.PathLike[str], file_path: Path) -> Iterator[Owner]:
    """Hold the library's claim on `file_path` (give it resolved) for the block.

    Raises `FileClaimedError` naming the holder when another process (or thread) has it,
    `LocksFolderError` when the claim cannot be written at all.
    """
    path = claim_path(db_path, file_path)
    owner = this_owner()
    try:
        path.parent.mkdir(exist_ok=True)
        held = hold_lock(path)
        if held is None:
            raise FileClaimedError(file_path, _read_owner(path))
        try:
            os.ftruncate(held.fd, 0)
            os.write(held.fd, owner.to_json().encode())
        except OSError:
            held.release(unlink=True)
            raise
    except OSError as exc:
        raise LocksFolderError(
            f"cannot write a claim in the library's locks folder {path.parent}: {exc.strerror}"
        ) from exc
    try:
        yield owner
    finally:
        held.release(unlink=True)


def _read_owner(path: Path) -> Owner | None:
    try:
        return Owner.from_json(path.read_text())
    except OSError:
        return None
