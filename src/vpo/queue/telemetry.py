"""The worker's telemetry: the spans of its runs go over OTLP/HTTP to the server
(through the spool on the worker's disk, `vpo.queue.spool`), and nowhere else. Unlike
`vpo.telemetry.setup.build_telemetry` there is no statistics exporter and no in-flight
marker: the runs name the SERVER's file ids, which mean nothing in the worker's scratch
database; the server records them (and a run lost with a killed worker is not recorded:
its message is delivered again).

Like the statistics' provider, this one samples everything and limits nothing: the
server builds the rows from these spans (docs/statistics.md)."""

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from vpo import __version__
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


def worker_telemetry(exporter: SpanExporter) -> WorkerTelemetry:
    """Providers whose spans all go to `exporter` (the OTLP exporter to the server)."""
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
        views=views(),
        exemplar_filter=AlwaysOffExemplarFilter(),
        shutdown_on_exit=False,
    )
    metrics = RunMetrics(
        meter_provider.get_meter(METER_NAME, __version__), RunExemplars(DURATION_BUCKETS_S)
    )
    return WorkerTelemetry(tracer_provider, meter_provider, metrics, counting)


def server_problem(endpoint: str, token: str) -> str | None:
    """Why the server would not record this worker's runs now (an empty OTLP request must
    answer 200 to the worker's token), or None. `endpoint` is an http(s) URL."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the caller checked the scheme
        endpoint,
        data=b"",
        method="POST",
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            return None
    except urllib.error.HTTPError as exc:
        reason = f"it answered {exc.code} {exc.reason}"
        if exc.code in (401, 403):
            reason += " (is VPO_WORKER_TOKEN the server's worker token?)"
        return reason
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
