"""istiod's :15012 for one running pilotpy: the mesh CA (its key material, CreateCertificate),
the TLS port in front of the secure gRPC server with a serving certificate issued by the CA
and renewed at half its life, and the authentication of every call on it.

In the cluster the key material comes from the API (pilotpy/ca/keysource.py), which may be
unreachable at start: the TLS port then opens as soon as it is loaded, and `ready` says when.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import ssl
from collections.abc import Callable

from pilotpy.auth.caller import TokenAuthenticator, TrustDomain
from pilotpy.auth.guard import SecureCallers, XdsStreamGuard
from pilotpy.auth.jwtrule import JwksAuthenticator, parse_jwt_rule
from pilotpy.auth.tokenreview import TokenReviewer
from pilotpy.ca.authority import CertificateAuthority, TtlPolicy
from pilotpy.ca.bundle import CaBundle
from pilotpy.ca.keysource import bundle_from_cluster, bundle_from_directory, bundle_in_memory
from pilotpy.ca.service import CaMetrics, CertificateService
from pilotpy.runtime.metrics import Registry
from pilotpy.server.settings import Settings, split_address
from pilotpy.sources.kube import KubeApi
from pilotpy.sources.kube.backoff import Backoff
from pilotpy.xds.server import XdsServer
from pilotpy.xds.tls_front import PeerTls, TlsFront, load_certificate, server_context

log = logging.getLogger("pilotpy.ca")
# The names pilot-agent checks (ISTIOD_SAN defaults to the first), as istiod's getDNSNames.
KNOWN_HOSTS = ("istiod", "istiod-remote", "istio-pilot")


def serving_names(namespace: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [f"{host}.{namespace}.svc" for host in KNOWN_HOSTS] + list(extra)


class SecurePort:
    def __init__(self, settings: Settings, xds: XdsServer, registry: Registry,
                 trust_domain: TrustDomain, kube_api: KubeApi | None) -> None:
        """`trust_domain` gives the mesh config's current trust domain."""
        self.settings = settings
        self._trust_domain = trust_domain
        self._kube_api = kube_api
        self.authority: CertificateAuthority | None = None
        self.front: TlsFront | None = None
        self.port = 0
        self.ready = asyncio.Event()
        self.serving_expires: datetime.datetime | None = None
        self.rotations = 0
        self._material: tuple[bytes, bytes] | None = None  # (key, chain) being served
        self._contexts: list[ssl.SSLContext] = []  # other ports serving the same certificate
        tokens: TokenAuthenticator | None = None
        if kube_api is not None:
            tokens = TokenReviewer(kube_api, trust_domain)
        elif settings.jwt_rule:
            tokens = JwksAuthenticator(parse_jwt_rule(settings.jwt_rule), trust_domain)
        self.callers = SecureCallers(self._peer, tokens)
        self.guard = XdsStreamGuard(self.callers, registry)
        self.ca_metrics = CaMetrics(registry)
        self.service = CertificateService(lambda: self.authority, self.callers.caller,
                                          self.ca_metrics, address_of=self.callers.address)
        xds.guard = self.guard
        xds.add_secure_handler(self.service.handler())
        self._tasks: list[asyncio.Task[None]] = []

    def _peer(self, grpc_peer: str) -> PeerTls | None:
        return self.front.peer(grpc_peer) if self.front is not None else None

    @property
    def root_pem(self) -> bytes:
        assert self.authority is not None
        return self.authority.bundle.root_pem

    async def _load_bundle(self) -> CaBundle:
        domain = self._trust_domain()
        if self._kube_api is not None:
            backoff = Backoff(maximum=10.0)
            while True:
                try:
                    return await bundle_from_cluster(self._kube_api,
                                                     self.settings.control_plane_namespace,
                                                     domain)
                except ValueError:
                    raise  # bad key material: retrying cannot help
                except Exception as err:
                    delay = backoff.delay()
                    log.warning("CA: cannot read its key material from the API (%s); "
                                "retrying in %.1fs", err, delay)
                    await asyncio.sleep(delay)
        if self.settings.ca_dir is not None:
            return await asyncio.to_thread(bundle_from_directory, self.settings.ca_dir, domain)
        return await asyncio.to_thread(bundle_in_memory, domain)

    def _serving_material(self) -> tuple[bytes, bytes]:
        settings = self.settings
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            self.serving_expires = None
            return settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes()
        assert self.authority is not None
        lifetime = datetime.timedelta(seconds=settings.serving_cert_ttl_seconds)
        key, chain = self.authority.serving_certificate(
            serving_names(settings.control_plane_namespace, settings.serving_hosts), lifetime)
        self.serving_expires = datetime.datetime.now(datetime.UTC) + lifetime
        return key, chain

    def serving_context(self, build: Callable[[bytes, bytes], ssl.SSLContext]
                        ) -> ssl.SSLContext:
        """A TLS context for another port serving this certificate (istiod's webhook port
        presents the same one): built from the current key and chain once `ready`, and
        given the renewed ones with the TLS port's."""
        assert self._material is not None, "the serving certificate is issued once ready"
        context = build(*self._material)
        self._contexts.append(context)
        return context

    async def start(self, secure_backend_port: int) -> None:
        """Load the CA, then open the TLS port. Off the cluster this is done on return; in
        the cluster it goes on in the background (the API may be away), see `ready`."""
        task = asyncio.create_task(self._open(secure_backend_port), name="secure port")
        self._tasks.append(task)
        if self._kube_api is None:
            await task

    async def _open(self, backend_port: int) -> None:
        try:
            bundle = await self._load_bundle()
        except Exception:
            log.exception("CA: cannot load its key material; the TLS port stays closed")
            raise
        self.authority = CertificateAuthority(bundle, TtlPolicy(
            default=datetime.timedelta(seconds=self.settings.workload_cert_ttl_seconds),
            maximum=datetime.timedelta(seconds=self.settings.max_workload_cert_ttl_seconds)))
        self.ca_metrics.root_expiry.set(min(r.not_valid_after_utc.timestamp()
                                            for r in bundle.roots))
        key, chain = await asyncio.to_thread(self._serving_material)
        self._material = (key, chain)
        front = TlsFront(server_context(key, chain, bundle.root_pem))
        host, port = split_address(self.settings.grpc_tls_addr)
        self.port = await front.start(host, port, ("127.0.0.1", backend_port))
        self.front = front
        self.ready.set()
        log.info("CA ready (%s); TLS xDS and CA on :%d", bundle.origin, self.port)
        if self.serving_expires is not None:
            self._tasks.append(asyncio.create_task(self._renew(), name="serving cert"))

    async def _renew(self) -> None:
        """Reissue the serving certificate at half its life: new handshakes get the new
        one, established streams keep theirs."""
        lifetime = self.settings.serving_cert_ttl_seconds
        while True:
            await asyncio.sleep(lifetime / 2)
            try:
                key, chain = await asyncio.to_thread(self._serving_material)
                assert self.front is not None
                for context in [self.front.context, *self._contexts]:
                    load_certificate(context, key, chain)
                self._material = (key, chain)
                self.rotations += 1
                log.info("renewed the serving certificate of the TLS port (valid until %s)",
                         self.serving_expires)
            except Exception:  # keep serving with the current one; try again later
                log.exception("renewing the serving certificate failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # A failure of the background start was logged when it happened.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.front is not None:
            await self.front.stop()
