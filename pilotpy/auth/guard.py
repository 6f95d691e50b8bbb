"""Who is behind a call on the secure port, and whether an ADS stream may be the proxy it
says it is (istiod's pilot/pkg/xds/auth.go with PILOT_ENABLE_XDS_IDENTITY_CHECK on).

The caller is proven, in istiod's order, by a client certificate the TLS port verified
against the mesh roots (its URI SANs), else by `authorization: Bearer <JWT>`. A stream whose
node declares a NAMESPACE (and SERVICE_ACCOUNT, when sent) that none of the caller's
identities has is refused PermissionDenied; no or a bad credential is Unauthenticated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from cryptography import x509
from envoy.config.core.v3 import base_pb2

from pilotpy.auth.caller import AuthError, Caller, TokenAuthenticator, bearer_token
from pilotpy.ca.identity import SpiffeId
from pilotpy.runtime.metrics import Registry
from pilotpy.xds.server import StreamRefused
from pilotpy.xds.tls_front import PeerTls

log = logging.getLogger("pilotpy.auth")


def certificate_identities(der: bytes) -> tuple[str, ...]:
    """The URI SANs of a DER certificate (the SPIFFE ids a mesh certificate proves)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return ()
    return tuple(names.get_values_for_type(x509.UniformResourceIdentifier))


class SecureCallers:
    def __init__(self, peer: Callable[[str], PeerTls | None],
                 tokens: TokenAuthenticator | None) -> None:
        self._peer = peer
        self.tokens = tokens

    def address(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The client's own address (not the forwarded connection's)."""
        tls = self._peer(context.peer())
        return tls.address if tls is not None else str(context.peer())

    async def caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The authenticated caller, or AuthError saying why there is none."""
        peer = self._peer(context.peer())
        if peer is None:
            raise AuthError("the call did not arrive over the TLS port")
        if peer.certificate:
            identities = certificate_identities(peer.certificate)
            if identities:
                return Caller(identities, "certificate")
        token = bearer_token([(str(k), v) for k, v in context.invocation_metadata() or ()])
        if self.tokens is None:
            raise AuthError("no JWT can be checked: pilotpy runs without Kubernetes and "
                            "without --jwt-rule")
        return await self.tokens.authenticate(token)


def node_namespace(node: base_pb2.Node) -> str:
    """NAMESPACE from the node metadata, else the one in the node id's DNS domain
    (`type~ip~pod.ns~ns.svc.cluster.local`), as istiod's ConfigNamespace."""
    fields = node.metadata.fields if node.HasField("metadata") else {}
    value = fields.get("NAMESPACE")
    if value is not None and value.string_value:
        return str(value.string_value)
    parts = node.id.split("~")
    return parts[3].split(".", 1)[0] if len(parts) == 4 else ""


def node_service_account(node: base_pb2.Node) -> str:
    fields = node.metadata.fields if node.HasField("metadata") else {}
    value = fields.get("SERVICE_ACCOUNT")
    return str(value.string_value) if value is not None else ""


def matching_identity(caller: Caller, namespace: str, service_account: str) -> SpiffeId:
    for identity in caller.spiffe_ids:
        if namespace and identity.namespace != namespace:
            continue
        if service_account and identity.service_account != service_account:
            continue
        return identity
    raise PermissionError(f"no identities ({caller}) matched "
                          f"{namespace or '*'}/{service_account or '*'}")


class XdsStreamGuard:
    def __init__(self, callers: SecureCallers, registry: Registry) -> None:
        self.callers = callers
        self.refusals = registry.counter(
            "pilotpy_xds_auth_refusals",
            "ADS streams on the secure port refused, by gRPC status "
            "(UNAUTHENTICATED, PERMISSION_DENIED).", ("code",))

    def _refused(self, code: grpc.StatusCode, message: str, peer: str) -> StreamRefused:
        self.refusals.inc(code=code.name)
        log.warning("xDS stream refused (%s) from %s: %s", code.name, peer, message,
                    extra={"fields": {"peer": peer, "code": code.name}})
        return StreamRefused(code, message)

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> object:
        try:
            return await self.callers.caller(context)
        except AuthError as err:
            raise self._refused(grpc.StatusCode.UNAUTHENTICATED,
                                f"authentication failure: {err}",
                                self.callers.address(context)) from None

    def authorize(self, principal: object, node: base_pb2.Node) -> str:
        assert isinstance(principal, Caller)
        try:
            return matching_identity(principal, node_namespace(node),
                                     node_service_account(node)).uri
        except PermissionError as err:
            raise self._refused(grpc.StatusCode.PERMISSION_DENIED,
                                f"authorization failed for node {node.id!r}: {err}",
                                node.id) from None
