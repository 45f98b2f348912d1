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
from vpo.executor.safe_replace import clean_stale_work
from vpo.media.hashing import partial_hash
from vpo.media.probe import ProbeError, probe
from vpo.media.tools import require_tool
from vpo.media.tracks import MediaInfo, Track, TrackType
from vpo.ownership import claim
from vpo.pathnames import path_from_text, path_text
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
    unreadable: int = 0  # known files, unchanged since a scan that could not read them
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path as text, why)
    cleaned: list[str] = field(default_factory=list)  # what was left by killed VPOs, and done

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
    """Video files under `paths` (recursive), sorted; a file named directly is always taken.

    A symlink is followed to its file, so a file has one row however it is reached; one
    that leads nowhere (dangling, a loop) is returned as it is, for the caller to report.
    """
    wanted = {f".{ext}" for ext in extensions}
    found: set[Path] = set()
    for root in paths:
        if not root.exists() and not root.is_symlink():
            raise PathNotFoundError(f"Path not found: {path_text(root)}")
        if not root.is_dir():
            found.add(_real(root))
            continue
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            for name in names:
                if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                    found.add(_real(Path(directory) / name))
    return sorted(found)


def _real(path: Path) -> Path:
    """The file `path` leads to; `path` itself when it leads nowhere."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return path


def database_path(conn: sqlite3.Connection) -> Path:
    """The file behind `conn` (claims live beside it)."""
    return Path(conn.execute("PRAGMA database_list").fetchone()[2])


def folders_of(files: Iterable[Path]) -> list[Path]:
    return sorted({f.parent for f in files})


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
    db_path = database_path(conn)
    for folder in folders_of(files):  # what killed VPOs left: restored or removed
        report.cleaned += clean_stale_work(folder, lambda target: claim(db_path, target))
    candidates = list(_classify(conn, files, report))
    if progress is not None:
        progress.start(len(candidates) + len(report.failures))
        for path, reason in report.failures:  # paths that lead to no file
            progress.advance(path, Outcome.FAILED, reason)
    for candidate in candidates:
        if candidate.known:
            report.count(Outcome.UNCHANGED)
            if progress is not None:
                progress.advance(path_text(candidate.path), Outcome.UNCHANGED, None)
    to_probe = [c for c in candidates if not c.known]
    _probe_and_store(conn, to_probe, jobs or os.cpu_count() or 2, report, progress)
    report.missing = _count_missing(conn, roots, {path_text(f) for f in files})
    return report


def _classify(
    conn: sqlite3.Connection, files: list[Path], report: ScanReport
) -> Iterator[_Candidate]:
    """Mark each file as unchanged (same size and mtime as stored) or to be probed; a
    path that leads to no file is reported as failed here."""
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            if path.is_symlink():
                _fail(report, path, f"is a dangling symlink (to {path_text(path.readlink())})")
            continue  # vanished between listing and stat: the next scan counts it missing
        except OSError as exc:
            _fail(report, path, "is a symlink loop" if exc.errno == 40 else exc.strerror or "")
            continue
        record = get_file_by_path(conn, path_text(path))
        unchanged = (
            record is not None
            and record.size_bytes == stat.st_size
            and record.mtime == stat.st_mtime
        )
        if unchanged and record is not None and record.scan_error:
            report.unreadable += 1
        yield _Candidate(str(path), stat.st_size, stat.st_mtime, unchanged)


def _fail(report: ScanReport, path: Path, reason: str) -> None:
    report.count(Outcome.FAILED)
    report.failures.append((path_text(path), reason))


def _probe_one(path: str) -> _Probed:
    try:
        content_hash = partial_hash(path)
    except OSError as exc:
        return _Probed(None, None, f"cannot read the file: {exc.strerror}")
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
            key = path_text(candidate.path)
            existed = get_file_by_path(conn, key) is not None
            media = probed.media
            file_id = save_file(
                conn,
                path=key,
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
            outcomes.append((key, outcome, probed.error))
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
                for path in files_under(conn, path_text(root))
                if path not in seen and not Path(path_from_text(path)).exists()
            )
    return missing
