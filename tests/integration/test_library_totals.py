"""The trigger-kept library totals always equal a plain GROUP BY over files and tracks,
through scans, re-scans of changed files and deletions."""

import os
import shutil
import sqlite3
from pathlib import Path

from tests.helpers import invoke, query

FILE_TOTALS = """
    SELECT container, video_codec, resolution, files, size_bytes FROM library_file_totals
    WHERE files != 0 ORDER BY 1, 2, 3
"""
FILE_GROUP_BY = """
    SELECT coalesce(container, 'unknown'), coalesce(video_codec, 'none'),
           CASE WHEN video_width IS NULL AND video_height IS NULL THEN 'unknown'
                WHEN video_width >= 3000 OR video_height >= 1800 THEN '2160p'
                WHEN video_width >= 1600 OR video_height >= 900 THEN '1080p'
                WHEN video_width >= 1100 OR video_height >= 650 THEN '720p'
                ELSE 'sd' END,
           count(*), sum(size_bytes)
    FROM files GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
TRACK_TOTALS = (
    "SELECT track_type, codec, tracks FROM library_track_totals WHERE tracks != 0 ORDER BY 1, 2"
)
TRACK_GROUP_BY = (
    "SELECT track_type, coalesce(codec, 'unknown'), count(*) FROM tracks "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)


def _assert_consistent(db_path: Path) -> None:
    assert [tuple(r) for r in query(db_path, FILE_TOTALS)] == [
        tuple(r) for r in query(db_path, FILE_GROUP_BY)
    ]
    assert [tuple(r) for r in query(db_path, TRACK_TOTALS)] == [
        tuple(r) for r in query(db_path, TRACK_GROUP_BY)
    ]


def test_totals_follow_scans_and_deletes(library: Path, db_path: Path) -> None:
    invoke("--db", db_path, "scan", library)
    _assert_consistent(db_path)
    totals = {tuple(r)[:3]: r["files"] for r in query(db_path, FILE_TOTALS)}
    assert totals == {("mkv", "h264", "sd"): 2, ("mkv", "hevc", "sd"): 2, ("mp4", "h264", "sd"): 1}

    shutil.copyfile(library / "movie-h264-multilang.mkv", library / "anime-hevc.mkv")
    os.utime(library / "anime-hevc.mkv", (1_700_000_000, 1_700_000_000))
    (library / "junk.mkv").write_bytes(b"not a video")
    invoke("--db", db_path, "scan", library)
    _assert_consistent(db_path)
    codecs = dict(
        query(db_path, "SELECT codec, tracks FROM library_track_totals WHERE track_type = 'audio'")
    )
    # two multilang files (aac, ac3, aac, flac each), the MP4 (aac, aac), clean-hevc (ac3)
    assert codecs == {"aac": 6, "ac3": 3, "flac": 2}

    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM files WHERE path LIKE '%multilang%'")
    conn.commit()
    conn.close()
    _assert_consistent(db_path)
