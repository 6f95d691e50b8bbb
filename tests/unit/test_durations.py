"""Durations as users write them: Go style (`1m30s`, `100ms`) and protobuf JSON (`0.5s`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotpy.model import InvalidObject, parse_object
from pilotpy.model.fields import parse_duration_ns
from pilotpy.model.virtualservice import VirtualService

MS = 1_000_000
SECOND = 1_000_000_000


@pytest.mark.parametrize(("text", "expected"), [
    ("10s", 10 * SECOND),
    ("0.5s", SECOND // 2),
    (".5s", SECOND // 2),
    ("1.5s", 3 * SECOND // 2),
    ("1m30s", 90 * SECOND),
    ("100ms", 100 * MS),
    ("3m", 180 * SECOND),
    ("24h", 24 * 3600 * SECOND),
    ("1h2m3s4ms", (3723 * SECOND) + 4 * MS),
    ("250us", 250_000),
    ("250µs", 250_000),
    ("7ns", 7),
    ("0s", 0),
    (" 2s ", 2 * SECOND),
])
def test_valid_durations(text: str, expected: int) -> None:
    assert parse_duration_ns(text) == expected


@pytest.mark.parametrize("text", ["", "10", "s", "soon", "10 s", "1.2.3s", "-1s", "10sec",
                                  "1d", "s10", "10s5", "1m 30s", "1e3s", "++1s"])
def test_invalid_durations(text: str) -> None:
    assert parse_duration_ns(text) is None


@given(st.integers(0, 100), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_go_style_durations_round_trip(hours: int, minutes: int, seconds: int,
                                       millis: int) -> None:
    text = f"{hours}h{minutes}m{seconds}s{millis}ms"
    expected = ((hours * 60 + minutes) * 60 + seconds) * SECOND + millis * MS
    assert parse_duration_ns(text) == expected


@given(st.integers(0, 10**6), st.integers(0, 999_999_999))
def test_protobuf_json_seconds_with_nanos_round_trip(seconds: int, nanos: int) -> None:
    assert parse_duration_ns(f"{seconds}.{nanos:09d}s") == seconds * SECOND + nanos


@given(st.integers(0, 2**52))
def test_whole_units_are_exact(value: int) -> None:
    assert parse_duration_ns(f"{value}ns") == value
    assert parse_duration_ns(f"{value // SECOND}s") == (value // SECOND) * SECOND


def _timeout(text: object) -> VirtualService:
    obj = parse_object({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r"},
        "spec": {"hosts": ["r"], "http": [{"timeout": text,
                                           "route": [{"destination": {"host": "r"}}]}]}}).obj
    assert isinstance(obj, VirtualService)
    return obj


def test_duration_fields_hold_nanoseconds() -> None:
    assert _timeout("1m30s").http[0].timeout_ns == 90 * SECOND


@pytest.mark.parametrize("text", ["soon", "10", 10, "1d"])
def test_bad_duration_fields_are_errors_with_their_path(text: object) -> None:
    with pytest.raises(InvalidObject) as info:
        _timeout(text)
    assert [i.path for i in info.value.issues] == ["spec.http[0].timeout"]
