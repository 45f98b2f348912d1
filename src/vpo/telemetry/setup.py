"""Telemetry of one command or job: tracing into the statistics tables, metrics into a
Prometheus registry, and (when `OTEL_EXPORTER_OTLP_*ENDPOINT` is set) spans to OTLP.

    telemetry = open_telemetry(db_path)
    with telemetry.tracer.start_as_current_span(attributes.PROCESS_FILE, ...): ...
    telemetry.shutdown()   # flushes: every run is in the database before the CLI exits

A `Telemetry` is an object its owner passes on, never a process-wide singleton: a
server runs many at once, and shutting one down leaves the others recording. Nothing
is installed as OpenTelemetry's global provider.

The statistics see every run in full whatever `OTEL_*` says: their tracer provider
samples everything and limits nothing. A user's sampler and limits shape only what
goes to OTLP (docs/statistics.md).
"""

import atexit
import gc
import logging
import os
import socket
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link
from prometheus_client import CollectorRegistry

from vpo import __version__
from vpo.db.interrupted import MarkerStore
from vpo.telemetry import attributes as attr
from vpo.telemetry.collector import LibraryCollector
from vpo.telemetry.exemplars import ExemplarCollector, RunExemplars
from vpo.telemetry.exporter import StatsSpanExporter
from vpo.telemetry.inflight import RunMarkerProcessor
from vpo.telemetry.instruments import DURATION_BUCKETS_S, METER_NAME, RunMetrics, views

log = logging.getLogger(__name__)

# Spans waiting for the exporter. The SDK's default (2048) drops spans when runs end
# faster than SQLite takes them; a dropped root would leave its run to be found only as
# "interrupted". 32768 spans is over a thousand runs, a few tens of MB at worst.
MAX_QUEUED_SPANS = 32_768
EXPORT_TIMEOUT_MILLIS = 30_000

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

# Explicit on every field: a field left None is read from OTEL_*_LIMIT variables.
UNLIMITED = SpanLimits(
    max_attributes=SpanLimits.UNSET,
    max_events=SpanLimits.UNSET,
    max_links=SpanLimits.UNSET,
    max_span_attributes=SpanLimits.UNSET,
    max_event_attributes=SpanLimits.UNSET,
    max_link_attributes=SpanLimits.UNSET,
    max_attribute_length=SpanLimits.UNSET,
    max_span_attribute_length=SpanLimits.UNSET,
)


@dataclass
class Telemetry:
    """The providers, the Prometheus registry and the statistics exporter of one owner."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry
    exporter: StatsSpanExporter
    metrics: RunMetrics
    otlp_enabled: bool = False
    lease_token: str | None = None
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _at_exit: Callable[[], None] | None = field(default=None, repr=False)

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
        return self.exporter.problems

    def recording_problem(self) -> str | None:
        """None while runs are being recorded; otherwise one sentence saying that finished
        runs are waiting unwritten because writing them keeps failing (read-only or full
        disk, a lock held for long). Cheap: a batch asks before each file."""
        return self.exporter.recording_problem()

    def shutdown(self) -> list[str]:
        """Flush and stop; return every problem the exporter met (empty: all recorded)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._at_exit is not None:
                    atexit.unregister(self._at_exit)
                    self._at_exit = None
                self.tracer_provider.shutdown()  # flushes the batch processors, then exporters
                self.meter_provider.shutdown()
        return self.exporter.problems


# Every run allocates thousands of short-lived span, attribute and metric objects; with
# CPython's default thresholds (700, 10, 10) the collector runs so often that full
# collections stall a run by up to ~100 ms (benchmarks/bench_telemetry.py). Fewer, larger
# young collections keep the worst case near 10 ms.
GC_THRESHOLDS = (10_000, 50, 100)


def tune_garbage_collector() -> None:
    """Thresholds for a process that records many runs (see GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)


def open_telemetry(db_path: str | Path) -> Telemetry:
    """A new `Telemetry` for a command or job recording into `db_path`, in a process tuned
    for it. The caller owns it and must `shutdown()` it (flushes every run)."""
    tune_garbage_collector()
    return build_telemetry(db_path)


def build_telemetry(
    db_path: str | Path,
    *,
    max_export_batch_size: int = 512,
    schedule_delay_millis: int = 1000,
    exporter_busy_timeout: float | None = None,
    otlp: bool | None = None,
) -> Telemetry:
    """Providers wired to `db_path`, owned by the caller (several may live at once)."""
    resource = _resource()
    lease_token = _lease_token(db_path)
    markers = MarkerStore(db_path)
    exporter = StatsSpanExporter(db_path, busy_timeout=exporter_busy_timeout, markers=markers)
    tracer_provider = _StatisticsTracerProvider(
        sampler=ALWAYS_ON,
        span_limits=UNLIMITED,
        resource=resource,
        shutdown_on_exit=False,  # one atexit hook per Telemetry, removed at its shutdown
    )
    tracer_provider.add_span_processor(RunMarkerProcessor(markers, lease_token))
    exemplars = RunExemplars(DURATION_BUCKETS_S)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=MAX_QUEUED_SPANS,
            max_export_batch_size=max_export_batch_size,
            schedule_delay_millis=schedule_delay_millis,
            export_timeout_millis=EXPORT_TIMEOUT_MILLIS,
        )
    )
    otlp_enabled = _add_otlp(tracer_provider) if otlp is not False else False

    # The reader fills a registry of its own; the one served sees its families through
    # ExemplarCollector, which adds the runs' exemplars the exporter drops (exemplars.py).
    instruments = CollectorRegistry()
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=instruments)
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=views(),
        # The SDK's exemplars never reach the exposition (the exporter drops them, and a
        # reservoir forgets its exemplars at every collection): sampling them inside every
        # span would cost time for nothing. RunExemplars keeps the two series' own.
        exemplar_filter=AlwaysOffExemplarFilter(),
        shutdown_on_exit=False,
    )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ExemplarCollector(instruments, exemplars))
    registry.register(LibraryCollector(db_path))
    telemetry = Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        registry=registry,
        exporter=exporter,
        metrics=RunMetrics(meter_provider.get_meter(METER_NAME, __version__), exemplars),
        otlp_enabled=otlp_enabled,
        lease_token=lease_token,
    )
    telemetry._at_exit = _shutdown_at_exit(telemetry)
    atexit.register(telemetry._at_exit)
    return telemetry


class _StatisticsTracerProvider(TracerProvider):
    """A provider that `OTEL_SDK_DISABLED=true` does not turn into a no-op: the
    statistics are VPO's own records, not optional instrumentation."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._disabled = False


def _shutdown_at_exit(telemetry: Telemetry) -> Callable[[], None]:
    """An exit hook that flushes `telemetry` if its owner never shut it down, without
    keeping it alive (a server makes many)."""
    ref = weakref.ref(telemetry)

    def hook() -> None:
        owner = ref()
        if owner is not None:
            owner.shutdown()

    return hook


def _lease_token(db_path: str | Path) -> str | None:
    """This process's lease on the library, whose token marks its runs as alive; None
    (markers then fall back to a PID check) where the lock folder cannot be written."""
    from vpo.ownership import lease_for

    for _attempt in range(3):  # a stale-lease sweep may race the lease's creation
        try:
            return lease_for(db_path).owner.token
        except OSError as exc:
            error = exc
    log.debug("cannot take a lease on %s (%s); runs are marked by PID only", db_path, error)
    return None


def _resource() -> Resource:
    """service.name=vpo, the version and host.name (the worker of each run), unless
    OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say otherwise (`Resource.create` reads
    them; explicit values would win, so only defaults that the environment does not set
    are passed)."""
    from_environment = Resource.create({})
    defaults = {SERVICE_VERSION: __version__}
    if not from_environment.attributes.get(attr.HOST_NAME):
        defaults[attr.HOST_NAME] = socket.gethostname()
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
    tracer_provider.add_span_processor(BatchSpanProcessor(ShapedExporter(OTLPSpanExporter())))
    return True


class ShapedExporter(SpanExporter):
    """Applies the user's `OTEL_TRACES_SAMPLER*` and `OTEL_*_LIMIT` settings to the spans
    an exporter receives — here, what goes to OTLP, never what the statistics see.

    The sampler decides per trace id, once per trace: a trace goes out whole or not at
    all. Attributes, events and links are cut to the limits as the SDK would.
    """

    MAX_DECISIONS = 10_000  # recent traces whose decision is remembered

    def __init__(
        self,
        inner: SpanExporter,
        sampler: Sampler | None = None,
        limits: SpanLimits | None = None,
    ) -> None:
        from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

        self.inner = inner
        self.sampler = sampler or _get_from_env_or_default()
        self.limits = limits or SpanLimits()  # unset fields come from OTEL_*_LIMIT
        self._decisions: OrderedDict[int, bool] = OrderedDict()
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        kept = [self._shape(span) for span in spans if self._sampled(span)]
        return self.inner.export(kept) if kept else SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def _sampled(self, span: ReadableSpan) -> bool:
        if span.context is None:
            return False
        trace_id = span.context.trace_id
        with self._lock:
            decided = self._decisions.get(trace_id)
            if decided is None:
                result = self.sampler.should_sample(None, trace_id, attr.PROCESS_FILE)
                decided = result.decision.is_sampled()
                self._decisions[trace_id] = decided
                while len(self._decisions) > self.MAX_DECISIONS:
                    self._decisions.popitem(last=False)
            return decided

    def _shape(self, span: ReadableSpan) -> ReadableSpan:
        """`span` as the SDK would have kept it under the user's limits (itself when
        it is within them)."""
        limits = self.limits
        if not self._over_limits(span):
            return span
        events: BoundedList = BoundedList(limits.max_events)
        for event in span.events:
            events.append(
                Event(
                    event.name,
                    _bounded(
                        event.attributes, limits.max_event_attributes, limits.max_attribute_length
                    ),
                    event.timestamp,
                )
            )
        links: BoundedList = BoundedList(limits.max_links)
        for link in span.links:
            links.append(
                Link(
                    link.context,
                    _bounded(
                        link.attributes, limits.max_link_attributes, limits.max_attribute_length
                    ),
                )
            )
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_bounded(
                span.attributes, limits.max_span_attributes, limits.max_span_attribute_length
            ),
            events=events,
            links=links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _over_limits(self, span: ReadableSpan) -> bool:
        limits = self.limits
        return (
            _over(span.attributes, limits.max_span_attributes, limits.max_span_attribute_length)
            or (limits.max_events is not None and len(span.events) > limits.max_events)
            or (limits.max_links is not None and len(span.links) > limits.max_links)
            or any(
                _over(e.attributes, limits.max_event_attributes, limits.max_attribute_length)
                for e in span.events
            )
            or any(
                _over(k.attributes, limits.max_link_attributes, limits.max_attribute_length)
                for k in span.links
            )
        )


def _over(attributes: object, count: int | None, length: int | None) -> bool:
    items = dict(attributes or {})  # type: ignore[call-overload]
    if count is not None and len(items) > count:
        return True
    if length is None:
        return False
    for value in items.values():
        if isinstance(value, str) and len(value) > length:
            return True
        if isinstance(value, Sequence) and any(
            isinstance(v, str) and len(v) > length for v in value
        ):
            return True
    return False


def _bounded(attributes: object, count: int | None, length: int | None) -> BoundedAttributes:
    values = dict(attributes or {})  # type: ignore[call-overload]
    return BoundedAttributes(count, values, True, length)
