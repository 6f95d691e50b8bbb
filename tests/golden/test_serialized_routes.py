"""Route configurations written as bytes from shared parts (sidecar_routes) are exactly what
protobuf writes for the same message: the goldens check their content, this their bytes."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_pb2

from tests.golden.cases import Case, all_cases, translate_case

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_route_bytes_are_the_deterministic_serialization(case: Case) -> None:
    for route in translate_case(case).generated.serialized_routes:
        message = route_pb2.RouteConfiguration.FromString(route.data)
        assert message.name == route.name
        assert route.data == message.SerializeToString(deterministic=True), route.name


def test_sidecar_cases_have_route_bytes_to_check() -> None:
    sidecars = [c for c in CASES if c.is_sidecar]
    assert sum(1 for c in sidecars if translate_case(c).generated.serialized_routes) >= 4
