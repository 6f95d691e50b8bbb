"""What the control plane knows about each stream: nonces sent and acknowledged, rejections.
Read by metrics and debug endpoints; written only by the stream's own task."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pilotpy.runtime.logtext import clip
from pilotpy.runtime.metrics import Histogram
from pilotpy.xds import types

log = logging.getLogger("pilotpy.xds")

# istiod's buckets (pilot/pkg/xds/monitoring.go).
PUSH_TIME_BUCKETS = (.01, .1, .5, 1, 3, 5, 10, 20, 30)
CONVERGENCE_BUCKETS = (.1, .5, 1, 3, 5, 10, 20, 30)
CONFIG_SIZE_BUCKETS = (1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000)
# A NACK's message as /debug/syncz and istioctl show it: Envoy's are a few lines at most.
STATUS_MESSAGE_CHARS = 4096
NONCE_CHARS = 64


@dataclass(slots=True)
class TypeStatus:
    sent_nonce: str = ""
    sent_version: str = ""
    sent_at: float = 0.0
    acked_nonce: str = ""
    acked_version: str = ""
    last_error: str = ""
    rejected_nonce: str = ""
    nacks: int = 0


@dataclass
class XdsStats:
    """Counters for the whole server (istiod's pilot_xds_* metrics read these)."""

    pushes: Counter[str] = field(default_factory=Counter)  # responses sent, by type
    rejects: Counter[str] = field(default_factory=Counter)  # NACKs, by type
    expired_nonces: Counter[str] = field(default_factory=Counter)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    push_time: Histogram = field(default_factory=lambda: Histogram(
        "pilot_xds_push_time", "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
        PUSH_TIME_BUCKETS, ("type",)))
    convergence: Histogram = field(default_factory=lambda: Histogram(
        "pilot_proxy_convergence_time",
        "Delay in seconds between config change and a proxy receiving all required "
        "configuration.", CONVERGENCE_BUCKETS))
    config_size: Histogram = field(default_factory=lambda: Histogram(
        "pilot_xds_config_size_bytes", "Distribution of configuration sizes pushed to clients",
        CONFIG_SIZE_BUCKETS, ("type",)))

    def sent(self, type_url: str, size: int) -> None:
        """One response written (either protocol)."""
        key = types.counted(type_url)
        self.pushes[key] += 1
        self.bytes_sent[key] += size
        self.config_size.observe(size, type=types.short_name(type_url))


_stream_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What debug status reports about a proxy, read from its node (id and metadata)."""

    type: str = ""  # sidecar, router, debug, ...
    cluster_id: str = ""
    namespace: str = ""
    istio_version: str = ""


@dataclass(eq=False)
class StreamStatus:
    node_id: str
    protocol: str  # "sotw" or "delta"
    node: NodeInfo = field(default_factory=NodeInfo)
    stream_id: int = field(default_factory=lambda: next(_stream_ids))
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeStatus] = field(default_factory=dict)
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def log_fields(self, **more: Any) -> dict[str, Any]:
        """Structured fields for log records about this stream (`--log-format json`)."""
        return {"fields": {"proxy": self.node_id, "proxy_type": self.node.type,
                           "stream": self.stream_id, "protocol": self.protocol, **more}}

    def of(self, type_url: str) -> TypeStatus:
        found = self.types.get(type_url)
        if found is None:
            found = self.types[type_url] = TypeStatus()
        return found

    def next_nonce(self) -> str:
        return str(next(self._nonces))

    def sent(self, type_url: str, nonce: str, version: str) -> None:
        status = self.of(type_url)
        status.sent_nonce, status.sent_version, status.sent_at = nonce, version, time.time()

    def acked(self, type_url: str, nonce: str, version: str) -> None:
        status = self.of(type_url)
        status.acked_nonce, status.acked_version, status.last_error = nonce, version, ""

    def rejected(self, type_url: str, nonce: str, message: str) -> None:
        status = self.of(type_url)
        status.rejected_nonce, status.last_error = nonce, message
        status.nacks += 1


def record_nack(status: StreamStatus, stats: XdsStats, request: Any) -> None:
    """A request with error_detail (either protocol): recorded for metrics, logs and debug
    status. It is never answered: Envoy keeps its previous config. The message is the
    client's: it is kept and logged bounded."""
    type_url = request.type_url
    nonce = clip(request.response_nonce, NONCE_CHARS)
    status.rejected(type_url, nonce, clip(request.error_detail.message, STATUS_MESSAGE_CHARS))
    stats.rejects[types.counted(type_url)] += 1
    log.info("NACK %s %s nonce=%s: %s", status.node_id, types.short_name(type_url), nonce,
             clip(request.error_detail.message), extra=status.log_fields(
                 type=types.short_name(type_url), nonce=nonce))
