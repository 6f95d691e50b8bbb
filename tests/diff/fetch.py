"""What a control plane sends one proxy: a SotW ADS stream as Envoy runs it (CDS, then EDS for
the EDS clusters, LDS, then RDS for the route names its connection managers use), every
response ACKed, the resources returned as JSON trees by type and name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotpy.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.diff.tojson import to_json
from tests.xds_client import SotwClient

_HCM = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
RESPONSE_TIMEOUT = 10.0

Resources = dict[str, dict[str, Any]]
"""type URL -> resource name -> JSON tree."""


@dataclass(frozen=True)
class Identity:
    """A proxy as pilot-agent presents it: node id, node cluster, metadata."""

    node_id: str
    metadata: Mapping[str, Any]
    cluster: str = ""


def eds_names(clusters: list[cluster_pb2.Cluster]) -> list[str]:
    return sorted({c.eds_cluster_config.service_name or c.name for c in clusters
                   if c.WhichOneof("cluster_discovery_type") == "type" and c.type == c.EDS})


def route_names(listeners: list[listener_pb2.Listener]) -> list[str]:
    names: set[str] = set()
    for listener in listeners:
        chains = [*listener.filter_chains]
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            for f in chain.filters:
                if f.typed_config.type_url != _HCM:
                    continue
                hcm = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                if hcm.HasField("rds"):
                    names.add(hcm.rds.route_config_name)
    return sorted(names)


async def _exchange(client: SotwClient, type_url: str, names: list[str]) -> list[Any]:
    """Request `names` of `type_url`, wait for its response (skipping pushes of other types
    that may arrive meanwhile), ACK it; the unpacked resources."""
    await client.request(type_url, names)
    while True:
        response = await client.recv(RESPONSE_TIMEOUT)
        await client.ack(response)
        if response.type_url == type_url:
            return client.resources(response)


async def fetch(target: str, identity: Identity) -> Resources:
    async with SotwClient(target, identity.node_id, metadata=identity.metadata,
                          cluster=identity.cluster) as client:
        clusters = await _exchange(client, CLUSTER, [])
        endpoints = await _exchange(client, ENDPOINT, eds_names(clusters)) if clusters else []
        listeners = await _exchange(client, LISTENER, [])
        names = route_names(listeners)
        routes = await _exchange(client, ROUTE, names) if names else []
    out: Resources = {}
    for type_url, resources in ((CLUSTER, clusters), (ENDPOINT, endpoints),
                                (LISTENER, listeners), (ROUTE, routes)):
        out[type_url] = {_name(r): to_json(r) for r in resources}
    return out


def _name(resource: Any) -> str:
    return str(getattr(resource, "cluster_name", "") or resource.name)
