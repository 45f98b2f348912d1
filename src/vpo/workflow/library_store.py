"""The workflow's access to the library tables: make sure a file is scanned before its
run, and refresh its row and tracks after it. One connection under a lock, so parallel
runs (`--jobs`) share a single database writer. Statistics rows are never written here:
they come from the spans."""

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from vpo.db.connection import open_database, transaction
from vpo.db.library import get_file_by_path, replace_tracks, save_file
from vpo.media.tracks import MediaInfo, TrackType
from vpo.timefmt import utc_now


@dataclass(frozen=True)
class KnownFile:
    file_id: int
    scan_error: str | None


class LibraryStore:
    def __init__(self, db_path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection = open_database(db_path, shared_between_threads=True)

    def known(self, path: Path) -> KnownFile | None:
        with self._lock:
            record = get_file_by_path(self._conn, str(path))
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
        with self._lock, transaction(self._conn):
            file_id = save_file(
                self._conn,
                path=str(path),
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
        return file_id

    def close(self) -> None:
        with self._lock:
            self._conn.close()
