"""Names Envoy resources carry, as istiod writes them, except gateway HTTP routes
(docs/architecture.md#deliberate-differences-from-istiod)."""

from __future__ import annotations

BLACKHOLE_CLUSTER = "BlackHoleCluster"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"
DEFAULT_ROUTE_NAME = "default"
VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
PASSTHROUGH_FILTER_CHAIN = "PassthroughFilterChain"
MESH_GATEWAY = "mesh"
# The IPv4 unspecified address: listeners on every address (istiod's "0.0.0.0" wildcard).
ANY_ADDRESS = "0.0.0.0"


def outbound_cluster_name(port: int, subset: str, hostname: str) -> str:
    """`outbound|9080|v1|reviews.default.svc.cluster.local` (istiod's BuildSubsetKey)."""
    return f"outbound|{port}|{subset}|{hostname}"


def parse_outbound_cluster_name(name: str) -> tuple[int, str, str] | None:
    """(port, subset, hostname) of an outbound cluster name, None for other names."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2], parts[3]


def inbound_cluster_name(port: int) -> str:
    """`inbound|8080||`: the workload's target port; subset and host stay empty."""
    return f"inbound|{port}||"


def listener_name(bind: str, port: int) -> str:
    return f"{bind}_{port}"


def gateway_http_route_name(server_port: int, bind: str = "") -> str:
    """`http.80`, named after the Gateway server port, not the listening port as current
    istiod does; `.bind` when bound."""
    return f"http.{server_port}.{bind}" if bind else f"http.{server_port}"


def virtual_host_name(hostname: str, port: int) -> str:
    return f"{hostname}:{port}"


def delimited_stat_prefix(prefix: str) -> str:
    """Istio (1.24+) ends stat prefixes with `;` so tag extraction can find their end."""
    return prefix + ";"


def gateway_https_route_name(server_port: int, port_name: str, gateway_name: str,
                             namespace: str, bind: str = "") -> str:
    """`https.443.https.bookinfo-gateway.default`: one route per terminating HTTPS server,
    named after the Gateway server port (not the listening port), `.bind` when bound."""
    name = f"https.{server_port}.{port_name}.{gateway_name}.{namespace}"
    return f"{name}.{bind}" if bind else name
