"""Limits istiod puts on listeners and filter chains against slow or flooding clients."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2

from pilotpy.translate import pb

# MAX_CONNECTIONS_PER_SOCKET_EVENT_LOOP: accept one connection per socket event, so a burst
# on one listener cannot starve the others; only listeners that bind a port accept at all.
MAX_CONNECTIONS_PER_SOCKET_EVENT = 1
# PILOT_GATEWAY_TRANSPORT_SOCKET_CONNECT_TIMEOUT: slow TLS handshakes are cut after this.
TRANSPORT_SOCKET_CONNECT_TIMEOUT = 15


def limit_accepts(listener: listener_pb2.Listener) -> None:
    """For a listener that binds its port (gateways, virtualOutbound, virtualInbound)."""
    listener.max_connections_to_accept_per_socket_event.value = MAX_CONNECTIONS_PER_SOCKET_EVENT


def limit_handshake(chain: lc.FilterChain) -> None:
    chain.transport_socket_connect_timeout.CopyFrom(pb.seconds(TRANSPORT_SOCKET_CONNECT_TIMEOUT))
