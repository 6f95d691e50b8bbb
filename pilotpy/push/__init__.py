"""The push context: an immutable snapshot of all inputs for one version, with indexes."""

from pilotpy.push.context import (
    ENDPOINT_KINDS,
    ROUTING_KINDS,
    Objects,
    PushContext,
    PushScope,
    build_push_context,
)
from pilotpy.push.endpoints import Endpoint
from pilotpy.push.services import Port, Resolution, Service

__all__ = [
    "ENDPOINT_KINDS",
    "Endpoint",
    "Objects",
    "Port",
    "PushContext",
    "PushScope",
    "ROUTING_KINDS",
    "Resolution",
    "Service",
    "build_push_context",
]
