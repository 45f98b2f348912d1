"""Typed rows of the library tables, so callers never index `sqlite3.Row` by string."""

import sqlite3
from dataclasses import dataclass
from typing import Any

from vpo.media.tracks import Track, TrackType


@dataclass(frozen=True)
class FileRecord:
    """A row of `files`."""

    id: int
    path: str
    size_bytes: int
    mtime: float
    container: str | None
    duration_seconds: float | None
    content_hash: str | None
    scanned_at: str
    scan_error: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "FileRecord":
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class TrackRecord:
    """A row of `tracks`: a `Track` as stored for one file."""

    id: int
    file_id: int
    track: Track

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "TrackRecord":
        track = Track(
            index=row["track_index"],
            track_type=TrackType(row["track_type"]),
            codec=row["codec"],
            language=row["language"],
            title=row["title"],
            is_default=bool(row["is_default"]),
            is_forced=bool(row["is_forced"]),
            channels=row["channels"],
            width=row["width"],
            height=row["height"],
            bitrate=row["bitrate"],
        )
        return cls(id=row["id"], file_id=row["file_id"], track=track)
