"""The SQL of the statistics rollups for a given set of measures.

A released migration never calls this: its text is pasted into `schema.py` as a literal,
so that a later change of the measures cannot change what an old migration does. A
migration that changes the measures generates its new text here once, and pastes it in
as a literal of its own (`tests/integration/test_migrations.py` checks the latest
literal against this generator and the live measures).
"""

from collections.abc import Mapping, Sequence

WIDTH = 96  # leaves room for the quotes of the literal within the line length


def statistics_rollups_sql(measures: Mapping[str, str], spans: Sequence[tuple[str, int]]) -> str:
    """The table, its backfill from the recorded runs and the triggers that keep it.

    `measures` maps a column to its per-run expression (`{r}` is the row), `spans` lists
    (span, prefix length) coarsest first, as in `vpo.db.measures`.
    """
    names = list(measures)
    month, day, hour = (length for _, length in spans)
    columns = _wrapped("    ", [f"{n} INTEGER NOT NULL" for n in names], "    ")
    keys = ["span", "bucket", "policy_name", *names]
    target = _wrapped("INSERT INTO stats_rollups (", keys, "    ")
    raw = [f"sum({e.format(r='processing_stats')})" for e in measures.values()]
    sums = [f"sum({n})" for n in names]
    sources = (
        (f"'hour', substr(processed_at, 1, {hour})", raw, "processing_stats"),
        (f"'day', substr(bucket, 1, {day})", sums, "stats_rollups WHERE span = 'hour'"),
        (f"'month', substr(bucket, 1, {month})", sums, "stats_rollups WHERE span = 'day'"),
    )
    backfill = "\n\n".join(
        f"{target})\n{_wrapped(f'SELECT {key}, policy_name, ', values, '    ')}\n"
        f"FROM {source} GROUP BY 2, 3;"
        for key, values, source in sources
    )
    change = {
        (row, sign): _rollup_change(measures, spans, row, sign)
        for row, sign in (("NEW", "+"), ("OLD", "-"))
    }
    return f"""
CREATE TABLE stats_rollups (
    span        TEXT NOT NULL CHECK (span IN ('hour', 'day', 'month')),
    bucket      TEXT NOT NULL,
    policy_name TEXT NOT NULL,
{columns},
    PRIMARY KEY (span, bucket, policy_name)
) WITHOUT ROWID;

{backfill}

CREATE TRIGGER stats_rollups_insert AFTER INSERT ON processing_stats BEGIN
{change["NEW", "+"]}
END;

CREATE TRIGGER stats_rollups_delete AFTER DELETE ON processing_stats BEGIN
{change["OLD", "-"]}
END;

CREATE TRIGGER stats_rollups_update AFTER UPDATE ON processing_stats BEGIN
{change["OLD", "-"]}
{change["NEW", "+"]}
END;

DROP INDEX idx_stats_file;
CREATE INDEX idx_stats_file ON processing_stats(file_id, processed_at);
DROP INDEX idx_stats_policy;
CREATE INDEX idx_stats_policy ON processing_stats(policy_name, processed_at);
DROP INDEX idx_stats_success;
CREATE INDEX idx_stats_success ON processing_stats(success, processed_at);
"""


def _rollup_change(
    measures: Mapping[str, str], spans: Sequence[tuple[str, int]], row: str, sign: str
) -> str:
    """Add (`+`) or take away (`-`) one run's measures in its hour, day and month."""
    names = list(measures)
    signed = [f"{sign}({expr.format(r=row)})" for expr in measures.values()]
    updates = [f"{n} = {n} + excluded.{n}" for n in names]
    statements = []
    target = _wrapped("    INSERT INTO stats_rollups (", ["span", "bucket", "policy_name", *names])
    upsert = _wrapped("    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET ", updates)
    for span, length in spans:
        bucket = f"substr({row}.processed_at, 1, {length})"
        values = _wrapped(f"    VALUES ('{span}', {bucket}, {row}.policy_name, ", signed)
        statements.append(f"{target})\n{values})\n{upsert};")
        if sign == "-":
            statements.append(
                f"    DELETE FROM stats_rollups WHERE span = '{span}' AND bucket = {bucket}\n"  # noqa: S608 -- constants only
                f"        AND policy_name = {row}.policy_name AND runs = 0;"
            )
    return "\n".join(statements)


def _wrapped(head: str, items: Sequence[str], indent: str = "        ") -> str:
    """`head` then `items` joined by commas, broken into lines of at most WIDTH characters."""
    lines: list[str] = []
    line, empty = head, True
    for position, item in enumerate(items):
        piece = item + ("," if position < len(items) - 1 else "")
        candidate = line + ("" if empty else " ") + piece
        if empty or len(candidate) <= WIDTH:
            line = candidate
        else:
            lines.append(line)
            line = indent + piece
        empty = False
    lines.append(line)
    return "\n".join(lines)


def rollups_added_sql(measures: Mapping[str, str], spans: Sequence[tuple[str, int]]) -> str:
    """One statement adding the runs with a rowid above `?1` to their hour, day and month
    (schema version 8: the writer does it once per write, not a trigger once per row)."""
    names = list(measures)
    keys = ["span", "bucket", "policy_name", *names]
    sums = [f"sum({e.format(r='processing_stats')})" for e in measures.values()]
    updates = [f"{n} = {n} + excluded.{n}" for n in names]
    heads = [
        f"SELECT '{span}', substr(processed_at, 1, {length}), policy_name, "
        for span, length in spans
    ]
    selects = [
        f"{_wrapped(head, sums)}\nFROM processing_stats WHERE rowid > ?1 GROUP BY 2, 3"
        for head in heads
    ]
    return (
        f"{_wrapped('INSERT INTO stats_rollups (', keys, '    ')})\n"
        + "\nUNION ALL\n".join(selects)
        + f"\n{_wrapped('ON CONFLICT (span, bucket, policy_name) DO UPDATE SET ', updates)}"
    )
