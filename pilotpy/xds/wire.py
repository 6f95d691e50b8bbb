"""Protobuf wire encoding for responses assembled from cached bytes.

Every resource is serialized once per version; a response is the concatenation of those bytes
plus a few small fields. Concatenated protobuf fields parse exactly like a message serialized
in one go, so the per-stream cost of a push is a join, not a serialization.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from google.protobuf import any_pb2

from pilotpy.wire.protowire import field_bytes

# DiscoveryResponse
RESPONSE_VERSION_INFO = 1
RESPONSE_RESOURCES = 2
RESPONSE_TYPE_URL = 4
RESPONSE_NONCE = 5
# DeltaDiscoveryResponse
DELTA_SYSTEM_VERSION_INFO = 1
DELTA_RESOURCES = 2
DELTA_TYPE_URL = 4
DELTA_NONCE = 5
DELTA_REMOVED_RESOURCES = 6
# envoy.service.discovery.v3.Resource
RESOURCE_VERSION = 1
RESOURCE_RESOURCE = 2
RESOURCE_NAME = 3
# google.protobuf.Any
ANY_TYPE_URL = 1
ANY_VALUE = 2


def field_str(number: int, value: str) -> bytes:
    return field_bytes(number, value.encode()) if value else b""


def any_bytes(type_url: str, value: bytes) -> bytes:
    """A serialized google.protobuf.Any, as `Any.Pack(m, deterministic=True)` writes it."""
    return any_pb2.Any(type_url=type_url, value=value).SerializeToString()


def content_version(value: bytes) -> str:
    """A resource version from its deterministic bytes: stable across restarts, so Delta
    `initial_resource_versions` from a reconnecting Envoy can be trusted."""
    return hashlib.blake2b(value, digest_size=8).hexdigest()


def content_version_of_parts(parts: Iterable[bytes]) -> str:
    """content_version of the parts joined, without joining them."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def varint_prefix(entry: bytes) -> bytes:
    """The tag and length in front of a length-delimited field's payload."""
    position = 1  # tags of fields 1..15 are one byte
    while entry[position] & 0x80:
        position += 1
    return entry[:position + 1]
