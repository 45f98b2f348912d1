"""Replacing an original only with a verified copy.

Work is written to a hidden temporary file beside the original (same filesystem, so the
final rename is atomic); once verified it is flushed to disk and renamed over the
original, then the directory entry is flushed. On any failure the temporary file is
removed and the original is untouched. A temporary file left by a killed VPO names the
dead process and is removed by the next run.
"""

import contextlib
import os
import re
import secrets
from pathlib import Path

from vpo.db.interrupted import process_alive

_TEMP = re.compile(r"^\.(?P<name>.+)\.vpo-(?P<pid>\d+)-[0-9a-f]{8}(?P<suffix>\.[^.]*)?$")


class TemporaryOutput:
    """The temporary file a phase writes, and the rules for swapping it in."""

    def __init__(self, original: Path) -> None:
        self.original = original
        token = secrets.token_hex(4)
        self.path = original.with_name(
            f".{original.name}.vpo-{os.getpid()}-{token}{original.suffix}"
        )

    def commit(self) -> None:
        """fsync the new file, give it the original's permissions, rename it over the
        original and fsync the directory, so the swap survives a power cut."""
        stat = self.original.stat()
        with self.path.open("rb") as handle:
            os.fsync(handle.fileno())
        self.path.chmod(stat.st_mode & 0o7777)
        with contextlib.suppress(PermissionError):  # not ours to give away: stays the runner's
            os.chown(self.path, stat.st_uid, stat.st_gid)
        self.path.replace(self.original)
        _fsync_directory(self.original.parent)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def stale_temporaries(directory: Path) -> list[Path]:
    """Temporary files in `directory` whose VPO process is gone."""
    found = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return found
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match and not process_alive(int(match.group("pid")), None):
            found.append(entry)
    return found


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete what `stale_temporaries` finds; return what was removed."""
    removed = []
    for path in stale_temporaries(directory):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
