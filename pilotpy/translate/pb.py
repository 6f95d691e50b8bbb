"""Small constructors for protobuf well-known types, so builders read like the config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from pilotpy.wire.protowire import field_bytes, field_head

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
# A large message can be written as bytes from parts serialized once and shared (the same
# routes in many virtual hosts), instead of copying submessages into it and serializing the
# copies (pilotpy/wire/protowire.py has the rule this relies on).


class Serialized(NamedTuple):
    """A resource written as bytes, byte-identical to SerializeToString(deterministic=True)
    of its message once its parts are joined. The parts are kept apart: the large ones are
    shared (a VirtualService's routes in every class's route configuration) and a joined
    copy would hold them twice."""

    name: str
    parts: tuple[bytes, ...]

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def serialized(name: str, data: bytes) -> Serialized:
    return Serialized(name, (data,))


# One element of a message field, as the parent's serialization writes it.
entry = field_bytes


def entry_parts(number: int, head: bytes, shared: Sequence[bytes]) -> list[bytes]:
    """One element of a message field whose payload is `head` then the `shared` parts, which
    are not copied (empty ones are left out: fewer parts to join into a response)."""
    length = len(head) + sum(len(p) for p in shared)
    return [field_head(number, length) + head, *(p for p in shared if p)]
