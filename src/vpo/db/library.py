"""Queries on the library tables (`files`, `tracks`).

Callers own the transaction (see `connection.transaction`), so a scan can store many
files per commit and a processing run can refresh a file together with its tracks.
"""

import sqlite3
from collections.abc import Iterable

from vpo.db.records import FileRecord, TrackRecord
from vpo.media.tracks import Track

_SELECT_FILE = (
    "SELECT id, path, size_bytes, mtime, container, duration_seconds, content_hash, "
    "scanned_at, scan_error FROM files "
)


def get_file_by_path(conn: sqlite3.Connection, path: str) -> FileRecord | None:
    row = conn.execute(_SELECT_FILE + "WHERE path = ?", (path,)).fetchone()
    return FileRecord.from_row(row) if row else None


def get_file(conn: sqlite3.Connection, file_id: int) -> FileRecord | None:
    row = conn.execute(_SELECT_FILE + "WHERE id = ?", (file_id,)).fetchone()
    return FileRecord.from_row(row) if row else None


def files_under(conn: sqlite3.Connection, root: str) -> dict[str, tuple[int, float]]:
    """Known files below the folder `root`: path → (size, mtime), for incremental scans."""
    prefix = root.rstrip("/") + "/"
    # A range on the UNIQUE path index instead of LIKE, which would treat % and _ in
    # folder names as wildcards. "0" sorts right after "/".
    rows = conn.execute(
        "SELECT path, size_bytes, mtime FROM files WHERE path >= ? AND path < ?",
        (prefix, root.rstrip("/") + "0"),
    )
    return {row["path"]: (row["size_bytes"], row["mtime"]) for row in rows}


def save_file(
    conn: sqlite3.Connection,
    *,
    path: str,
    size_bytes: int,
    mtime: float,
    scanned_at: str,
    container: str | None = None,
    duration_seconds: float | None = None,
    content_hash: str | None = None,
    scan_error: str | None = None,
    video: Track | None = None,
) -> int:
    """Insert or update the row for `path` (keeping its id, hence its history); return the id.

    `video` is the file's first video track, denormalised onto the row so that library
    totals by codec and resolution are kept by triggers (schema version 3).
    """
    row = conn.execute(
        """
        INSERT INTO files (path, size_bytes, mtime, container, duration_seconds,
                           content_hash, scanned_at, scan_error,
                           video_codec, video_width, video_height)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(path) DO UPDATE SET
            size_bytes = excluded.size_bytes, mtime = excluded.mtime,
            container = excluded.container, duration_seconds = excluded.duration_seconds,
            content_hash = excluded.content_hash, scanned_at = excluded.scanned_at,
            scan_error = excluded.scan_error, video_codec = excluded.video_codec,
            video_width = excluded.video_width, video_height = excluded.video_height
        RETURNING id
        """,
        (
            path,
            size_bytes,
            mtime,
            container,
            duration_seconds,
            content_hash,
            scanned_at,
            scan_error,
            video.codec if video else None,
            video.width if video else None,
            video.height if video else None,
        ),
    ).fetchone()
    return int(row[0])


def replace_tracks(conn: sqlite3.Connection, file_id: int, tracks: Iterable[Track]) -> None:
    """Make the file's `tracks` rows exactly `tracks`."""
    conn.execute("DELETE FROM tracks WHERE file_id = ?", (file_id,))
    conn.executemany(
        """
        INSERT INTO tracks (file_id, track_index, track_type, codec, language, title,
                            is_default, is_forced, channels, width, height, bitrate)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            (
                file_id,
                t.index,
                t.track_type.value,
                t.codec,
                t.language,
                t.title,
                int(t.is_default),
                int(t.is_forced),
                t.channels,
                t.width,
                t.height,
                t.bitrate,
            )
            for t in tracks
        ],
    )


def get_tracks(conn: sqlite3.Connection, file_id: int) -> list[TrackRecord]:
    rows = conn.execute("SELECT * FROM tracks WHERE file_id = ? ORDER BY track_index", (file_id,))
    return [TrackRecord.from_row(row) for row in rows]


# -- library composition, from the trigger-kept totals (docs/metrics.md, docs/cli.md) ------


def container_totals(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """(container, files, bytes) of every container with files: a few rows of
    library_file_totals, whatever the library's size."""
    rows = conn.execute(
        "SELECT container, sum(files), sum(size_bytes) FROM library_file_totals "
        "GROUP BY container HAVING sum(files) > 0 ORDER BY container"
    )
    return [(str(row[0]), int(row[1]), int(row[2])) for row in rows]


def video_totals(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(video codec, resolution class, files) of the files with a video track."""
    rows = conn.execute(
        "SELECT video_codec, resolution, sum(files) FROM library_file_totals "
        "WHERE video_codec != 'none' GROUP BY 1, 2 HAVING sum(files) > 0 ORDER BY 1, 2"
    )
    return [(str(row[0]), str(row[1]), int(row[2])) for row in rows]


def track_totals(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(track type, codec, tracks) from library_track_totals."""
    rows = conn.execute(
        "SELECT track_type, codec, tracks FROM library_track_totals WHERE tracks > 0 ORDER BY 1, 2"
    )
    return [(str(row[0]), str(row[1]), int(row[2])) for row in rows]


def _counts(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key, n in pairs:
        counts[key] = counts.get(key, 0) + n
    return dict(sorted(counts.items()))


def file_totals(conn: sqlite3.Connection) -> list[tuple[str, str, str, int]]:
    """(container, video codec, resolution class, files) of every non-empty total."""
    rows = conn.execute(
        "SELECT container, video_codec, resolution, files FROM library_file_totals WHERE files > 0"
    )
    return [(str(row[0]), str(row[1]), str(row[2]), int(row[3])) for row in rows]


def composition(conn: sqlite3.Connection) -> dict[str, object]:
    """What the library holds: files by container, video codec (`none`: no video track)
    and resolution class, audio tracks by codec, tracks by type and by type and language
    (GET /api/library/composition).

    All but the languages come from the totals the triggers keep; languages have no
    totals table, so they are one grouped pass over `tracks`."""
    files = file_totals(conn)
    tracks = track_totals(conn)
    languages: dict[str, dict[str, int]] = {}
    for track_type, language, n in conn.execute(
        "SELECT track_type, language, count(*) FROM tracks GROUP BY 1, 2 ORDER BY 1, 2"
    ):
        languages.setdefault(str(track_type), {})[str(language)] = int(n)
    return {
        "files": sum(n for *_key, n in files),
        "containers": _counts((container, n) for container, _v, _r, n in files),
        "video_codecs": _counts((codec, n) for _c, codec, _r, n in files),
        "resolutions": _counts((resolution, n) for _c, _v, resolution, n in files),
        "audio_codecs": _counts((codec, n) for kind, codec, n in tracks if kind == "audio"),
        "tracks": _counts((kind, n) for kind, _c, n in tracks),
        "track_languages": languages,
    }
