"""Sync status: which proxies hold what, as istiod reports it over HTTP and over ADS.

`istio.io/debug/syncz` (istiod's pilot/pkg/xds/statusgen.go) is answered on any ADS stream
with one `envoy.service.status.v3.ClientConfig` per connected proxy and a
`control_plane.identifier` naming the instance; `istioctl proxy-status --xds-address` reads
exactly this. `/debug/syncz` serves the same facts as istiod's SyncStatus JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.status.v3 import csds_pb2
from google.protobuf import any_pb2, struct_pb2, timestamp_pb2

from pilotpy.xds import types
from pilotpy.xds.resources import ResourceSet, Snapshot
from pilotpy.xds.status import StreamStatus, TypeStatus

DEBUG_PREFIX = "istio.io/debug/"
SYNCZ = DEBUG_PREFIX + "syncz"
CONFIG_DUMP = DEBUG_PREFIX + "config_dump"
# Node types that only ever ask for debug types (istioctl may also connect as a sidecar
# with the `event` generator; any stream whose first request is a debug type is one too).
DEBUG_NODE_TYPE = "debug"

# SyncStatus JSON field prefixes per type (istiod's debug.go).
_SYNC_FIELDS = {types.CLUSTER: "cluster", types.LISTENER: "listener", types.ROUTE: "route",
                types.ENDPOINT: "endpoint"}


def is_debug_type(type_url: str) -> bool:
    return type_url.startswith(DEBUG_PREFIX)


def control_plane_identifier(instance_id: str, version: str) -> str:
    """istiod's IstioControlPlaneInstance JSON: Component, ID (the pod name), Info."""
    return json.dumps({"Component": "istiod", "ID": instance_id,
                       "Info": {"version": version, "revision": "", "golang_version": "",
                                "status": "Clean", "tag": version}},
                      separators=(",", ":"))


def config_status(status: TypeStatus) -> int:
    if status.last_error:
        return csds_pb2.ERROR  # type: ignore[no-any-return]
    if not status.sent_nonce:
        return csds_pb2.NOT_SENT  # type: ignore[no-any-return]
    if status.acked_nonce == status.sent_nonce:
        return csds_pb2.SYNCED  # type: ignore[no-any-return]
    return csds_pb2.STALE  # type: ignore[no-any-return]


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def client_config(status: StreamStatus) -> csds_pb2.ClientConfig:
    metadata = struct_pb2.Struct()
    for key, value in (("CLUSTER_ID", status.node.cluster_id),
                       ("NAMESPACE", status.node.namespace),
                       ("ISTIO_VERSION", status.node.istio_version)):
        if value:
            metadata[key] = value
    config = csds_pb2.ClientConfig(node=base_pb2.Node(id=status.node_id, metadata=metadata))
    for type_url in sorted(status.types):
        type_status = status.types[type_url]
        generic = config.generic_xds_configs.add(
            type_url=type_url, config_status=config_status(type_status),
            version_info=type_status.acked_version or type_status.sent_version)
        if type_status.sent_at:
            generic.last_updated.CopyFrom(_timestamp(type_status.sent_at))
        if type_status.last_error:
            generic.error_state.CopyFrom(config_dump_shared_pb2.UpdateFailureState(
                last_update_attempt=_timestamp(type_status.sent_at),
                details=type_status.last_error))
    return config


def syncz_response(statuses: Iterable[StreamStatus], identifier: str, version: str,
                   nonce: str) -> bytes:
    response = discovery_pb2.DiscoveryResponse(
        version_info=version, type_url=SYNCZ, nonce=nonce,
        control_plane=base_pb2.ControlPlane(identifier=identifier))
    for status in sorted(statuses, key=lambda s: s.node_id):
        packed = any_pb2.Any()
        packed.Pack(client_config(status), deterministic=True)
        response.resources.append(packed)
    return response.SerializeToString(deterministic=True)  # type: ignore[no-any-return]


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def sync_status(status: StreamStatus) -> dict[str, Any]:
    """One entry of /debug/syncz (istiod's SyncStatus)."""
    out: dict[str, Any] = {"cluster_id": status.node.cluster_id, "proxy": status.node_id,
                           "proxy_type": status.node.type,
                           "istio_version": status.node.istio_version}
    resources: dict[str, Any] = {}
    for type_url, type_status in sorted(status.types.items()):
        prefix = _SYNC_FIELDS.get(type_url)
        if prefix is not None:
            out[f"{prefix}_sent"] = type_status.sent_nonce
            out[f"{prefix}_acked"] = type_status.acked_nonce
        entry = {"sent": type_status.sent_nonce, "acked": type_status.acked_nonce,
                 "sentTime": rfc3339(type_status.sent_at) if type_status.sent_at else "",
                 "lastError": type_status.last_error}
        resources[type_url] = {k: v for k, v in entry.items() if v}
    out["resources"] = resources
    return {k: v for k, v in out.items() if v != ""}


def _packed(resources: ResourceSet) -> list[Any]:
    """The resources of a set as Any messages (each is stored as a DiscoveryResponse entry)."""
    response = discovery_pb2.DiscoveryResponse.FromString(
        b"".join(r.sotw_entry for r in resources.every()))
    return list(response.resources)


def config_dump(snapshot: Snapshot) -> config_dump_pb2.ConfigDump:
    """What Envoy's /config_dump would show once the proxy holds `snapshot`."""
    version = snapshot.version
    clusters = config_dump_shared_pb2.ClustersConfigDump(version_info=version)
    for packed in _packed(snapshot.get(types.CLUSTER)):
        clusters.dynamic_active_clusters.add(version_info=version).cluster.CopyFrom(packed)
    listeners = config_dump_shared_pb2.ListenersConfigDump(version_info=version)
    listener_set = snapshot.get(types.LISTENER)
    for packed, resource in zip(_packed(listener_set), listener_set.every(), strict=True):
        name = resource.name
        dynamic = listeners.dynamic_listeners.add(name=name)
        dynamic.active_state.version_info = version
        dynamic.active_state.listener.CopyFrom(packed)
    routes = config_dump_shared_pb2.RoutesConfigDump()
    for packed in _packed(snapshot.get(types.ROUTE)):
        routes.dynamic_route_configs.add(version_info=version).route_config.CopyFrom(packed)
    endpoints = config_dump_shared_pb2.EndpointsConfigDump()
    for packed in _packed(snapshot.get(types.ENDPOINT)):
        endpoints.dynamic_endpoint_configs.add(version_info=version).endpoint_config.CopyFrom(
            packed)
    dump = config_dump_pb2.ConfigDump()
    for section in (clusters, listeners, routes, endpoints):
        dump.configs.add().Pack(section, deterministic=True)
    return dump


def matches_proxy(node_id: str, proxy_id: str) -> bool:
    """istiod accepts the full node id or `<pod>.<namespace>` (its third part)."""
    parts = node_id.split("~")
    return proxy_id in (node_id, parts[2] if len(parts) > 2 else None)


def config_dump_response(snapshot: Snapshot, nonce: str) -> bytes:
    """istio.io/debug/config_dump: the dump's sections as the response's resources."""
    response = discovery_pb2.DiscoveryResponse(type_url=CONFIG_DUMP, nonce=nonce,
                                               version_info=snapshot.version)
    response.resources.extend(config_dump(snapshot).configs)
    return response.SerializeToString(deterministic=True)  # type: ignore[no-any-return]


def empty_response(type_url: str, nonce: str) -> bytes:
    return discovery_pb2.DiscoveryResponse(  # type: ignore[no-any-return]
        type_url=type_url, nonce=nonce).SerializeToString(deterministic=True)
