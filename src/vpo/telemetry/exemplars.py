"""Exemplars on `/metrics`: the run-duration histogram's buckets and the files-processed
counter carry the `trace_id` and `span_id` of the last run counted in them
(docs/metrics.md, "Exemplars").

`opentelemetry-exporter-prometheus` drops exemplars, and the SDK's exemplar reservoirs
forget theirs at every collection (one scrape, of either format, would take them). So the
SDK keeps `AlwaysOffExemplarFilter` and the bridge is VPO's own, the Prometheus way: the
last exemplar of each bucket and counter series is kept here, written when a run is
counted, and attached to the matching samples of the exporter's output. The OpenMetrics
encoder prints them; the plain text encoder ignores them, so that format is unchanged.

A run's metrics carry its root span's context (`RunOutcome.span_context`, set by
`workflow/processor.py`), and `RunMetrics.run_finished` hands it to the exemplars.
"""

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping

from opentelemetry.trace import SpanContext
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar, Sample

# The exposition's names of the two instruments (instruments.PROCESSING_DURATION and
# FILES_PROCESSED as the exporter names them; docs/metrics.md).
DURATION_BUCKET = "vpo_processing_duration_seconds_bucket"
FILES_TOTAL = "vpo_files_processed_total"
FAMILIES = frozenset({"vpo_processing_duration_seconds", "vpo_files_processed"})

INF = float("inf")

# (sample name, its labels but `le`, the bucket's upper bound or None for a counter)
_Key = tuple[str, tuple[tuple[str, str], ...], float | None]


class RunExemplars:
    """The last exemplar of every duration bucket and files-processed series."""

    def __init__(self, duration_bounds: Iterable[float]) -> None:
        self._bounds = [float(b) for b in duration_bounds]
        self._latest: dict[_Key, Exemplar] = {}
        self._lock = threading.Lock()

    def run_finished(self, labels: Mapping[str, str], seconds: float, run: SpanContext) -> None:
        """The run whose root span is `run` was counted under `labels` and took `seconds`."""
        if not run.is_valid:
            return
        ids = {"trace_id": format(run.trace_id, "032x"), "span_id": format(run.span_id, "016x")}
        now = time.time()
        series = tuple(sorted(labels.items()))
        index = bisect_left(self._bounds, seconds)  # OTel and `le`: upper bounds inclusive
        bound = self._bounds[index] if index < len(self._bounds) else INF
        with self._lock:
            self._latest[(DURATION_BUCKET, series, bound)] = Exemplar(ids, seconds, now)
            self._latest[(FILES_TOTAL, series, None)] = Exemplar(ids, 1.0, now)

    def snapshot(self) -> dict[_Key, Exemplar]:
        with self._lock:
            return dict(self._latest)


class ExemplarCollector:
    """The families of `source` (the OpenTelemetry reader's registry), with the exemplars
    of `exemplars` on the samples they belong to."""

    def __init__(self, source: CollectorRegistry, exemplars: RunExemplars) -> None:
        self._source = source
        self._exemplars = exemplars

    def describe(self) -> list[Metric]:
        return []  # no collection when registered (the reader's own collector did none)

    def collect(self) -> Iterable[Metric]:
        latest = self._exemplars.snapshot()
        for family in self._source.collect():
            if latest and family.name in FAMILIES:
                family.samples = [_with_exemplar(sample, latest) for sample in family.samples]
            yield family


def _with_exemplar(sample: Sample, latest: Mapping[_Key, Exemplar]) -> Sample:
    if sample.name == DURATION_BUCKET:
        labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        exemplar = latest.get((sample.name, labels, float(sample.labels["le"])))
    elif sample.name == FILES_TOTAL:
        exemplar = latest.get((sample.name, tuple(sorted(sample.labels.items())), None))
    else:
        return sample
    return sample if exemplar is None else sample._replace(exemplar=exemplar)
