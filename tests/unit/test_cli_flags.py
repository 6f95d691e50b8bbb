"""`serve` flags: istiod's ports by default, durations as operators write them."""

from __future__ import annotations

import argparse

import pytest

from pilotpy.cli.main import build_parser, cmd_serve, duration_seconds, size_bytes
from pilotpy.server import controlplane
from pilotpy.server.settings import HttpLimits, Settings
from pilotpy.sources.file_limits import FileLimits


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


@pytest.mark.parametrize(("text", "size"), [("1048576", 1048576), ("512Ki", 512 * 1024),
                                            ("64Mi", 64 << 20), ("1Gi", 1 << 30),
                                            ("4MiB", 4 << 20)])
def test_sizes(text: str, size: int) -> None:
    assert size_bytes(text) == size


@pytest.mark.parametrize("text", ["big", "-1", "10MB", "1.5Mi", "Mi"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        size_bytes(text)


def test_limit_flags_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/operations.md#limits: every limit with a flag, as `serve` builds its settings."""
    seen: list[Settings] = []

    class Stop(Exception):
        pass

    def captured(settings: Settings) -> None:
        seen.append(settings)
        raise Stop

    monkeypatch.setattr(controlplane, "ControlPlane", captured)
    args = build_parser().parse_args([
        "serve", "--config", "examples", "--max-config-file-size", "1Mi",
        "--max-objects-per-file", "10", "--max-request-size", "2Mi",
        "--max-resource-names", "500", "--max-unknown-names", "900",
        "--response-cache-size", "16Mi",
        "--max-proxy-classes", "7", "--http-max-connections", "9",
        "--http-header-timeout", "3s"])
    with pytest.raises(Stop):
        cmd_serve(args)
    (settings,) = seen
    assert settings.file_limits == FileLimits(1 << 20, 10)
    limits = settings.stream_limits
    assert (limits.max_request_bytes, limits.max_resource_names, limits.max_unknown_names) == (
        2 << 20, 500, 900)
    assert settings.response_cache_bytes == 16 << 20
    assert settings.max_proxy_classes == 7
    assert settings.http_limits == HttpLimits(9, 3.0)
