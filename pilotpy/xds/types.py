"""xDS type URLs and their protocol properties."""

from __future__ import annotations

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Make before break: clusters (and their endpoints) exist before listeners and routes use them.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# Wildcard types: a subscription may cover every resource (docs/architecture.md#xds-protocol-rules),
# and a response carries everything a subscription covers. The others are answered per name.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
# The resource name that subscribes to every resource of a wildcard type.
WILDCARD_NAME = "*"

SHORT_NAMES = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds", SECRET: "sds"}
# Type URLs are chosen by clients: every other one shares this name in metrics and logs, so a
# client cannot add label values (or log bytes) by inventing type URLs.
OTHER = "other"


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, OTHER)


def counted(type_url: str) -> str:
    """The key of `type_url` in the server's counters: itself for the types pilotpy serves,
    OTHER for the rest."""
    return type_url if type_url in SHORT_NAMES else OTHER
