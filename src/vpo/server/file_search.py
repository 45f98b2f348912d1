"""Library files found by a piece of their path, for the dashboard's file view
(GET /api/library/files): a person remembers part of a name, not a `files.id`.

Kept beside the server rather than in vpo.db because only the API asks it. The match is
`instr(lower(path), lower(text))`, not LIKE, so `%` and `_` in a name are plain
characters; `lower` folds ASCII letters only (SQLite's own), which the docs say. It reads
every path (a substring cannot use the path index): about a millisecond per ten thousand
files, and the answer is bounded by `limit`.
"""

import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

MAX_PATH_TEXT = 1024  # characters of the searched text; longer is no piece of a path

_SEARCH = """
SELECT f.id AS file_id, f.path AS file_path, f.size_bytes, f.container,
    (SELECT count(*) FROM processing_stats s WHERE s.file_id = f.id) AS runs,
    (SELECT max(s.processed_at) FROM processing_stats s WHERE s.file_id = f.id)
        AS last_processed
FROM files f
WHERE instr(lower(f.path), lower(?)) > 0
ORDER BY f.path
LIMIT ?
"""


@dataclass(frozen=True)
class FoundFile:
    """One library file whose path holds the searched text, with how often it ran."""

    file_id: int
    file_path: str
    size_bytes: int
    container: str | None
    runs: int
    last_processed: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search_files(conn: sqlite3.Connection, text: str, limit: int) -> list[FoundFile]:
    """The files whose path contains `text` (ASCII case ignored), by path, at most `limit`."""
    return [FoundFile(**dict(row)) for row in conn.execute(_SEARCH, (text, limit))]


def files_answer(found: list[FoundFile]) -> dict[str, Any]:
    """`{"files": [...]}`: the answer of GET /api/library/files."""
    return {"files": [item.to_dict() for item in found]}
