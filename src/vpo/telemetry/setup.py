"""Telemetry set-up, once per process: tracing into the statistics tables, metrics into
a Prometheus registry, and (when `OTEL_EXPORTER_OTLP_*ENDPOINT` is set) spans to OTLP.

    telemetry = configure_telemetry(db_path)
    with telemetry.tracer.start_as_current_span(attributes.PROCESS_FILE, ...): ...
    telemetry.shutdown()   # flushes: every run is in the database before the CLI exits
"""

import gc
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry

from vpo import __version__
from vpo.db.interrupted import MarkerStore
from vpo.telemetry.collector import LibraryCollector
from vpo.telemetry.exporter import StatsSpanExporter
from vpo.telemetry.inflight import RunMarkerProcessor
from vpo.telemetry.instruments import METER_NAME, RunMetrics, views

log = logging.getLogger(__name__)

# Spans waiting for the exporter. The SDK's default (2048) drops spans when runs end
# faster than SQLite takes them; a dropped root would leave its run to be found only as
# "interrupted". 32768 spans is over a thousand runs, a few tens of MB at worst.
MAX_QUEUED_SPANS = 32_768

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass
class Telemetry:
    """The configured providers, the Prometheus registry and the statistics exporter."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry
    exporter: StatsSpanExporter
    metrics: RunMetrics
    otlp_enabled: bool = False
    _closed: bool = field(default=False, repr=False)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer("vpo", __version__)

    def flush(self) -> list[str]:
        """Write every finished run now; return the problems met so far."""
        self.tracer_provider.force_flush()
        self.exporter.force_flush()
        return list(self.exporter.problems)

    def shutdown(self) -> list[str]:
        """Flush and stop; return every problem the exporter met (empty: all recorded)."""
        if not self._closed:
            self._closed = True
            self.tracer_provider.shutdown()  # flushes the batch processors, then the exporters
            self.meter_provider.shutdown()
        return list(self.exporter.problems)


_lock = threading.Lock()
_current: Telemetry | None = None

# Every run allocates thousands of short-lived span, attribute and metric objects; with
# CPython's default thresholds (700, 10, 10) the collector runs so often that full
# collections stall a run by up to ~100 ms (benchmarks/bench_telemetry.py). Fewer, larger
# young collections keep the worst case near 10 ms.
GC_THRESHOLDS = (10_000, 50, 100)


def tune_garbage_collector() -> None:
    """Thresholds for a process that records many runs (see GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)


def configure_telemetry(db_path: str | Path) -> Telemetry:
    """The process's telemetry for `db_path`, configured on first call; later calls return
    the same object. Once it is shut down (a command ended), the next call configures
    afresh, so one process can run several commands in turn (tests do). The first
    providers are also installed as OpenTelemetry's globals, for other instrumentation."""
    global _current
    with _lock:
        if _current is not None and not _current.closed:
            if _current.exporter.db_path != Path(db_path):
                raise RuntimeError("telemetry is already running for another database")
            return _current
        first = _current is None
        tune_garbage_collector()
        _current = build_telemetry(db_path)
        if first:
            trace.set_tracer_provider(_current.tracer_provider)
            metrics.set_meter_provider(_current.meter_provider)
        return _current


def build_telemetry(
    db_path: str | Path,
    *,
    max_export_batch_size: int = 512,
    schedule_delay_millis: int = 1000,
    exporter_busy_timeout: float | None = None,
    otlp: bool | None = None,
) -> Telemetry:
    """Providers wired to `db_path`, not installed globally (tests build several)."""
    resource = _resource()
    markers = MarkerStore(db_path)
    exporter = StatsSpanExporter(db_path, busy_timeout=exporter_busy_timeout, markers=markers)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(RunMarkerProcessor(markers))
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=MAX_QUEUED_SPANS,
            max_export_batch_size=max_export_batch_size,
            schedule_delay_millis=schedule_delay_millis,
        )
    )
    otlp_enabled = _add_otlp(tracer_provider) if otlp is not False else False

    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=registry)
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=views(),
        # The Prometheus text exposition carries no exemplars: sampling them inside every
        # span would cost time for nothing.
        exemplar_filter=AlwaysOffExemplarFilter(),
    )
    registry.register(LibraryCollector(db_path))
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        registry=registry,
        exporter=exporter,
        metrics=RunMetrics(meter_provider.get_meter(METER_NAME, __version__)),
        otlp_enabled=otlp_enabled,
    )


def _resource() -> Resource:
    """service.name=vpo and the version, unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    say otherwise (`Resource.create` reads them; explicit values would win, so only
    defaults that the environment does not set are passed)."""
    from_environment = Resource.create({})
    defaults = {SERVICE_VERSION: __version__}
    if str(from_environment.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = "vpo"
    return Resource.create(defaults)


def _add_otlp(tracer_provider: TracerProvider) -> bool:
    if not any(os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed; "
            "install it with: pip install 'vpo[otlp]'"
        )
        return False
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return True
