"""`serve` flags: istiod's ports by default, durations as operators write them."""

from __future__ import annotations

import argparse

import pytest

from pilotpy.cli.main import build_parser, duration_seconds


def test_serve_defaults_are_istiods_ports() -> None:
    args = build_parser().parse_args(["serve", "--config", "examples"])
    assert (args.grpc_addr, args.grpc_tls_addr, args.http_addr, args.monitoring_addr) == (
        ":15010", ":15012", ":8080", ":15014")
    assert args.max_connection_age == 30 * 60


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800),
                                                ("1h", 3600), ("0", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration_seconds(text)
