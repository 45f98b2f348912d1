"""The workflow's access to the library tables: make sure a file is scanned before its
run, and refresh its row and tracks after it. One connection under a lock, so parallel
runs (`--jobs`) share a single database writer. Statistics rows are never written here:
they come from the spans.

A database that cannot be written is not one file's problem: `RecordingError` tells the
batch to stop before it touches another file whose run could not be recorded.
"""

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from vpo.db.connection import open_database, transaction
from vpo.db.library import get_file_by_path, replace_tracks, save_file
from vpo.errors import DatabaseError, VpoError
from vpo.media.tracks import MediaInfo, TrackType
from vpo.pathnames import path_text
from vpo.timefmt import utc_now


class RecordingError(VpoError):
    """The library database refused a write: no more files may be touched."""


@dataclass(frozen=True)
class KnownFile:
    file_id: int
    scan_error: str | None


class LibraryStore:
    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection = open_database(db_path, shared_between_threads=True)

    def known(self, path: Path) -> KnownFile | None:
        try:
            with self._lock:
                record = get_file_by_path(self._conn, path_text(path))
        except DatabaseError as exc:
            raise RecordingError(exc.message) from exc
        except sqlite3.Error as exc:
            raise RecordingError(f"cannot read the library database {self.db_path}: {exc}") from exc
        return KnownFile(record.id, record.scan_error) if record else None

    def save(
        self,
        path: Path,
        media: MediaInfo | None,
        content_hash: str | None,
        scan_error: str | None = None,
    ) -> int:
        """Store the file as it is on disk now (with its tracks); return its id."""
        stat = path.stat()
        videos = media.tracks_of(TrackType.VIDEO) if media else []
        try:
            with self._lock, transaction(self._conn):
                file_id = save_file(
                    self._conn,
                    path=path_text(path),
                    size_bytes=stat.st_size,
                    mtime=stat.st_mtime,
                    scanned_at=utc_now(),
                    container=media.container if media else None,
                    duration_seconds=media.duration_seconds if media else None,
                    content_hash=content_hash,
                    scan_error=scan_error,
                    video=videos[0] if videos else None,
                )
                replace_tracks(self._conn, file_id, media.tracks if media else ())
        except DatabaseError as exc:  # already names the cause
            raise RecordingError(exc.message) from exc
        except sqlite3.Error as exc:
            raise RecordingError(
                f"cannot write to the library database {self.db_path}: {exc}"
            ) from exc
        return file_id

    def reconcile(self) -> None:
        """Record the runs of VPO processes that died (see vpo.db.interrupted) now, not
        only when the database is opened: before this process undoes what they left."""
        from vpo.db.interrupted import reconcile_interrupted_runs

        try:
            with self._lock:
                reconcile_interrupted_runs(self._conn, self.db_path)
        except sqlite3.Error as exc:
            raise RecordingError(
                f"cannot record interrupted runs in {self.db_path}: {exc}"
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
