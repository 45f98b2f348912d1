"""Which file a path names, precisely enough to notice that it changed under VPO.

A phase works from a probe of the file; before its result replaces the file (or before
it edits the file in place) the file must still be the one that was probed. Device and
inode tell a replaced file (`mv new a.mkv`), size an append or truncation, the
modification time in nanoseconds and the partial hash a rewrite in place.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from vpo.errors import VpoError
from vpo.media.hashing import partial_hash


class SourceChanged(VpoError):
    """The file changed while a phase worked on it; its result was discarded."""


@dataclass(frozen=True)
class FileIdentity:
    """A file's device, inode, size, modification time (ns) and partial hash."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    partial_hash: str

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> "FileIdentity":
        """The identity of the file at `path` now (follows symlinks, like the tools)."""
        before = Path(path).stat()
        digest = partial_hash(path)
        after = Path(path).stat()
        if (after.st_ino, after.st_size, after.st_mtime_ns) != (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        ):
            # Written to while hashing: whatever we return would mix two versions.
            raise SourceChanged(f"changed during processing: {Path(path).name} is being written")
        return cls(before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns, digest)

    def differences(self, now: "FileIdentity") -> list[str]:
        """What differs between this identity (the probed file) and `now`, in words."""
        if (self.device, self.inode) != (now.device, now.inode):
            return ["it was replaced by another file"]
        found = []
        if self.size != now.size:
            grown = "grew" if now.size > self.size else "shrank"
            found.append(f"it {grown} from {self.size:,} to {now.size:,} bytes")
        if self.partial_hash != now.partial_hash and self.size == now.size:
            found.append("its content was rewritten")
        if self.mtime_ns != now.mtime_ns and not found:
            found.append("it was modified (new modification time)")
        return found

    def check(self, path: str | os.PathLike[str]) -> "FileIdentity":
        """Raise `SourceChanged` unless `path` still names this file; return it as it is."""
        try:
            now = FileIdentity.of(path)
        except FileNotFoundError:
            raise SourceChanged(
                f"changed during processing: {Path(path).name} was moved away or deleted"
            ) from None
        changes = self.differences(now)
        if changes:
            raise SourceChanged(f"changed during processing: {'; '.join(changes)}")
        return now
