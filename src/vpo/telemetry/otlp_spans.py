"""OTLP trace requests → the `ReadableSpan`s the statistics exporter consumes.

A worker sends its spans over OTLP/HTTP (`POST /v1/traces` of `vpo serve`); the server
turns each OTLP span back into the SDK's `ReadableSpan` — name, context, parent,
attributes of every OTLP value type, events, links, status, times, resource and scope —
so that the same `StatsSpanExporter` builds the same rows from them as it does from the
spans of a local run (docs/statistics.md). Nothing here knows about HTTP.

OTLP/JSON (the OTLP specification, "JSON Protobuf Encoding") is the protobuf JSON mapping
with two differences that matter here: trace and span ids are hex strings, not base64,
and field names may be lowerCamelCase or the original ones. `request_from_json` converts
the ids and lets `google.protobuf.json_format` do the rest (enums as integers or names,
64-bit integers as strings or numbers, unknown fields ignored).
"""

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

__all__ = [
    "InvalidRequest",
    "parse_json",
    "parse_protobuf",
    "readable_spans",
    "response_json",
    "response_protobuf",
    "well_formed",
]

# Span.flags (OTLP 1.1+): bit 8 says whether bit 9 (the parent is remote) is known.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
# Made once rather than per span (an enum call costs more than the rest of a field):
# every TraceFlags value, OTLP's span kinds (from SPAN_KIND_UNSPECIFIED = 0, INTERNAL = 1;
# the SDK counts from INTERNAL = 0) and the statuses without a description, which
# are immutable and so can be shared.
_TRACE_FLAGS = tuple(TraceFlags(n) for n in range(256))
_KINDS = {0: SpanKind.INTERNAL, **{kind.value + 1: kind for kind in SpanKind}}
_STATUS_UNSET = Status(StatusCode.UNSET)
_STATUS_OK = Status(StatusCode.OK)
_SCALARS = frozenset(("string_value", "bool_value", "int_value", "double_value", "bytes_value"))
_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class InvalidRequest(ValueError):
    """A body that is not an ExportTraceServiceRequest in the format it claims."""


# --- parsing --------------------------------------------------------------------------


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise InvalidRequest(
            f"the body is not a protobuf ExportTraceServiceRequest ({exc})"
        ) from None
    return request


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body (hex ids) as the protobuf message."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body is not a JSON object")
    _hex_ids_to_base64(data)
    try:
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(
            f"the body is not an OTLP/JSON ExportTraceServiceRequest ({exc})"
        ) from None


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex; the protobuf JSON mapping of `bytes`
    is base64. Rewrite the ids of spans and links in place."""
    for span in _objects(data, ("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans")):
        for entry in _list(span, "spans"):
            _convert_ids(entry)
            for link in _list(entry, "links"):
                _convert_ids(link)


def _objects(data: dict[str, Any], outer: tuple[str, ...], inner: tuple[str, ...]) -> Iterator[Any]:
    for resource_spans in _list(data, *outer):
        yield from _list(resource_spans, *inner)


def _list(data: Any, *names: str) -> list[Any]:
    if not isinstance(data, dict):
        return []
    for name in names:
        value = data.get(name)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []


def _convert_ids(entry: dict[str, Any]) -> None:
    for name in _ID_FIELDS:
        value = entry.get(name)
        if not isinstance(value, str):
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise InvalidRequest(f"{name} {value[:40]!r} is not a hex string") from None
        entry[name] = base64.b64encode(raw).decode("ascii")


# --- answers --------------------------------------------------------------------------


def _response(rejected: int, message: str) -> ExportTraceServiceResponse:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response


def response_protobuf(rejected: int = 0, message: str = "") -> bytes:
    return _response(rejected, message).SerializeToString()


def response_json(rejected: int = 0, message: str = "") -> bytes:
    """`{}` when everything was accepted, else `{"partialSuccess": {...}}`."""
    data = json_format.MessageToDict(_response(rejected, message))
    return json.dumps(data).encode()


# --- OTLP spans → ReadableSpan ----------------------------------------------------------


def readable_spans(request: ExportTraceServiceRequest) -> Iterator[ReadableSpan]:
    """Every span of `request` as a `ReadableSpan`, with its resource and scope."""
    for resource_spans in request.resource_spans:
        resource = Resource(
            _attributes(resource_spans.resource.attributes), resource_spans.schema_url or None
        )
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            instrumentation_scope = InstrumentationScope(
                scope.name,
                scope.version or None,
                scope_spans.schema_url or None,
                _attributes(scope.attributes) or None,
            )
            for span in scope_spans.spans:
                yield readable_span(span, resource, instrumentation_scope)


def readable_span(
    span: trace_pb2.Span,
    resource: Resource | None = None,
    scope: InstrumentationScope | None = None,
) -> ReadableSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    span_flags = span.flags
    flags = _TRACE_FLAGS[span_flags & 0xFF]
    context = SpanContext(
        trace_id,
        int.from_bytes(span.span_id, "big"),
        is_remote=False,
        trace_flags=flags,
        trace_state=_trace_state(span.trace_state),
    )
    parent = None
    parent_span_id = span.parent_span_id
    if parent_span_id:
        parent = SpanContext(
            trace_id,
            int.from_bytes(parent_span_id, "big"),
            is_remote=bool(span_flags & _HAS_IS_REMOTE and span_flags & _IS_REMOTE),
            trace_flags=flags,
        )
    otlp_status = span.status
    code = otlp_status.code
    if code == 2:
        status = Status(StatusCode.ERROR, otlp_status.message or None)
    else:  # an unknown code is taken as unset
        status = _STATUS_OK if code == 1 else _STATUS_UNSET
    events = span.events
    links = span.links
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_attributes(span.attributes),
        events=tuple(
            Event(event.name, _attributes(event.attributes), event.time_unix_nano)
            for event in events
        )
        if events
        else (),
        links=tuple(
            Link(
                SpanContext(
                    int.from_bytes(link.trace_id, "big"),
                    int.from_bytes(link.span_id, "big"),
                    is_remote=True,
                    trace_flags=_TRACE_FLAGS[link.flags & 0xFF],
                    trace_state=_trace_state(link.trace_state),
                ),
                _attributes(link.attributes),
            )
            for link in links
        )
        if links
        else (),
        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=status,
        start_time=span.start_time_unix_nano or None,
        end_time=span.end_time_unix_nano or None,
        instrumentation_scope=scope,
    )


def well_formed(span: ReadableSpan) -> bool:
    """A 16-byte trace id and an 8-byte span id, neither all zeros (OTLP requires it)."""
    context = span.context
    return (
        context is not None
        and 0 < context.trace_id < 1 << 128
        and 0 < context.span_id < 1 << 64
        and (span.parent is None or 0 < span.parent.span_id < 1 << 64)
    )


def _trace_state(header: str) -> TraceState | None:
    if not header:
        return None
    return TraceState.from_header([header])


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        which = value.WhichOneof("value")
        if which in _SCALARS:  # most values: read in place, without a call to _value
            attributes[pair.key] = getattr(value, which)
        elif which is not None:
            attributes[pair.key] = _value(value)
    return attributes


def _value(value: AnyValue) -> Any:
    """An OTLP AnyValue as Python: str, bool, int, float, bytes, a tuple (array) or a
    dict (kvlist); None when it holds nothing."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)
