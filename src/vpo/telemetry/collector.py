"""`LibraryCollector`: what is in the database, read at scrape time (docs/metrics.md).

A `prometheus_client` custom collector. It reads the trigger-kept library totals and
statistics rollups (a few rows, whatever the library's size), through a read-only
connection kept by each scraping thread (opening one and parsing the schema cost more than
the queries), so a scrape never blocks a writer and never creates the file.
"""

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vpo.db.library import container_totals, track_totals, video_totals

log = logging.getLogger(__name__)


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        "files": GaugeMetricFamily(
            "vpo_library_files", "Files in the library by container", labels=["container"]
        ),
        "size": GaugeMetricFamily("vpo_library_size_bytes", "Bytes of all files in the library"),
        "tracks": GaugeMetricFamily(
            "vpo_library_tracks", "Tracks in the library", labels=["track_type", "codec"]
        ),
        "video": GaugeMetricFamily(
            "vpo_library_video_files",
            "Files by the codec and resolution of their first video track",
            labels=["video_codec", "resolution"],
        ),
        "runs": GaugeMetricFamily(
            "vpo_history_runs",
            "All recorded runs, by whichever process",
            labels=["policy", "status"],
        ),
        "saved": GaugeMetricFamily(
            "vpo_history_saved_bytes", "Net bytes saved by all recorded runs", labels=["policy"]
        ),
    }


class LibraryCollector(Collector):
    """Gauges of the library and of the recorded history, from `db_path`."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self._local = threading.local()  # (file identity, connection) per thread

    def describe(self) -> Iterable[Metric]:
        # Registering must not read the database: describe with empty families.
        return list(_families().values())

    def collect(self) -> Iterator[Metric]:
        families = _families()
        if self.db_path.exists():
            try:
                self._fill(families)
            except sqlite3.Error as exc:
                log.error("library collector cannot read %s: %s", self.db_path, exc)
                families = _families()  # all or nothing: no half-filled scrape
                self._drop()
        yield from families.values()

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened afresh when the file was replaced."""
        try:
            stat = self.db_path.stat()
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot open the database: {exc}") from None
        identity = (stat.st_dev, stat.st_ino)
        kept = getattr(self._local, "kept", None)
        if kept is not None and kept[0] == identity:
            return kept[1]
        self._drop()
        conn = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        self._local.kept = (identity, conn)
        return conn

    def _drop(self) -> None:
        kept = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept is not None:
            kept[1].close()

    def _fill(self, families: dict[str, GaugeMetricFamily]) -> None:
        conn = self._connection()
        total = 0
        for container, files, size in container_totals(conn):
            families["files"].add_metric([container], files)
            total += size
        families["size"].add_metric([], total)
        for track_type, codec, tracks in track_totals(conn):
            families["tracks"].add_metric([track_type, codec], tracks)
        for codec, resolution, files in video_totals(conn):
            families["video"].add_metric([codec, resolution], files)
        # The monthly rollups hold every run (vpo.db.measures): a few rows per policy
        # and month instead of a pass over processing_stats.
        for policy, runs, successes, saved in conn.execute(
            "SELECT policy_name, sum(runs), sum(successes), sum(size_saved) "
            "FROM stats_rollups WHERE span = 'month' GROUP BY policy_name"
        ):
            families["runs"].add_metric([policy, "success"], successes)
            families["runs"].add_metric([policy, "failure"], runs - successes)
            families["saved"].add_metric([policy], saved)
