"""The injection webhook's caBundle: the API server must trust the certificate :15017
presents, which the mesh CA issued, so the MutatingWebhookConfiguration
`istio-sidecar-injector` gets the mesh root in the `clientConfig.caBundle` of each webhook
named `*sidecar-injector.istio.io`, as istiod's WebhookCertPatcher writes it; a manifest
applied without one (or with another) is corrected, and so is an edit. Only a configuration
labelled with this control plane's revision (`istio.io/rev: default`) is touched.

Only the leader runs it (istiod's patcher runs in every replica; the replicas share one root,
so one writer is enough).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any

from pilotpy.sources.kube.api import KubeApi
from pilotpy.sources.kube.backoff import Backoff
from pilotpy.sources.kube.informer import Informer
from pilotpy.sources.kube.kinds import WatchedKind

log = logging.getLogger("pilotpy.webhookca")
CONFIGURATION = "istio-sidecar-injector"
WEBHOOK_SUFFIX = "sidecar-injector.istio.io"
REVISION_LABEL = "istio.io/rev"
PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
CONFIGURATIONS = WatchedKind("MutatingWebhookConfiguration", "admissionregistration.k8s.io",
                             ("v1",), "mutatingwebhookconfigurations", namespaced=False,
                             field_selector=f"metadata.name={CONFIGURATION}")
MAX_ATTEMPTS = 8


def _code(err: Exception) -> int:
    code = getattr(err, "code", 0)
    return code if isinstance(code, int) else 0


def patched(configuration: dict[str, Any], bundle: str, revision: str) -> dict[str, Any] | None:
    """The configuration with `bundle` (base64) in its sidecar injectors' caBundle; None when
    nothing is to change (already there, another revision's, or no such webhook)."""
    labels = (configuration.get("metadata") or {}).get("labels") or {}
    if labels.get(REVISION_LABEL) != revision:
        return None
    webhooks = configuration.get("webhooks") or []
    changed = False
    updated = []
    for webhook in webhooks:
        webhook = dict(webhook)
        if str(webhook.get("name", "")).endswith(WEBHOOK_SUFFIX):
            client = dict(webhook.get("clientConfig") or {})
            if client.get("caBundle") != bundle:
                client["caBundle"] = bundle
                changed = True
            webhook["clientConfig"] = client
        updated.append(webhook)
    return {**configuration, "webhooks": updated} if changed else None


class WebhookCaPatcher:
    def __init__(self, api: KubeApi, root_pem: Callable[[], bytes],
                 revision: str = "default") -> None:
        self._api = api
        self._root_pem = root_pem
        self.revision = revision
        self.current: dict[str, Any] | None = None
        self._changed = asyncio.Event()
        self.writes = 0  # updates made (for tests)

    # -- informer sink ------------------------------------------------------------------------

    def replace(self, items: list[dict[str, Any]]) -> None:
        self.current = items[-1] if items else None
        self._changed.set()

    def upsert(self, item: dict[str, Any]) -> None:
        self.current = item
        self._changed.set()

    def delete(self, item: dict[str, Any]) -> None:
        self.current = None

    async def run(self) -> None:
        informer = Informer(self._api, CONFIGURATIONS, self)
        task = asyncio.create_task(informer.run(), name="webhook configuration")
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                await self._reconcile_with_retries()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _reconcile_with_retries(self) -> None:
        backoff = Backoff(initial=0.1, maximum=10.0)
        for attempt in range(MAX_ATTEMPTS):
            try:
                await self.reconcile()
                return
            except Exception as err:
                if _code(err) == 409:
                    return  # a newer version is on its way through the watch
                if attempt == MAX_ATTEMPTS - 1:
                    log.error("cannot patch the caBundle of %s after %d attempts: %s",
                              CONFIGURATION, MAX_ATTEMPTS, err)
                    return
                await asyncio.sleep(backoff.delay())

    async def reconcile(self) -> None:
        if self.current is None:
            return
        bundle = base64.b64encode(self._root_pem()).decode()
        updated = patched(self.current, bundle, self.revision)
        if updated is None:
            return
        try:
            await self._api.send("PUT", f"{PATH}/{CONFIGURATION}", updated)
        except Exception as err:
            if _code(err) == 404:
                return
            if _code(err) == 403:
                log.warning("not allowed to update %s: %s", CONFIGURATION, err)
                return
            raise
        self.writes += 1
        log.info("patched the caBundle of %s with the mesh root", CONFIGURATION)
