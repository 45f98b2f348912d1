"""A journal that makes an in-place Matroska edit all or nothing.

mkvpropedit edits a file where it lies: it rewrites the elements before the first
Cluster (SeekHead, Info, Tracks, Void, …), elements a SeekHead points to after the
clusters (Cues, Tags, a moved Tracks), and appends what no longer fits at the end. It
writes in several steps, so a full disk or a kill between them leaves a file with its
old track list blanked and the new one missing. Clusters are never touched.

Before the edit, the bytes it may overwrite — the head up to the first Cluster, and
everything from the first element after it that a SeekHead names (plus the last
`TAIL_SLACK` bytes) to the end — and the original length are written to a hidden
journal beside the file, fsynced with its folder. Truncating the file to the old
length and writing those bytes back gives the original byte for byte. The journal is
locked (flock) by its process while the edit runs and until the run is recorded, so a
journal nobody holds belongs to an edit that was interrupted: `recover` puts the
original back. This module works on files only, so any layer (the executor, the
reconciling of a killed run, `vpo doctor`) can use it.
"""

import contextlib
import hashlib
import json
import os
import re
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from vpo.media.hashing import partial_hash
from vpo.ownership import HeldLock, hold_lock, is_locked

MAGIC = b"VPO-EDIT-JOURNAL 1\n"
SUFFIX = ".journal"
NAME_MAX = 255
TAIL_SLACK = 64 * 1024
MAX_JOURNAL_BYTES = 64 * 1024 * 1024  # beyond this the edit is done by a remux instead
_DIGEST = 32

EBML_ID = 0x1A45DFA3
SEGMENT_ID = 0x18538067
CLUSTER_ID = 0x1F43B675
SEEKHEAD_ID = 0x114D9B74
SEEK_ID = 0x4DBB
SEEK_POSITION_ID = 0x53AC

_JOURNAL = re.compile(r"^\..*\.vpo-[0-9a-f]{8}\.journal$", re.DOTALL)


class JournalError(Exception):
    """A journal cannot be written or applied; the message says why. `keep` says the
    journal is still needed (the file could not be written: try again later)."""

    def __init__(self, message: str, keep: bool = False) -> None:
        super().__init__(message)
        self.keep = keep


# --- hidden names that fit 255 bytes ----------------------------------------------------------


def hidden_sibling(original: Path, token: str, suffix: str) -> Path:
    """`.NAME.vpo-TOKEN<suffix>` beside `original`, NAME cut to fit 255 bytes.

    The cut falls on a UTF-8 character boundary; names that are not UTF-8 (bytes kept
    by surrogateescape) are cut as bytes and stay valid bytes."""
    name = os.fsencode(original.name)
    tail = os.fsencode(f".vpo-{token}{suffix}")
    room = NAME_MAX - 1 - len(tail)
    if len(name) > room:
        cut = room
        while cut > 0 and 0x80 <= name[cut] < 0xC0:  # never split a multi-byte character
            cut -= 1
        name = name[:cut]
    return original.with_name(os.fsdecode(b"." + name + tail))


def new_token() -> str:
    return secrets.token_hex(4)


# --- where an edit may write: EBML layout -------------------------------------------------


def _read_vint(data: bytes, offset: int, keep_marker: bool) -> tuple[int, int] | None:
    """(value, length) of the EBML variable-size integer at `offset`; None if invalid.
    An all-ones size (unknown size) is returned as -1."""
    if offset >= len(data):
        return None
    first = data[offset]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or offset + length > len(data):
        return None
    raw = int.from_bytes(data[offset : offset + length], "big")
    if keep_marker:
        return raw, length
    value = raw & ((1 << (7 * length)) - 1)
    if value == (1 << (7 * length)) - 1:
        return -1, length
    return value, length


def _element(handle: object, offset: int) -> tuple[int, int, int] | None:
    """(id, header length, data size) of the element at `offset` in an open file."""
    handle.seek(offset)  # type: ignore[attr-defined]
    header = handle.read(12)  # type: ignore[attr-defined]
    ident = _read_vint(header, 0, keep_marker=True)
    if ident is None:
        return None
    size = _read_vint(header, ident[1], keep_marker=False)
    if size is None:
        return None
    return ident[0], ident[1] + size[1], size[0]


def _children(data: bytes) -> list[tuple[int, int, int]]:
    """(id, data offset, data size) of the elements inside a master element's `data`."""
    found = []
    offset = 0
    while offset < len(data):
        ident = _read_vint(data, offset, keep_marker=True)
        if ident is None:
            break
        size = _read_vint(data, offset + ident[1], keep_marker=False)
        if size is None or size[0] < 0:
            break
        start = offset + ident[1] + size[1]
        found.append((ident[0], start, size[0]))
        offset = start + size[0]
    return found


def _seek_positions(seekhead: bytes) -> list[int]:
    """Segment-relative positions a SeekHead's Seek entries point to."""
    positions = []
    for ident, start, size in _children(seekhead):
        if ident != SEEK_ID:
            continue
        for child, cstart, csize in _children(seekhead[start : start + size]):
            if child == SEEK_POSITION_ID and 0 < csize <= 8:
                body = seekhead[start + cstart : start + cstart + csize]
                positions.append(int.from_bytes(body, "big"))
    return positions


def edit_regions(path: Path) -> list[tuple[int, int]] | None:
    """(offset, length) of the parts of a Matroska file an in-place edit may overwrite;
    None when the layout cannot be read (not Matroska, unknown sizes, no cluster) or the
    parts are too large to journal."""
    with path.open("rb") as handle:
        length = os.fstat(handle.fileno()).st_size
        header = _element(handle, 0)
        if header is None or header[0] != EBML_ID or header[2] < 0:
            return None
        segment_at = header[1] + header[2]
        segment = _element(handle, segment_at)
        if segment is None or segment[0] != SEGMENT_ID:
            return None
        data_start = segment_at + segment[1]
        offset, seekheads, head_end = data_start, [], None
        while offset < length:
            element = _element(handle, offset)
            if element is None:
                return None
            ident, header_length, size = element
            if ident == CLUSTER_ID:
                head_end = offset
                break
            if size < 0:
                return None
            if ident == SEEKHEAD_ID:
                seekheads.append((offset + header_length, size))
            offset += header_length + size
        if head_end is None:
            return None
        targets: list[int] = []
        visited: set[int] = set()
        while seekheads:
            start, size = seekheads.pop()
            if start in visited or size > MAX_JOURNAL_BYTES:
                continue
            visited.add(start)
            handle.seek(start)
            for position in _seek_positions(handle.read(size)):
                absolute = data_start + position
                if head_end <= absolute < length:
                    targets.append(absolute)
                    element = _element(handle, absolute)
                    if element and element[0] == SEEKHEAD_ID and element[2] >= 0:
                        seekheads.append((absolute + element[1], element[2]))
    tail_start = max(min([*targets, length - TAIL_SLACK]), head_end)
    regions = [(0, head_end)]
    if tail_start < length:
        regions.append((tail_start, length - tail_start))
    if sum(size for _, size in regions) > MAX_JOURNAL_BYTES:
        return None
    return regions


# --- the journal ------------------------------------------------------------------------------


@dataclass
class EditJournal:
    """A written, fsynced journal of `target`, locked by this process until settled."""

    path: Path
    target: Path
    length: int
    device: int
    inode: int
    partial_hash: str
    regions: list[tuple[int, int]]
    held: HeldLock | None

    def restore(self) -> None:
        """Put the original back (truncate, rewrite the journaled bytes, fsync) and check
        it against the original's partial hash; the journal stays until `settle`."""
        _restore(self.path, self.target, _read_journal(self.path))

    def settle(self) -> None:
        """The edit stands (or was undone and recorded): delete the journal, durably."""
        if self.held is None:
            return
        self.held.release(unlink=True)
        self.held = None
        with contextlib.suppress(OSError):
            _fsync_directory(self.path.parent)

    @property
    def settled(self) -> bool:
        return self.held is None


def begin(target: Path, original_hash: str | None = None) -> EditJournal | None:
    """Write and fsync the journal of `target` before an in-place edit; None when the
    file's layout cannot be journaled (the caller must not edit it in place).

    `original_hash` is the file's partial hash when the caller knows it (it checks the
    file against it right after, before editing); the journal sits beside the real file
    when `target` is a symlink."""
    target = Path(os.path.realpath(target))
    regions = edit_regions(target)
    if regions is None:
        return None
    path = hidden_sibling(target, new_token(), SUFFIX)
    held = hold_lock(path)
    if held is None:  # a random name in use: try once more
        path = hidden_sibling(target, new_token(), SUFFIX)
        held = hold_lock(path)
        if held is None:
            raise JournalError(f"cannot create an edit journal beside {target.name}")
    try:
        with target.open("rb") as source:
            stat = os.fstat(source.fileno())
            header = {
                "name": os.fsencode(target.name).hex(),
                "length": stat.st_size,
                "device": stat.st_dev,
                "inode": stat.st_ino,
                "partial_hash": original_hash or partial_hash(target),
                "regions": regions,
            }
            encoded = json.dumps(header, sort_keys=True).encode()
            digest = hashlib.sha256()
            _write_all(held.fd, MAGIC + struct.pack(">I", len(encoded)) + encoded, digest)
            for offset, size in regions:
                source.seek(offset)
                block = source.read(size)
                if len(block) != size:
                    raise JournalError(f"{target.name} shrank while its journal was written")
                _write_all(held.fd, block, digest)
            _write_all(held.fd, digest.digest(), None)
        os.fsync(held.fd)
        _fsync_directory(path.parent)
    except BaseException:
        held.release(unlink=True)
        raise
    return EditJournal(
        path,
        target,
        stat.st_size,
        stat.st_dev,
        stat.st_ino,
        str(header["partial_hash"]),
        regions,
        held,
    )


def find_stale(directory: Path) -> list[Path]:
    """Journals in `directory` that no running process holds (interrupted edits)."""
    try:
        # Only hidden names can be ours: a big folder is listed, not sorted whole.
        entries = sorted(e for e in directory.iterdir() if e.name.startswith("."))
    except OSError:
        return []
    return [e for e in entries if _JOURNAL.match(e.name) and not is_locked(e)]


def target_of(journal: Path) -> Path | None:
    """The file a journal was written for (None when its header cannot be read)."""
    header = _peek_header(journal)
    if header is None:
        return None
    return journal.with_name(os.fsdecode(bytes.fromhex(header["name"])))


def stale_for(path: Path) -> list[Path]:
    """The journals of `path` that nobody holds."""
    path = Path(os.path.realpath(path))
    return [j for j in find_stale(path.parent) if target_of(j) in (None, path)]


def recover(path: Path, recorded_hash: str | None = None) -> str | None:
    """Restore `path` from a journal of it nobody holds (an interrupted in-place edit),
    delete the journal and say what was done; None when there is no such journal.

    `recorded_hash` is the partial hash the dead run recorded for the file after its
    last phase: when the file is exactly that, the edit completed and was recorded (the
    run died between recording it and dropping the journal), so it is kept instead.
    """
    said = []
    path = Path(os.path.realpath(path))
    for journal in find_stale(path.parent):
        header = _peek_header(journal)
        if header is not None and bytes.fromhex(header["name"]) != os.fsencode(path.name):
            continue
        if recorded_hash is not None and _is_recorded(path, recorded_hash):
            sentence = _drop_journal(journal, path)
        else:
            sentence = recover_journal(journal)
        if sentence:
            said.append(sentence)
    return " ".join(said) or None


def _is_recorded(path: Path, recorded_hash: str) -> bool:
    try:
        return partial_hash(path) == recorded_hash
    except OSError:
        return False


def _drop_journal(journal: Path, target: Path) -> str | None:
    held = hold_lock(journal, create=False)
    if held is None:
        return None
    held.release(unlink=True)
    with contextlib.suppress(OSError):
        _fsync_directory(journal.parent)
    return f"kept the completed in-place edit of {target.name}, as recorded"


def recover_journal(journal: Path) -> str | None:
    """Apply one stale journal to the file it names; None when another process holds it."""
    held = hold_lock(journal, create=False)
    if held is None:
        return None
    try:
        try:
            header = _read_journal(journal)
        except JournalError:
            # Torn while being written: the edit had not started, the file is untouched.
            held.release(unlink=True)
            return f"removed an incomplete edit journal {journal.name} (its file was not edited)"
        target = journal.with_name(os.fsdecode(bytes.fromhex(header.meta["name"])))
        try:
            sentence = _restore(journal, target, header)
        except JournalError as exc:
            held.release(unlink=not exc.keep)
            return str(exc)
        held.release(unlink=True)
        with contextlib.suppress(OSError):
            _fsync_directory(journal.parent)
        return sentence
    finally:
        held.release()


@dataclass(frozen=True)
class _Contents:
    meta: dict[str, object]
    blocks: list[tuple[int, bytes]]


def _peek_header(journal: Path) -> dict[str, str] | None:
    try:
        with journal.open("rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                return None
            (size,) = struct.unpack(">I", handle.read(4))
            return json.loads(handle.read(size))
    except (OSError, ValueError, struct.error):
        return None


def _read_journal(journal: Path) -> _Contents:
    try:
        data = journal.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read the edit journal {journal.name}: {exc.strerror}") from exc
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if not data.startswith(MAGIC) or hashlib.sha256(body).digest() != digest:
        raise JournalError(f"the edit journal {journal.name} is incomplete")
    (size,) = struct.unpack(">I", body[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    meta = json.loads(body[start : start + size])
    blocks, at = [], start + size
    for offset, length in meta["regions"]:
        blocks.append((int(offset), body[at : at + length]))
        at += length
    return _Contents(meta, blocks)


def _restore(journal: Path, target: Path, contents: _Contents) -> str:
    meta = contents.meta
    length = int(meta["length"])  # type: ignore[arg-type]
    try:
        fd = os.open(target, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise JournalError(
            f"{target.name} is gone; its edit journal {journal.name} was removed"
        ) from None
    except OSError as exc:
        raise JournalError(
            f"cannot restore {target.name}: {exc.strerror}; its edit journal is kept", keep=True
        ) from exc
    try:
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) != (meta["device"], meta["inode"]) or stat.st_size < length:
            raise JournalError(
                f"{target.name} was replaced or cut since its interrupted in-place edit; "
                "left as it is"
            )
        os.ftruncate(fd, length)
        for offset, block in contents.blocks:
            os.lseek(fd, offset, os.SEEK_SET)
            _write_all(fd, block, None)
        os.fsync(fd)
    except JournalError:
        raise
    except OSError as exc:
        raise JournalError(
            f"cannot restore {target.name}: {exc.strerror}; its edit journal is kept", keep=True
        ) from exc
    finally:
        os.close(fd)
    if partial_hash(target) != meta["partial_hash"]:
        raise JournalError(
            f"{target.name} was restored from its edit journal but does not match the original"
        )
    return f"restored {target.name} byte for byte from the journal of an interrupted edit"


def _write_all(fd: int, data: bytes, digest: "hashlib._Hash | None") -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    if digest is not None:
        digest.update(data)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
