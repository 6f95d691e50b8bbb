"""Small constructors for protobuf well-known types, so builders read like the config."""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

NANOS_PER_SECOND = 1_000_000_000
UINT32_MAX = 4_294_967_295


def duration(nanoseconds: int) -> duration_pb2.Duration:
    seconds, nanos = divmod(nanoseconds, NANOS_PER_SECOND)
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


def typed(message: Message) -> any_pb2.Any:
    """Pack into Any deterministically: upb writes map entries in insertion order otherwise."""
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def uint32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def boolean(value: bool) -> wrappers_pb2.BoolValue:
    return wrappers_pb2.BoolValue(value=value)



# -- pre-serialized entries ------------------------------------------------------------------
# A message's serialization is its fields' encodings one after the other, in field-number
# order; a repeated message field is one length-delimited entry per element. So a large
# message can be written as bytes from parts serialized once and shared (the same routes in
# many virtual hosts), instead of copying submessages into it and serializing the copies.

_LENGTH_DELIMITED = 2


class Serialized(NamedTuple):
    """A resource written as bytes, byte-identical to SerializeToString(deterministic=True)
    of its message."""

    name: str
    data: bytes


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]  # tags and short lengths: most varints


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def entry(field_number: int, serialized: bytes) -> bytes:
    """One element of message field `field_number`, as the parent's serialization writes it:
    tag, length, then the element's own serialized bytes."""
    return _varint((field_number << 3) | _LENGTH_DELIMITED) + _varint(len(serialized)) + serialized
