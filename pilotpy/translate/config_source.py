"""The config source every dynamic resource points at: the ADS stream it came from."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2

from pilotpy.translate import pb


def ads_config_source() -> config_source_pb2.ConfigSource:
    # initial_fetch_timeout 0s: wait for pilotpy instead of activating half-configured.
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        initial_fetch_timeout=pb.seconds(0),
        resource_api_version=config_source_pb2.V3,
    )
