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
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1 import resource_pb2
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
    "spans_from_protobuf",
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


def spans_from_protobuf(body: bytes) -> list[ReadableSpan]:
    """`readable_spans(parse_protobuf(body))`, the same spans or the same `InvalidRequest`,
    in about half the time: span attributes are read from their encoding directly
    (`_raw_attributes`) rather than one protobuf object at a time. Anything that path
    does not read exactly as protobuf would — an array or kvlist value, an unusual
    encoding, a body that does not parse — goes the full way instead."""
    try:
        return list(readable_spans(_RawAttributesRequest.FromString(body)))
    except (_Unusual, DecodeError, RuntimeWarning, ValueError):
        pass
    return list(readable_spans(parse_protobuf(body)))


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
    """`span` (a protobuf `Span`, or the `_RawAttributesRequest`'s) as a `ReadableSpan`."""
    trace_id = int.from_bytes(span.trace_id, "big")
    span_flags = span.flags
    flags = _TRACE_FLAGS[span_flags & 0xFF]
    trace_state = span.trace_state
    # Positional arguments: this runs for every span received, and keywords cost more.
    context = SpanContext(
        trace_id,
        int.from_bytes(span.span_id, "big"),
        False,  # is_remote
        flags,
        _trace_state(trace_state) if trace_state else None,
    )
    parent = None
    parent_span_id = span.parent_span_id
    if parent_span_id:
        parent = SpanContext(
            trace_id,
            int.from_bytes(parent_span_id, "big"),
            bool(span_flags & _HAS_IS_REMOTE and span_flags & _IS_REMOTE),
            flags,
        )
    otlp_status = span.status
    code = otlp_status.code
    if code == 2:
        status = Status(StatusCode.ERROR, otlp_status.message or None)
    else:  # an unknown code is taken as unset
        status = _STATUS_OK if code == 1 else _STATUS_UNSET
    attributes = span.attributes  # KeyValues, or their encodings (_RawAttributesRequest)
    events = span.events
    links = span.links
    return ReadableSpan(
        span.name,
        context,
        parent,
        resource,
        _raw_attributes(attributes)
        if attributes and type(attributes[0]) is bytes
        else _attributes(attributes),
        tuple(
            Event(event.name, _attributes(event.attributes), event.time_unix_nano)
            for event in events
        )
        if events
        else (),
        tuple(
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
        _KINDS.get(span.kind, SpanKind.INTERNAL),
        None,  # instrumentation_info (deprecated)
        status,
        span.start_time_unix_nano or None,
        span.end_time_unix_nano or None,
        scope,
    )


def well_formed(span: ReadableSpan) -> bool:
    """A 16-byte trace id and an 8-byte span id, neither all zeros (OTLP requires it), and
    so the parent's span id: what `SpanContext.is_valid` says, computed as it was made."""
    context = span.context
    if context is None or not context.is_valid:
        return False
    parent = span.parent
    return parent is None or parent.is_valid


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


# --- span attributes read from their encoding -----------------------------------------
#
# `_RawAttributesRequest` is ExportTraceServiceRequest (the same wire format as
# TracesData) with `Span.attributes` declared `repeated bytes` instead of `repeated
# KeyValue`: protobuf hands over each attribute's encoding, which `_raw_attributes`
# decodes — most of them from a cache, since a run's attributes mostly repeat from run
# to run (policy, codecs, action types, rules, states). Every other field, resources,
# scopes, events and links are parsed by protobuf as usual.


class _Unusual(Exception):
    """An attribute encoding `_decode_pair` does not read: the request goes the full way."""


def _raw_attributes_request() -> Any:
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        pool.Add(file)
    file = descriptor_pb2.FileDescriptorProto()
    trace_pb2.DESCRIPTOR.CopyToProto(file)
    span = next(message for message in file.message_type if message.name == "Span")
    attributes = next(f for f in span.field if f.name == "attributes")
    attributes.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    attributes.ClearField("type_name")
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("opentelemetry.proto.trace.v1.TracesData")
    )


_RawAttributesRequest = _raw_attributes_request()
_NOTHING = object()  # a key-value without a value: no attribute, as in `_attributes`
_CACHED_PAIR_BYTES = 256
_MAX_CACHED_PAIRS = 8192
_pairs: dict[bytes, Any] = {}  # a KeyValue's encoding → (key, value) or _NOTHING
_DOUBLE = struct.Struct("<d")


def _raw_attributes(encoded: Iterable[bytes]) -> dict[str, Any]:
    """The attributes from their KeyValue encodings: what `_attributes` gives for the
    same KeyValues (in order, the last of a repeated key kept, valueless ones left out)."""
    attributes: dict[str, Any] = {}
    pairs = _pairs
    for raw in encoded:
        pair = pairs.get(raw)
        if pair is None:
            pair = _decode_pair(raw)
            if len(raw) <= _CACHED_PAIR_BYTES:  # values are immutable: safe to share
                if len(pairs) >= _MAX_CACHED_PAIRS:
                    pairs.clear()
                pairs[raw] = pair
        if pair is not _NOTHING:
            attributes[pair[0]] = pair[1]
    return attributes


def _decode_pair(raw: bytes) -> Any:
    """One KeyValue in its usual encoding — the key (field 1) then the value (field 2), a
    scalar AnyValue — as (key, value); `_Unusual` for anything else (the full parse then
    reads it, or refuses the body, exactly as before)."""
    end = len(raw)
    key = ""
    position = 0
    try:
        if end and raw[0] == 0x0A:
            length, position = _varint(raw, 1)
            stop = position + length
            if stop > end:
                raise _Unusual
            key = raw[position:stop].decode()
            position = stop
        if position == end:
            return _NOTHING
        if raw[position] != 0x12:
            raise _Unusual
        length, position = _varint(raw, position + 1)
        if position + length != end:
            raise _Unusual
        if position == end:  # an empty AnyValue
            return _NOTHING
        tag = raw[position]
        if tag == 0x0A or tag == 0x3A:  # string_value, bytes_value
            length, position = _varint(raw, position + 1)
            if position + length != end:
                raise _Unusual
            return key, raw[position:end].decode() if tag == 0x0A else raw[position:end]
        if tag == 0x18 or tag == 0x10:  # int_value, bool_value
            number, position = _varint(raw, position + 1)
            if position != end:
                raise _Unusual
            if tag == 0x10:
                return key, number != 0
            return key, number - (1 << 64) if number >= 1 << 63 else number
        if tag == 0x21 and end - position == 9:  # double_value
            return key, _DOUBLE.unpack_from(raw, position + 1)[0]
    except (IndexError, UnicodeDecodeError):
        raise _Unusual from None
    raise _Unusual  # an array, a kvlist, an unknown or repeated field


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `position` (at most 10 bytes, 64 bits)."""
    byte = data[position]
    if byte < 0x80:
        return byte, position + 1
    result = byte & 0x7F
    shift = 7
    while True:
        position += 1
        byte = data[position]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >= 1 << 64:
                raise _Unusual
            return result, position + 1
        shift += 7
        if shift > 63:
            raise _Unusual
