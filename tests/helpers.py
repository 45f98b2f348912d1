"""Running the real `vpo` command and reading the database it wrote."""

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from vpo.cli import cli

EXAMPLES = Path(__file__).parents[1] / "examples" / "policies"
CLEANUP = EXAMPLES / "language-cleanup.yaml"
# A transcode slow enough on the sample movie that a test can act while ffmpeg writes.
SLOW_TRANSCODE = """\
schema_version: 1
name: slow
phases:
  - name: compress
    transcode: {video: {to: hevc, crf: 18, preset: veryslow}}
"""


# Debian's Chromium, as the dashboard tests and benchmarks drive it (root needs no sandbox;
# nothing may reach the network).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def invoke(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Result:
    """Run `vpo ARGS` in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def run_vpo(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m vpo ARGS` as a real process (for exit codes and PATH changes)."""
    return subprocess.run(
        [sys.executable, "-m", "vpo", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def query(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    """Rows of `sql` from the database file, through a connection of the test's own."""
    conn = sqlite3.connect(db_path)
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def tool_dir_without(tmp_path: Path, *hidden: str) -> str:
    """A PATH holding the usual tools except `hidden` (to test a missing tool for real)."""
    import shutil

    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in ("ffprobe", "ffmpeg", "mkvmerge", "mkvpropedit", "promtool"):
        found = shutil.which(name)
        if found and name not in hidden:
            (folder / name).symlink_to(found)
    return str(folder)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` made unwritable for real, even for root (chattr +i; chmod otherwise)."""
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o444)
    try:
        yield path
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


def database_with_files(path: Path, count: int = 1) -> Path:
    """A VPO database holding `count` file rows (ids 1..count) for runs to refer to."""
    from vpo.db import open_database

    conn = open_database(path)
    conn.executemany(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (?, ?, 1, 1, 'x')",
        [(i, f"/library/file-{i}.mkv") for i in range(1, count + 1)],
    )
    conn.close()
    return path


def fill_disk(folder: Path) -> None:
    """Write until the file system says ENOSPC."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC
    finally:
        os.close(fd)
    fd = os.open(folder / "filler-tail", os.O_WRONLY | os.O_CREAT)
    try:  # the last partial block
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def dies_soon(pid: int, seconds: float = 10) -> bool:
    """A killed process takes a moment to exit (its memory is torn down first)."""
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def tool_running(name: str, argument: str) -> list[int]:
    """PIDs of `name` processes whose command line mentions `argument` (give the test's
    own folder: a tool of an earlier test may still be exiting)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        named = cmdline and Path(os.fsdecode(cmdline[0])).name == name
        if named and any(argument.encode() in part for part in cmdline):
            pids.append(int(entry.name))
    return pids


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """`check()`'s first truthy answer, asked every 50 ms; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def assert_statistics_exact(db_path: Path) -> None:
    """The rollups equal plain SQL over the runs, and no action or phase row lost its run."""
    from vpo.db import open_database
    from vpo.db.aggregates import plain_totals, window_totals

    conn = open_database(db_path)
    try:
        for by in (None, "policy", "day"):
            assert window_totals(conn, by=by) == plain_totals(conn, by=by), by
        orphans = conn.execute(
            "SELECT (SELECT count(*) FROM action_results WHERE stats_id NOT IN "
            "(SELECT id FROM processing_stats)) + (SELECT count(*) FROM performance_metrics "
            "WHERE stats_id NOT IN (SELECT id FROM processing_stats))"
        ).fetchone()[0]
        assert orphans == 0
    finally:
        conn.close()
