"""A resource kept as the parts it is written from (Resource.of_parts) is the resource
make_resource gives for the joined bytes: the same SotW and Delta entries, version and size."""

from __future__ import annotations

import pytest

from pilotpy.xds import types
from pilotpy.xds.resources import Resource, ResourceSet, make_resource


@pytest.mark.parametrize("parts", [
    (), (b"",), (b"\x0a\x03abc",), (b"\x0a\x03abc", b"", b"\x12" + bytes([100]) + b"x" * 100),
    (b"y" * 200, b"z" * 70000),  # multi-byte lengths
], ids=["none", "empty", "one", "several", "long"])
@pytest.mark.parametrize("type_url", [types.ROUTE, types.CLUSTER])
def test_a_resource_of_parts_is_the_resource_of_the_joined_bytes(
        type_url: str, parts: tuple[bytes, ...]) -> None:
    made = make_resource(type_url, "name", b"".join(parts))
    of_parts = Resource.of_parts(type_url, "name", parts)
    assert of_parts.sotw_entry == made.sotw_entry
    assert of_parts.version == made.version
    assert of_parts.size == made.size == len(made.sotw_entry)
    assert of_parts.delta_entry == made.delta_entry
    assert ResourceSet(type_url, [of_parts]).version == ResourceSet(type_url, [made]).version
