"""Runs written are added to the statistics rollups once per write, by the writer.

Until schema version 8 a trigger added each run to its hour, day and month as the row
went in: three upserts per run, about a tenth of the OTLP ingest's cost of a run
(docs/benchmarks.md). Now the one function that inserts runs (`vpo.db.stats`) adds a
write's runs in one statement, grouped by bucket and policy. Deleting or updating a run
still goes through the triggers of version 4, which stay.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from vpo.db.measures import MEASURES, SPANS
from vpo.db.rollup_sql import rollups_added_sql

_ADD_RUNS_AFTER = rollups_added_sql(MEASURES, SPANS)
_LAST_ROWID = "SELECT coalesce(max(rowid), 0) FROM processing_stats"
BY_THE_WRITER_SINCE = 8  # the schema version that dropped the per-row trigger


@contextmanager
def adding_runs(conn: sqlite3.Connection) -> Iterator[None]:
    """The runs inserted in the block are added to the rollups at its end, all or none
    with them (a savepoint: in the caller's transaction, or a transaction of its own).

    A new row's rowid is above every rowid in the table at its insertion (SQLite's rule
    for a table without AUTOINCREMENT, short of the largest integer), so the block's runs
    are those above the largest rowid at its start — read after any deletion of the
    caller's, so a reused rowid is never missed.

    A database not yet at version 8 (some tests keep older ones) is left to its trigger,
    or has no rollups yet: nothing is added.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] < BY_THE_WRITER_SINCE:
        yield
        return
    conn.execute("SAVEPOINT vpo_rollups")
    try:
        after = conn.execute(_LAST_ROWID).fetchone()[0]
        yield
        conn.execute(_ADD_RUNS_AFTER, (after,))
    except BaseException:
        conn.execute("ROLLBACK TO vpo_rollups")
        conn.execute("RELEASE vpo_rollups")
        raise
    conn.execute("RELEASE vpo_rollups")
