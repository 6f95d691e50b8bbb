"""The bootstrap a proxyless gRPC application reads (`GRPC_XDS_BOOTSTRAP`), as istio-agent
writes it for a pod with `inject.istio.io/templates: grpc-agent`, reduced to plaintext: the
xDS server, the node (Istio's node id and `GENERATOR: grpc`, which selects the gRPC
generator), and the name template xDS-enabled servers ask their inbound listener by
(docs/proxyless-grpc.md). Certificate providers come with the security work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotpy.proxy import GRPC_GENERATOR, node_id_namespace
from pilotpy.translate.grpc.names import INBOUND_LISTENER_PREFIX


def grpc_bootstrap(node_id: str, xds_address: tuple[str, int], *,
                   labels: Mapping[str, str] | None = None, namespace: str = ""
                   ) -> dict[str, Any]:
    parts = node_id.split("~")
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"node id {node_id!r} is not Istio's type~ip~pod.namespace~domain form")
    host, port = xds_address
    metadata: dict[str, Any] = {
        "GENERATOR": GRPC_GENERATOR,
        "NAMESPACE": namespace or node_id_namespace(node_id),
        "INSTANCE_IPS": parts[1],
    }
    if labels:
        metadata["LABELS"] = dict(labels)
    return {
        "xds_servers": [{"server_uri": f"{host}:{port}", "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": {"id": node_id, "metadata": metadata, "locality": {}},
        "server_listener_resource_name_template": INBOUND_LISTENER_PREFIX + "%s",
    }
