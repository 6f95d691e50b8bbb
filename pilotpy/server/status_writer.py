"""Istio's own status on the objects in the cluster, as istiod writes it with
PILOT_ENABLE_STATUS: `status.observedGeneration` and a `Reconciled` condition ("True" once
every proxy the object's latest change affects has acknowledged it, with the message
`<acked>/<affected> proxies up to date.`), so `kubectl get vs -o yaml` shows propagation.

Only the leader writes: the control plane runs `run` behind the `istio-status-leader` Lease
election (as istiod), and cancels it when leadership is lost. Writes are rate-limited
(istiod's PILOT_STATUS_QPS and PILOT_STATUS_BURST) and made only when the condition or
generation would change: a change that finished propagating is not rewritten when proxies
come and go. Each write reads the object, keeps the status
fields and conditions others wrote, and replaces it through the `/status` subresource with
the resourceVersion read, so a concurrent edit makes it retry on the next round.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pilotpy.discovery import Discovery
from pilotpy.model.kinds import Kind
from pilotpy.model.meta import Key
from pilotpy.server.propagation import Propagation, ProxyState, ProxyStatus

log = logging.getLogger("pilotpy.status")
RECONCILED = "Reconciled"
# The kinds whose status istiod writes (Istio's networking CRDs pilotpy serves).
WRITTEN_KINDS = frozenset({Kind.GATEWAY, Kind.VIRTUAL_SERVICE, Kind.DESTINATION_RULE,
                           Kind.SERVICE_ENTRY, Kind.SIDECAR})
# istiod's PILOT_STATUS_UPDATE_INTERVAL, PILOT_STATUS_QPS, PILOT_STATUS_BURST.
UPDATE_INTERVAL = 0.5
STATUS_QPS = 100.0
STATUS_BURST = 500


class StatusApi(Protocol):
    """The two Kubernetes API calls the writer makes (pilotpy/sources/kube/api.py)."""

    async def get(self, path: str, params: Any = ..., timeout: float = ...) -> Any: ...
    async def send(self, method: str, path: str, body: Any, content_type: str = ...,
                   timeout: float = ...) -> Any: ...


@dataclass
class TokenBucket:
    """At most `rate` writes a second on average, `burst` at once. Pure: callers pass the
    time."""

    rate: float
    burst: int
    # Tokens left; negative while writers wait their turn. None: full, never used.
    tokens: float | None = None
    updated: float = 0.0

    def take(self, now: float) -> float:
        """Take a token; returns how long to wait first (0 when one is available)."""
        if self.tokens is None:
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def _rfc3339(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_condition(proxies: Sequence[ProxyStatus]) -> tuple[str, str]:
    """The Reconciled condition's status and message for the object's latest change, from
    where its affected proxies stand."""
    acked = sum(1 for p in proxies if p.state is ProxyState.ACKED)
    return ("True" if acked == len(proxies) else "False",
            f"{acked}/{len(proxies)} proxies up to date.")


def updated_status(current: dict[str, Any] | None, generation: int, state: str,
                   message: str, now: float) -> dict[str, Any]:
    """The object's status with our Reconciled condition and observedGeneration; other
    fields and conditions kept, the transition time kept while the state is unchanged."""
    out = dict(current or {})
    conditions = [dict(c) for c in out.get("conditions") or [] if isinstance(c, dict)]
    previous = next((c for c in conditions if c.get("type") == RECONCILED), None)
    stamp = _rfc3339(now)
    condition = {"type": RECONCILED, "status": state, "message": message,
                 "lastProbeTime": stamp, "observedGeneration": generation,
                 "lastTransitionTime": (previous.get("lastTransitionTime", stamp)
                                        if previous and previous.get("status") == state
                                        else stamp)}
    out["conditions"] = [condition if c is previous else c for c in conditions] + (
        [] if previous is not None else [condition])
    out["observedGeneration"] = generation
    return out


def _already(current: dict[str, Any] | None, generation: int, state: str, message: str
             ) -> bool:
    current = current or {}
    found = next((c for c in current.get("conditions") or []
                  if isinstance(c, dict) and c.get("type") == RECONCILED), None)
    return (current.get("observedGeneration") == generation and found is not None
            and found.get("status") == state and found.get("message") == message)


class StatusWriter:
    def __init__(self, api: StatusApi, propagation: Propagation, discovery: Discovery,
                 object_path: Callable[[Key], str | None], *,
                 interval: float = UPDATE_INTERVAL, qps: float = STATUS_QPS,
                 burst: int = STATUS_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`object_path`: the API path of an object as served (None: the cluster does not
        serve its kind)."""
        self._api = api
        self._propagation = propagation
        self._discovery = discovery
        self._object_path = object_path
        self._interval = interval
        self._bucket = TokenBucket(qps, burst)
        self._clock = clock
        # key -> (generation, state, message) last written or found written.
        self._written: dict[Key, tuple[int, str, str]] = {}
        self.writes = 0  # successful status updates, for tests and logs

    async def run(self) -> None:
        """Write status until cancelled (what the leader runs). Each term starts from what
        the objects hold: another leader may have written meanwhile."""
        log.info("writing Reconciled status to Istio objects")
        self._written.clear()
        while True:
            try:
                await self.write_once()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the next round retries; serving is unaffected
                log.warning("writing status failed: %s", err)
            await asyncio.sleep(self._interval)

    async def write_once(self) -> int:
        """One round over the objects whose status may be stale; returns the writes made."""
        push = self._discovery.push
        if push is None:
            return 0
        written = 0
        for key, change in sorted(self._discovery.object_changes.items(),
                                  key=lambda item: item[1].version):
            if key.kind not in WRITTEN_KINDS or change.deleted:
                continue
            last = self._written.get(key)
            if last is not None and last[0] == change.generation and last[1] == "True":
                continue  # done for this generation; proxy churn does not rewrite it
            state, message = desired_condition(self._propagation.proxies(key, change))
            wanted = (change.generation, state, message)
            if last == wanted:
                continue
            if await self._write(key, wanted):
                written += 1
        for key in [k for k in self._written if k not in self._discovery.object_changes]:
            del self._written[key]
        return written

    async def _write(self, key: Key, wanted: tuple[int, str, str]) -> bool:
        path = self._object_path(key)
        if path is None:
            return False
        delay = self._bucket.take(self._clock())
        if delay:
            await asyncio.sleep(delay)
        generation, state, message = wanted
        try:
            current = await self._api.get(path, timeout=10.0)
        except Exception as err:
            if getattr(err, "code", 0) == 404:
                self._written[key] = wanted  # not an API object (a file's): nothing to write
                return False
            raise
        if int((current.get("metadata") or {}).get("generation") or 0) != generation:
            return False  # pilotpy has not taken the newest generation yet; next round
        if _already(current.get("status"), generation, state, message):
            self._written[key] = wanted
            return False
        body = dict(current)
        body["status"] = updated_status(current.get("status"), generation, state, message,
                                        time.time())
        try:
            await self._api.send("PUT", f"{path}/status", body, timeout=10.0)
        except Exception as err:
            if getattr(err, "code", 0) in (404, 409):
                return False  # deleted or edited meanwhile: the next round sees it
            raise
        self._written[key] = wanted
        self.writes += 1
        log.debug("status of %s: %s %s (generation %d)", key, state, message, generation)
        return True
