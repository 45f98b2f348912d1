"""The additive measures of the statistics rollups, defined once.

Each measure is a per-run SQL expression over a `processing_stats` row (`{r}` stands
for the row: `NEW`, `OLD` or a table alias). The rollup triggers add and subtract it
per run; queries sum it over raw rows or over rollup rows. Every measure is an integer,
so a sum over rollups equals the sum over the raw rows exactly, whatever the order —
durations are therefore kept as whole microseconds.
"""

MEASURES: dict[str, str] = {
    "runs": "1",
    "successes": "{r}.success",
    "size_before": "{r}.size_before",
    "size_after": "{r}.size_after",
    "size_saved": "{r}.size_change",
    "audio_removed": "{r}.audio_tracks_removed",
    "subtitles_removed": "{r}.subtitle_tracks_removed",
    "attachments_removed": "{r}.attachments_removed",
    "videos_transcoded": "({r}.video_target_codec IS NOT NULL)",
    "videos_skipped": "{r}.video_transcode_skipped",
    "audio_transcoded": "{r}.audio_tracks_transcoded",
    "duration_us": "CAST(round({r}.duration_seconds * 1000000) AS INTEGER)",
}
MEASURE_NAMES: tuple[str, ...] = tuple(MEASURES)

# Rollup granularities, coarsest first, with the length of the `processed_at` prefix
# that names a bucket: `2026-11`, `2026-11-24`, `2026-11-24T13`. The stored time format
# (vpo.timefmt) is fixed-width, so a prefix is a bucket and text order is time order.
SPANS: tuple[tuple[str, int], ...] = (("month", 7), ("day", 10), ("hour", 13))


def raw_sums(alias: str) -> str:
    """`coalesce(sum(...), 0) AS name, …` over raw rows aliased `alias`."""
    return ", ".join(
        f"coalesce(sum({expr.format(r=alias)}), 0) AS {name}" for name, expr in MEASURES.items()
    )


def rollup_sums() -> str:
    """`coalesce(sum(name), 0) AS name, …` over rollup rows (or a union of partial sums)."""
    return ", ".join(f"coalesce(sum({name}), 0) AS {name}" for name in MEASURES)
