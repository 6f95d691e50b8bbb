"""proto3 JSON (lowerCamelCase, like an Envoy config dump) with a stable order.

upb iterates map fields (and so google.protobuf.Struct) in hash order, which changes from one
process to the next. Message fields keep their declaration order; map keys and Struct keys are
sorted, so the same config always prints the same text.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_STRUCT_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value",
                           "google.protobuf.ListValue"})


def message_to_json(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(message)
    return _canonical(message, data)  # type: ignore[no-any-return]


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def _unpacked(any_message: Any) -> Message | None:
    name = any_message.type_url.rpartition("/")[2]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    inner: Message = message_factory.GetMessageClass(descriptor)()
    any_message.Unpack(inner)
    return inner


def _canonical(message: Message, data: Any) -> Any:
    descriptor: Any = message.DESCRIPTOR
    if descriptor.full_name in _STRUCT_TYPES:
        return _sorted_json(data)
    if not isinstance(data, dict):
        return data  # well-known types with a scalar JSON form (Duration, wrappers, ...)
    if descriptor.full_name == "google.protobuf.Any":
        inner = _unpacked(message)
        if inner is None:
            return data
        body = {k: v for k, v in data.items() if k != "@type"}
        return {"@type": data["@type"], **_canonical(inner, body)}
    for field in descriptor.fields:
        key = field.json_name
        if key not in data or field.message_type is None:
            continue
        value = getattr(message, field.name)
        if field.message_type.GetOptions().map_entry:
            data[key] = _canonical_map(field, value, data[key])
        elif field.is_repeated:
            data[key] = [_canonical(m, d) for m, d in zip(value, data[key], strict=True)]
        else:
            data[key] = _canonical(value, data[key])
    return data


def _canonical_map(field: FieldDescriptor, mapping: Any, data: dict[str, Any]) -> dict[str, Any]:
    entry = field.message_type
    assert entry is not None
    value_field = entry.fields_by_name["value"]
    by_json_key = {str(k).lower() if isinstance(k, bool) else str(k): k for k in mapping}
    out = {}
    for key in sorted(data):
        if value_field.message_type is not None:
            out[key] = _canonical(mapping[by_json_key[key]], data[key])
        else:
            out[key] = data[key]
    return out
