"""istiod's injection webhook on :15017: HTTPS with the serving certificate the mesh CA issues
for `istiod.<ns>.svc` (the one :15012 presents, renewed with it), `POST /inject` and
`/inject/<settings>` with an AdmissionReview, the answer a JSON patch.

A body that is not an AdmissionReview gets HTTP 400 with the reason; a pod refused (a bad
annotation, an unknown template) gets an AdmissionReview that disallows it with the reason,
which the API server shows to whoever created the pod. Metrics: istiod's
sidecar_injection_requests_total, _success_total, _skip_total, _failure_total and
sidecar_injection_time_seconds.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from aiohttp import web

from pilotpy.inject.injector import Injection, InjectorConfig, inject
from pilotpy.inject.review import (
    MalformedReview,
    Request,
    parse_request,
    path_settings,
    respond,
    review_body,
)
from pilotpy.runtime.metrics import Registry
from pilotpy.server import http
from pilotpy.server.settings import split_address
from pilotpy.xds.tls_front import load_certificate

log = logging.getLogger("pilotpy.inject")
# The API server's limit on an object, doubled (istiod's MaxRequestBodyBytes).
MAX_BODY = 6 * 1024 * 1024
TIME_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class InjectionWebhook:
    def __init__(self, address: str, current: Callable[[], InjectorConfig],
                 native: Callable[[str], bool], registry: Registry) -> None:
        """`current`: the injector's settings and mesh config now; `native`: whether a pod
        on the given node (or none yet: "") gets a native sidecar."""
        self.address = address
        self._current = current
        self._native = native
        self.port = 0
        self.ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.requests = registry.counter("sidecar_injection_requests_total",
                                         "Total number of sidecar injection requests.")
        self.successes = registry.counter("sidecar_injection_success_total",
                                          "Total number of successful sidecar injection "
                                          "requests.")
        self.failures = registry.counter("sidecar_injection_failure_total",
                                         "Total number of failed sidecar injection requests.")
        self.skips = registry.counter("sidecar_injection_skip_total",
                                      "Total number of skipped sidecar injection requests.")
        self.time = registry.histogram("sidecar_injection_time_seconds",
                                       "Total time taken for injection in seconds.",
                                       TIME_BUCKETS)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/inject", self._handle)
        app.router.add_post("/inject/{settings:.*}", self._handle)
        return app

    async def start(self, context: ssl.SSLContext) -> int:
        host, port = split_address(self.address)
        self._runner, self.port = await http.serve(self.app(), host, port,
                                                   ssl_context=context)
        self.ready.set()
        log.info("injection webhook on :%d", self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.ready.clear()

    def _bad(self, status: int, message: str, peer: str) -> web.Response:
        self.failures.inc()
        log.warning("injection request from %s refused: %s", peer, message)
        return web.Response(status=status, text=message + "\n")

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        self.requests.inc()
        peer = request.remote or "?"
        if request.content_type != "application/json":
            return self._bad(415, "invalid Content-Type, want `application/json`", peer)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._bad(400, f"the body is larger than {MAX_BODY} bytes", peer)
        if not body:
            return self._bad(400, "no body found", peer)
        try:
            review = parse_request(body)
        except MalformedReview as err:
            return self._bad(400, f"malformed AdmissionReview: {err}", peer)
        settings = path_settings(request.path)
        outcome = respond(review, lambda r: self._inject(r, settings))
        pod = f"{review.namespace}/{_pod_name(review)}"
        if outcome.refused:
            self.failures.inc()
            log.warning("pod %s refused: %s", pod, outcome.refused)
        elif outcome.injected:
            self.successes.inc()
            log.info("pod %s injected", pod)
        else:
            self.skips.inc()
            log.info("pod %s not injected: %s", pod, outcome.skipped)
        for warning in outcome.warnings:
            log.warning("pod %s: %s", pod, warning)
        self.time.observe(time.monotonic() - started)
        return web.Response(body=review_body(outcome), content_type="application/json")

    def _inject(self, review: Request, settings: dict[str, str]) -> Injection:
        spec = review.pod.get("spec") or {}
        native = self._native(str(spec.get("nodeName") or "") if isinstance(spec, dict)
                              else "")
        return inject(review.pod, self._current(), native=native, namespace=review.namespace,
                      proxy_envs=settings)


def _pod_name(review: Request) -> str:
    meta = review.pod.get("metadata") or {}
    if not isinstance(meta, dict):
        return "?"
    return str(meta.get("name") or f"{meta.get('generateName') or ''}*")


def webhook_context(key_pem: bytes, chain_pem: bytes) -> ssl.SSLContext:
    """The webhook's TLS: TLS >= 1.2, no client certificate (the API server sends none)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_certificate(context, key_pem, chain_pem)
    return context
