"""Scanning: find video files, probe the new and changed ones, store files and tracks.

Incremental on size + mtime: an unchanged file is neither probed nor hashed again.
Probing runs in a small thread pool (ffprobe is a subprocess, so threads suffice);
only the calling thread touches the database, committing in batches.
"""

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from vpo.db.connection import transaction
from vpo.db.library import files_under, get_file_by_path, replace_tracks, save_file
from vpo.errors import PathNotFoundError
from vpo.media.hashing import partial_hash
from vpo.media.probe import ProbeError, probe
from vpo.media.tools import require_tool
from vpo.media.tracks import MediaInfo, Track, TrackType
from vpo.timefmt import utc_now

DEFAULT_EXTENSIONS = ("mkv", "mp4", "m4v", "mov", "avi", "webm", "ts", "m2ts", "wmv")
COMMIT_EVERY_FILES = 200
COMMIT_EVERY_SECONDS = 2.0


class Outcome(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass
class ScanReport:
    """What a scan did, for the closing summary and for scripts."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    missing: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged + self.failed

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


class ScanProgress(Protocol):
    """How a scan reports progress (the CLI draws a bar or prints lines)."""

    def start(self, total: int) -> None: ...

    def advance(self, path: str, outcome: Outcome, error: str | None) -> None: ...


@dataclass(frozen=True)
class _Candidate:
    path: str
    size: int
    mtime: float
    known: bool


@dataclass(frozen=True)
class _Probed:
    media: MediaInfo | None
    content_hash: str | None
    error: str | None


def parse_extensions(text: str | None) -> tuple[str, ...]:
    """`"mkv, .MP4"` → `("mkv", "mp4")`; None → the default list."""
    if not text:
        return DEFAULT_EXTENSIONS
    return tuple(part.strip().lstrip(".").lower() for part in text.split(",") if part.strip())


def discover(paths: Iterable[Path], extensions: Iterable[str]) -> list[Path]:
    """Video files under `paths` (recursive), sorted; a file named directly is always taken."""
    wanted = {f".{ext}" for ext in extensions}
    found: set[Path] = set()
    for root in paths:
        if not root.exists():
            raise PathNotFoundError(f"Path not found: {root}")
        if root.is_file():
            found.add(root)
            continue
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            for name in names:
                if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                    found.add(Path(directory) / name)
    return sorted(found)


def scan_paths(
    conn: sqlite3.Connection,
    paths: Iterable[str | os.PathLike[str]],
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    jobs: int | None = None,
    progress: ScanProgress | None = None,
) -> ScanReport:
    """Scan `paths` into the database and report what changed."""
    roots = [Path(p).expanduser().resolve() for p in paths]
    files = discover(roots, extensions)
    require_tool("ffprobe")
    report = ScanReport()
    candidates = list(_classify(conn, files))
    if progress is not None:
        progress.start(len(candidates))
    for candidate in candidates:
        if candidate.known:
            report.count(Outcome.UNCHANGED)
            if progress is not None:
                progress.advance(candidate.path, Outcome.UNCHANGED, None)
    to_probe = [c for c in candidates if not c.known]
    _probe_and_store(conn, to_probe, jobs or os.cpu_count() or 2, report, progress)
    report.missing = _count_missing(conn, roots, {str(f) for f in files})
    return report


def _classify(conn: sqlite3.Connection, files: list[Path]) -> Iterator[_Candidate]:
    """Mark each file as unchanged (same size and mtime as stored) or to be probed."""
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue  # vanished between listing and stat: the next scan counts it missing
        record = get_file_by_path(conn, str(path))
        unchanged = (
            record is not None
            and record.size_bytes == stat.st_size
            and record.mtime == stat.st_mtime
        )
        yield _Candidate(str(path), stat.st_size, stat.st_mtime, unchanged)


def _probe_one(path: str) -> _Probed:
    try:
        content_hash = partial_hash(path)
    except OSError as exc:
        return _Probed(None, None, f"cannot read {path}: {exc.strerror}")
    try:
        return _Probed(probe(path), content_hash, None)
    except ProbeError as exc:
        return _Probed(None, content_hash, exc.message)


def _probe_and_store(
    conn: sqlite3.Connection,
    candidates: list[_Candidate],
    jobs: int,
    report: ScanReport,
    progress: ScanProgress | None,
) -> None:
    if not candidates:
        return
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="vpo-probe") as pool:
        futures: list[tuple[_Candidate, Future[_Probed]]] = [
            (c, pool.submit(_probe_one, c.path)) for c in candidates
        ]
        pending: list[tuple[_Candidate, _Probed]] = []
        last_commit = time.monotonic()
        for candidate, future in futures:
            pending.append((candidate, future.result()))
            due = time.monotonic() - last_commit >= COMMIT_EVERY_SECONDS
            if len(pending) >= COMMIT_EVERY_FILES or due:
                _store(conn, pending, report, progress)
                pending, last_commit = [], time.monotonic()
        _store(conn, pending, report, progress)


def _store(
    conn: sqlite3.Connection,
    batch: list[tuple[_Candidate, _Probed]],
    report: ScanReport,
    progress: ScanProgress | None,
) -> None:
    outcomes: list[tuple[str, Outcome, str | None]] = []
    with transaction(conn):
        for candidate, probed in batch:
            existed = get_file_by_path(conn, candidate.path) is not None
            media = probed.media
            file_id = save_file(
                conn,
                path=candidate.path,
                size_bytes=candidate.size,
                mtime=candidate.mtime,
                scanned_at=utc_now(),
                container=media.container if media else None,
                duration_seconds=media.duration_seconds if media else None,
                content_hash=probed.content_hash,
                scan_error=probed.error,
                video=_first_video(media),
            )
            replace_tracks(conn, file_id, media.tracks if media else ())
            if probed.error is not None:
                outcome = Outcome.FAILED
            else:
                outcome = Outcome.UPDATED if existed else Outcome.ADDED
            outcomes.append((candidate.path, outcome, probed.error))
    for path, outcome, error in outcomes:  # reported once committed, never before
        report.count(outcome)
        if error is not None:
            report.failures.append((path, error))
        if progress is not None:
            progress.advance(path, outcome, error)


def _first_video(media: MediaInfo | None) -> Track | None:
    videos = media.tracks_of(TrackType.VIDEO) if media else []
    return videos[0] if videos else None


def _count_missing(conn: sqlite3.Connection, roots: list[Path], seen: set[str]) -> int:
    """Known files under the scanned folders that are gone from disk (kept, with history)."""
    missing = 0
    for root in roots:
        if root.is_dir():
            missing += sum(
                1
                for path in files_under(conn, str(root))
                if path not in seen and not Path(path).exists()
            )
    return missing
