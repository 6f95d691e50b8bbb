"""`istio.v1.auth.IstioCertificateService/CreateCertificate` on the secure port, as istiod's
CA server (security/pkg/server/ca/server.go), with istiod's metric names.

Every refusal is a gRPC error whose message names the reason, logged with the caller's
address and counted; the CSR is parsed and signed off the event loop (the signature releases
the GIL), so signing never delays xDS pushes on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, NoReturn

import grpc

from pilotpy.auth.caller import AuthError, Caller
from pilotpy.ca import ca_pb2
from pilotpy.ca.authority import CaError, CertificateAuthority, IdentityMismatch, parse_csr
from pilotpy.runtime.metrics import Registry

log = logging.getLogger("pilotpy.ca")
SERVICE = "istio.v1.auth.IstioCertificateService"
# Metadata keys of the request istiod reads (pkg/security).
IMPERSONATED_IDENTITY = "ImpersonatedIdentity"
SIGNING_THREADS = 2

CallerOf = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[Caller]]


class CaMetrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        self.csr = r.counter("citadel_server_csr_count",
                             "The number of CSRs received by Citadel server.")
        self.authentication_failure = r.counter(
            "citadel_server_authentication_failure_count",
            "The number of authentication failures.")
        self.csr_parsing_error = r.counter(
            "citadel_server_csr_parsing_err_count",
            "The number of errors occurred when parsing the CSR.")
        self.id_extraction_error = r.counter(
            "citadel_server_id_extraction_err_count",
            "The number of errors occurred when extracting the ID from CSR.")
        self.sign_error = r.counter(
            "citadel_server_csr_sign_err_count",
            "The number of errors occurred when signing the CSR.", ("error",))
        self.success = r.counter(
            "citadel_server_success_cert_issuance_count",
            "The number of certificates issuances that have succeeded.")
        self.root_expiry = r.gauge(
            "citadel_server_root_cert_expiry_timestamp",
            "The unix timestamp, in seconds, when the root cert will expire.")


class CertificateService:
    def __init__(self, authority: Callable[[], CertificateAuthority | None],
                 caller_of: CallerOf, metrics: CaMetrics,
                 executor: Executor | None = None,
                 address_of: Callable[[grpc.aio.ServicerContext[Any, Any]], str] | None = None
                 ) -> None:
        self._authority = authority
        self._caller_of = caller_of
        self._address_of = address_of or (lambda context: str(context.peer()))
        self.metrics = metrics
        self._executor = executor or ThreadPoolExecutor(SIGNING_THREADS,
                                                        thread_name_prefix="ca-sign")

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "CreateCertificate": grpc.unary_unary_rpc_method_handler(
                self.create_certificate,
                request_deserializer=ca_pb2.IstioCertificateRequest.FromString,
                response_serializer=ca_pb2.IstioCertificateResponse.SerializeToString),
        })

    async def _refuse(self, context: grpc.aio.ServicerContext[Any, Any],
                      code: grpc.StatusCode, message: str, who: str = "") -> NoReturn:
        peer = self._address_of(context)
        log.warning("CSR refused (%s) from %s%s: %s", code.name, peer,
                    f" ({who})" if who else "", message,
                    extra={"fields": {"peer": peer, "code": code.name, "caller": who}})
        await context.abort(code, message)

    async def create_certificate(self, request: ca_pb2.IstioCertificateRequest,
                                 context: grpc.aio.ServicerContext[Any, Any]
                                 ) -> ca_pb2.IstioCertificateResponse:
        self.metrics.csr.inc()
        try:
            caller = await self._caller_of(context)
        except AuthError as err:
            self.metrics.authentication_failure.inc()
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED,
                               f"request authenticate failure: {err}")
        metadata = request.metadata.fields if request.HasField("metadata") else {}
        if metadata.get(IMPERSONATED_IDENTITY) and metadata[IMPERSONATED_IDENTITY].string_value:
            self.metrics.authentication_failure.inc()
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED,
                               "request impersonation authentication failure: impersonation "
                               "is not supported", str(caller))
        authority = self._authority()
        if authority is None:
            self.metrics.sign_error.inc(error="CA_NOT_READY")
            await self._refuse(context, grpc.StatusCode.UNAVAILABLE,
                               "the CA is not ready: its key material is still loading",
                               str(caller))
        loop = asyncio.get_running_loop()
        try:
            chain = await loop.run_in_executor(self._executor, _sign, authority, request.csr,
                                               caller, request.validity_duration)
        except IdentityMismatch as err:
            self.metrics.id_extraction_error.inc()
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                               f"identity mismatch: {err}", str(caller))
        except CaError as err:
            if err.kind == "CSR_ERROR":
                self.metrics.csr_parsing_error.inc()
            self.metrics.sign_error.inc(error=err.kind)
            code = (grpc.StatusCode.INVALID_ARGUMENT if err.kind in ("CSR_ERROR", "TTL_ERROR")
                    else grpc.StatusCode.INTERNAL)
            await self._refuse(context, code, f"CSR signing error ({err.kind}): {err}",
                               str(caller))
        self.metrics.success.inc()
        log.debug("CSR signed for %s", caller)
        return ca_pb2.IstioCertificateResponse(cert_chain=chain)


def _sign(authority: CertificateAuthority, csr_pem: str, caller: Caller,
          requested_seconds: int) -> list[str]:
    csr = parse_csr(csr_pem)
    return authority.response_chain(authority.sign(csr, caller.identities, requested_seconds))
