"""Envoy resources as JSON trees for comparison: proto3 JSON field names (lowerCamelCase, as in
a config dump), absent and default-valued fields left out alike, `Any` payloads unpacked.

istiod emits `Any` payloads of Istio's own types (its `istio.*` filters) that no descriptor
here knows; they become `{"@type": ..., "@unknown": <base64>}` instead of failing the whole
resource."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tests.xds_client import message_class

# Well-known types whose proto3 JSON form is not an object of their fields.
_WELL_KNOWN = frozenset({
    "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask",
    "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
    "google.protobuf.Empty", "google.protobuf.BoolValue", "google.protobuf.StringValue",
    "google.protobuf.BytesValue", "google.protobuf.Int32Value", "google.protobuf.Int64Value",
    "google.protobuf.UInt32Value", "google.protobuf.UInt64Value", "google.protobuf.FloatValue",
    "google.protobuf.DoubleValue",
})


def to_json(message: Message) -> Any:
    full_name = message.DESCRIPTOR.full_name
    if full_name == "google.protobuf.Any":
        return _any(message)
    if full_name in _WELL_KNOWN:
        return _sorted(json_format.MessageToDict(message))
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        out[field.json_name] = _field(field, value)
    return out


def _any(packed: Any) -> dict[str, Any]:
    type_url: str = packed.type_url
    try:
        cls = message_class(type_url.rpartition("/")[2])
    except KeyError:
        return {"@type": type_url, "@unknown": base64.b64encode(packed.value).decode()}
    inner = cls.FromString(packed.value)
    body = to_json(inner)
    return {"@type": type_url, **(body if isinstance(body, dict) else {"value": body})}


def _field(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {str(k): _scalar(value_field, v) for k, v in sorted(value.items())}
    if field.is_repeated:
        return [_scalar(field, v) for v in value]
    return _scalar(field, value)


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return to_json(value)
    if field.enum_type is not None:
        number = int(value)
        enum_value = field.enum_type.values_by_number.get(number)
        return enum_value.name if enum_value is not None else number
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value
