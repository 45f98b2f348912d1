"""Deleting recorded runs (`vpo stats purge`, DELETE /api/stats/purge).

A run's action and phase rows go with it (ON DELETE CASCADE) and the rollups follow by
trigger, all in one transaction: a purge is whole or not at all, and every aggregate
stays equal to the plain SQL over what is left.
"""

import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from vpo.db.connection import transaction
from vpo.timefmt import format_utc


@dataclass(frozen=True)
class PurgeFilter:
    """Which runs go: started before `before`, of `policy`, or (`everything`) all."""

    before: datetime | None = None
    policy: str | None = None
    everything: bool = False

    def __post_init__(self) -> None:
        if self.everything and (self.before is not None or self.policy is not None):
            raise ValueError("'everything' cannot be combined with a filter")
        if not self.everything and self.before is None and self.policy is None:
            raise ValueError("a purge needs a filter (before, policy) or 'everything'")

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["1"], []
        if self.before is not None:
            clauses.append("processed_at < ?")
            params.append(format_utc(self.before))
        if self.policy is not None:
            clauses.append("policy_name = ?")
            params.append(self.policy)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class PurgeCounts:
    runs: int
    action_results: int
    performance_metrics: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_purge(conn: sqlite3.Connection, which: PurgeFilter) -> PurgeCounts:
    """What `purge` would delete now."""
    where, params = which.where()
    selected = f"SELECT id FROM processing_stats WHERE {where}"
    row = conn.execute(
        f"SELECT (SELECT count(*) FROM processing_stats WHERE {where}), "
        f"(SELECT count(*) FROM action_results WHERE stats_id IN ({selected})), "
        f"(SELECT count(*) FROM performance_metrics WHERE stats_id IN ({selected}))",
        params * 3,
    ).fetchone()
    return PurgeCounts(int(row[0]), int(row[1]), int(row[2]))


def purge(conn: sqlite3.Connection, which: PurgeFilter) -> PurgeCounts:
    """Delete the runs `which` selects with their action and phase rows; return what went."""
    where, params = which.where()
    with transaction(conn):
        counts = count_purge(conn, which)
        conn.execute(f"DELETE FROM processing_stats WHERE {where}", params)
    return counts
