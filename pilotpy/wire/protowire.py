"""Protobuf wire encoding of length-delimited fields, shared by translation (large messages
written from parts serialized once) and the xDS layer (responses joined from cached bytes).
It imports nothing from pilotpy, so both layers may use it.

A message's serialization is its fields' encodings one after the other, in field-number
order; a repeated message field is one length-delimited entry per element. Concatenated
fields parse exactly like a message serialized in one go.
"""

from __future__ import annotations

LENGTH_DELIMITED = 2

_SMALL = [bytes((i,)) for i in range(128)]  # tags and short lengths: most varints


def varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    if value < 16384:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_head(number: int, length: int) -> bytes:
    """The tag and length of a length-delimited field whose `length` bytes of payload are
    written after it, apart (shared parts are not copied into one)."""
    return varint((number << 3) | LENGTH_DELIMITED) + varint(length)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, embedded messages, one element of a repeated
    message field): tag, length, then the payload."""
    return varint((number << 3) | LENGTH_DELIMITED) + varint(len(payload)) + payload
