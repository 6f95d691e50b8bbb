"""What one ADS client may ask of the server, and the error that ends a stream which asks for
more (docs/operations.md#limits).

Every bound here protects the other clients: a request the server cannot hold is refused
with a status naming the limit, never queued, logged in full or turned into a metric label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads the defaults here; grpc is imported when a stream runs
    import grpc

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StreamLimits:
    # gRPC refuses larger messages with RESOURCE_EXHAUSTED before they are read (istiod's
    # ISTIO_GPRC_MAXRECVMSGSIZE is 4 MiB too).
    max_request_bytes: int = 4 * MiB
    # Requests read but not yet handled: Envoy has at most a few in flight per type, so a
    # client beyond these is not waiting for answers but flooding.
    max_queued_requests: int = 16
    max_queued_bytes: int = 8 * MiB
    # Istio's node ids are `type~ip~<pod>.<ns>~<ns>.svc.<domain>`: well under 1 KiB.
    max_node_id_bytes: int = 1024
    # Resource names in one request, and in one Delta subscription (which accumulates).
    max_resource_names: int = 100_000
    # Distinct type URLs one stream may ask for (Envoy uses about ten), and their length.
    max_type_urls: int = 32
    max_type_url_bytes: int = 256
    # Subscribed names that match no resource, across every stream of the server: memory a
    # client chose (a proxy names what CDS and LDS gave it; a few linger after a removal).
    max_unknown_names: int = 50_000


class StreamError(Exception):
    """A request the stream cannot serve: the stream ends with `code` and this message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def too_many_names(count: int, limits: StreamLimits, what: str) -> StreamError:
    import grpc

    return StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                       f"{what}: {count} resource names, at most {limits.max_resource_names} "
                       "are served per request and per subscription")
