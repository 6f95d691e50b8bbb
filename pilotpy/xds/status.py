"""What the control plane knows about each stream: nonces sent and acknowledged, rejections.
Read by metrics and debug endpoints; written only by the stream's own task."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pilotpy.xds import types

log = logging.getLogger("pilotpy.xds")


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


_stream_ids = itertools.count(1)


@dataclass(eq=False)
class StreamStatus:
    node_id: str
    protocol: str  # "sotw" or "delta"
    stream_id: int = field(default_factory=lambda: next(_stream_ids))
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeStatus] = field(default_factory=dict)
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

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
    status. It is never answered: Envoy keeps its previous config."""
    type_url, nonce = request.type_url, request.response_nonce
    message = request.error_detail.message
    status.rejected(type_url, nonce, message)
    stats.rejects[type_url] += 1
    log.info("NACK %s %s nonce=%s: %s", status.node_id, types.short_name(type_url), nonce, message)
