"""What config sources report about themselves: synced (the initial list is in the store) and
connected (the API answers). Sources may import this module: it depends on nothing downstream
of the store, only on the metric primitives.

- `set_synced(name, False)` before the control plane starts, `True` once the initial list is
  in the store: /ready answers 503 and ADS streams wait until every source registered here has
  synced (istiod waits for its informers the same way).
- `set_connected(name, False)` while the source has lost its API:
  `pilotpy_source_connected{source}` is 0; the last good config keeps being served.
- `set_healthy(name, False)` while the source cannot deliver changes at all (its task failed
  and is waiting to restart): `pilotpy_source_healthy{source}` is 0 and /ready says 503,
  since the config served is stale for as long as that lasts.
"""

from __future__ import annotations

import asyncio

from pilotpy.runtime.metrics import Registry


class SourceStatus:
    def __init__(self, registry: Registry) -> None:
        self.synced_gauge = registry.gauge(
            "pilotpy_source_synced", "1 once a config source has completed its initial sync.",
            ("source",))
        self.connected_gauge = registry.gauge(
            "pilotpy_source_connected",
            "0 while a config source has lost its API (the last good config is served).",
            ("source",))
        self.healthy_gauge = registry.gauge(
            "pilotpy_source_healthy",
            "0 while a config source cannot deliver changes (its task failed and restarts "
            "with backoff); the last good config is served meanwhile.", ("source",))
        self._synced: dict[str, bool] = {}
        self._healthy: dict[str, bool] = {}
        self.all_synced = asyncio.Event()
        self.all_synced.set()

    def set_synced(self, source: str, synced: bool) -> None:
        self._synced[source] = synced
        self.synced_gauge.set(1 if synced else 0, source=source)
        if self.unsynced():
            self.all_synced.clear()
        else:
            self.all_synced.set()

    def set_connected(self, source: str, connected: bool) -> None:
        self.connected_gauge.set(1 if connected else 0, source=source)

    def set_healthy(self, source: str, healthy: bool) -> None:
        self._healthy[source] = healthy
        self.healthy_gauge.set(1 if healthy else 0, source=source)

    def unsynced(self) -> list[str]:
        return sorted(name for name, synced in self._synced.items() if not synced)

    def unhealthy(self) -> list[str]:
        return sorted(name for name, healthy in self._healthy.items() if not healthy)
