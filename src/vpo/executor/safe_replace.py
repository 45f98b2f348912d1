"""Replacing an original only with a verified copy, and cleaning up after killed runs.

Work is written to a hidden temporary file beside the original (same filesystem, so the
final rename is atomic); once verified it is flushed to disk and renamed over the
original, then the directory entry is flushed. On any failure the temporary file is
removed and the original is untouched.

The temporary file is created by VPO and flock-ed until it is committed or discarded
(mkvmerge and ffmpeg open their output with O_TRUNC, so they write into that very
file). One nobody holds was left by a process that is gone — whatever its PID
namespace or host — and `clean_stale_work` removes it; edit journals nobody holds are
applied (`vpo.media.edit_journal`). Names fit 255 bytes whatever the original's length.
"""

import contextlib
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from vpo.errors import VpoError
from vpo.media import edit_journal
from vpo.ownership import FileClaimedError, hold_lock, is_locked

# `.NAME.vpo-TOKEN.ext`; older VPOs put their PID before the token.
_TEMP = re.compile(r"^\..*\.vpo-(?:\d+-)?[0-9a-f]{8}(?:\.[^.]*)?$", re.DOTALL)


class TemporaryFileError(VpoError):
    """No temporary file can be made beside the original (read-only folder, full disk)."""


class TemporaryOutput:
    """The temporary file a phase writes (created and locked here), and the rules for
    swapping it in."""

    def __init__(self, original: Path) -> None:
        self.original = original
        for _ in range(10):  # a held name (a 32-bit token in use) gets another token
            self.path = edit_journal.hidden_sibling(
                original, edit_journal.new_token(), original.suffix
            )
            try:
                held = hold_lock(self.path)  # creates the file; safe against a cleaner's race
            except OSError as exc:
                raise TemporaryFileError(
                    f"cannot create a temporary file in {original.parent}: {exc.strerror}"
                ) from exc
            if held is not None:
                self._held = held
                return
        raise TemporaryFileError(f"cannot create a temporary file beside {original.name}")

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
        self._held.release()  # the lock goes with the file, now the original
        _fsync_directory(self.original.parent)

    def discard(self) -> None:
        self._held.release(unlink=True)


def stale_temporaries(directory: Path) -> list[Path]:
    """Temporary files in `directory` that no running VPO holds."""
    try:
        # Only hidden names can be ours: a big folder is listed, not sorted whole.
        entries = sorted(e for e in directory.iterdir() if e.name.startswith("."))
    except OSError:
        return []
    return [
        e
        for e in entries
        if _TEMP.match(e.name)
        and not e.name.endswith(edit_journal.SUFFIX)  # journals are applied, never deleted
        and e.is_file()
        and not is_locked(e)
    ]


def find_stale_work(directory: Path) -> list[Path]:
    """What killed runs left in `directory`: temporary files and edit journals nobody holds."""
    return sorted([*stale_temporaries(directory), *edit_journal.find_stale(directory)])


def clean_stale_work(
    directory: Path, claim: Callable[[Path], AbstractContextManager[object]] | None = None
) -> list[str]:
    """Undo interrupted in-place edits (from their journals) and delete stale temporary
    files in `directory`; one sentence per thing done or not done.

    `claim` takes the library's claim on a journal's file for the restore, so that no
    run starts on the file while it is put back (a file claimed by a run is left to it).
    """
    done = []
    for journal in edit_journal.find_stale(directory):
        target = edit_journal.target_of(journal)
        try:
            with claim(target) if claim and target else contextlib.nullcontext():
                sentence = edit_journal.recover_journal(journal)
        except FileClaimedError:
            continue  # the run that holds the file restores it itself
        except (OSError, VpoError) as exc:
            reason = exc.message if isinstance(exc, VpoError) else exc.strerror
            sentence = f"cannot undo the interrupted edit in {journal.name}: {reason}"
        if sentence:
            done.append(sentence)
    return done + remove_stale_temporaries(directory)


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Delete the temporary files in `directory` that nobody holds; a sentence each."""
    done = []
    for path in stale_temporaries(directory):
        try:
            held = hold_lock(path, create=False)  # taken, so no process can start using it
            if held is None:
                continue
            size = os.fstat(held.fd).st_size
            try:
                path.unlink()
            finally:
                held.release()
        except OSError as exc:
            done.append(f"cannot remove {path.name}: {exc.strerror}")
            continue
        done.append(f"removed {path.name} ({size:,} bytes), left by an interrupted run")
    return done


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
