"""TLS termination on gateway servers (istiod's BuildListenerTLSContext for SIMPLE, MUTUAL and
OPTIONAL_MUTUAL), with the certificate, key and CA read from files (istiod serves the same
files through pilot-agent's SDS; docs/architecture.md#deliberate-differences-from-istiod)."""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilotpy.model.gateway import TERMINATING_MODES, ServerTLS
from pilotpy.translate import pb
from pilotpy.translate.tls_files import tls_certificate, tls_parameters, validation_context

# istiod's util.ALPNHttp: what a terminating gateway server offers (HTTPS and TCP alike).
GATEWAY_ALPN = ("h2", "http/1.1")

__all__ = ["GATEWAY_ALPN", "TERMINATING_MODES", "downstream_tls_context"]


def downstream_tls_context(tls: ServerTLS) -> tls_pb2.DownstreamTlsContext:
    out = tls_pb2.DownstreamTlsContext(
        require_client_certificate=pb.boolean(tls.mode == "MUTUAL"))
    common = out.common_tls_context
    common.alpn_protocols.extend(GATEWAY_ALPN)
    common.tls_certificates.append(tls_certificate(tls.server_certificate, tls.private_key))
    # OPTIONAL_MUTUAL validates a client certificate when one is presented.
    if tls.mode in ("MUTUAL", "OPTIONAL_MUTUAL") and tls.ca_certificates:
        common.validation_context.CopyFrom(
            validation_context(tls.ca_certificates, tls.subject_alt_names))
    params = tls_parameters(tls.min_protocol_version, tls.max_protocol_version,
                            tls.cipher_suites)
    if params is not None:
        common.tls_params.CopyFrom(params)
    return out
