"""The worker's telemetry: the spans of its runs go over OTLP/HTTP to the server
(through the spool on the worker's disk, `vpo.queue.spool`), and nowhere else. Unlike
`vpo.telemetry.setup.build_telemetry` there is no statistics exporter and no in-flight
marker: the runs name the SERVER's file ids, which mean nothing in the worker's scratch
database; the server records them. The run's markers are the server's instead: `vpo
worker` adds a `vpo.queue.announce.RunAnnouncer`, whose heartbeats let the server record
the run of a killed worker as interrupted (docs/statistics.md, "A worker that dies").

Like the statistics' provider, this one samples everything and limits nothing: the
server builds the rows from these spans (docs/statistics.md)."""

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from vpo import __version__
from vpo.queue.otlp_post import post_spans
from vpo.telemetry.exemplars import RunExemplars
from vpo.telemetry.instruments import DURATION_BUCKETS_S, METER_NAME, RunMetrics, views
from vpo.telemetry.setup import (
    EXPORT_TIMEOUT_MILLIS,
    MAX_QUEUED_SPANS,
    UNLIMITED,
    _resource,
)


class CountingExporter(SpanExporter):
    """Counts the exports that failed (the spool full)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failures = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            with self._lock:
                self.failures += 1
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


@dataclass
class WorkerTelemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    metrics: RunMetrics
    exporter: CountingExporter = field(repr=False)

    @property
    def export_failures(self) -> int:
        return self.exporter.failures

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer("vpo", __version__)

    def flush(self) -> None:
        """Spool every finished span now (a failure counts in `export_failures`)."""
        self.tracer_provider.force_flush(EXPORT_TIMEOUT_MILLIS)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def worker_telemetry(
    exporter: SpanExporter,
    metric_readers: Sequence[MetricReader] = (),
    exemplars: RunExemplars | None = None,
) -> WorkerTelemetry:
    """Providers whose spans all go to `exporter` (the OTLP exporter to the server); the
    live instruments go to `metric_readers` (`vpo worker --metrics`, vpo.queue.metrics_http,
    with its `exemplars`), or nowhere."""
    counting = CountingExporter(exporter)
    resource = _resource()
    tracer_provider = TracerProvider(
        sampler=ALWAYS_ON, span_limits=UNLIMITED, resource=resource, shutdown_on_exit=False
    )
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            counting,
            max_queue_size=MAX_QUEUED_SPANS,
            export_timeout_millis=EXPORT_TIMEOUT_MILLIS,
        )
    )
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=list(metric_readers),
        views=views(),
        exemplar_filter=AlwaysOffExemplarFilter(),
        shutdown_on_exit=False,
    )
    metrics = RunMetrics(
        meter_provider.get_meter(METER_NAME, __version__),
        exemplars if exemplars is not None else RunExemplars(DURATION_BUCKETS_S),
    )
    return WorkerTelemetry(tracer_provider, meter_provider, metrics, counting)


def server_problem(endpoint: str, token: str) -> str | None:
    """Why the server would not record this worker's runs now (an empty OTLP request must
    answer 200 to the worker's token), or None. `endpoint` is an http(s) URL."""
    return post_spans(endpoint, token, b"", timeout=10, compress=False)
