"""TLS termination on gateway servers (istiod's BuildListenerTLSContext): SIMPLE, MUTUAL and
OPTIONAL_MUTUAL with the certificate, key and CA read from files (istiod serves the same
files through pilot-agent's SDS; docs/architecture.md#deliberate-differences-from-istiod) or
from Kubernetes Secrets over SDS in the ADS stream (`credentialName`, pilotpy/translate/
credentials.py), and ISTIO_MUTUAL with the gateway's own mesh certificate from pilot-agent."""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from pilotpy.model.gateway import TERMINATING_MODES, ServerTLS
from pilotpy.translate import pb
from pilotpy.translate.credentials import CA_SUFFIX, ads_secret_config, resource_name
from pilotpy.translate.mtls import ALPN_DOWNSTREAM_TCP, gateway_istio_mutual_context
from pilotpy.translate.tls_files import (
    tls_certificate,
    tls_parameters,
    typed_san_matchers,
    validation_context,
)

# istiod's util.ALPNHttp: what a terminating gateway server offers (HTTPS and TCP alike).
GATEWAY_ALPN = ("h2", "http/1.1")
VALIDATING_MODES = frozenset({"MUTUAL", "OPTIONAL_MUTUAL"})

__all__ = ["GATEWAY_ALPN", "TERMINATING_MODES", "credential_resources",
           "downstream_tls_context"]


def credential_resources(tls: ServerTLS) -> list[str]:
    """The SDS resource names a server with `credentialName(s)` reads: its key pairs, and
    the CA (`<first>-cacert`, or `caCertCredentialName`) when it validates clients."""
    names = list(tls.credential_names) or ([tls.credential_name] if tls.credential_name
                                           else [])
    if not names:
        return []
    out = [resource_name(n) for n in names]
    if tls.mode in VALIDATING_MODES:
        out.append(resource_name(tls.ca_cert_credential_name or names[0] + CA_SUFFIX))
    return out


def _credential_context(common: common_pb2.CommonTlsContext, tls: ServerTLS) -> None:
    """istiod's ApplyCredentialSDSToServerCommonTLSContext."""
    resources = credential_resources(tls)
    validating = tls.mode in VALIDATING_MODES
    certificates = resources[:-1] if validating else resources
    common.tls_certificate_sds_secret_configs.extend(ads_secret_config(n) for n in certificates)
    if validating:
        combined = common.combined_validation_context
        combined.default_validation_context.SetInParent()
        combined.default_validation_context.match_typed_subject_alt_names.extend(
            typed_san_matchers(tls.subject_alt_names))
        combined.validation_context_sds_secret_config.CopyFrom(ads_secret_config(resources[-1]))
    elif tls.subject_alt_names:
        common.validation_context.match_typed_subject_alt_names.extend(
            typed_san_matchers(tls.subject_alt_names))


def downstream_tls_context(tls: ServerTLS, *, tcp: bool = False
                           ) -> tls_pb2.DownstreamTlsContext:
    """`tcp`: a TLS server terminating TLS in front of opaque TCP (its ISTIO_MUTUAL ALPN
    offers `istio-peer-exchange` too)."""
    if tls.mode == "ISTIO_MUTUAL":
        return gateway_istio_mutual_context(tls.subject_alt_names,
                                            ALPN_DOWNSTREAM_TCP if tcp else GATEWAY_ALPN)
    out = tls_pb2.DownstreamTlsContext(
        require_client_certificate=pb.boolean(tls.mode == "MUTUAL"))
    common = out.common_tls_context
    common.alpn_protocols.extend(GATEWAY_ALPN)
    if tls.credential_name or tls.credential_names:
        _credential_context(common, tls)
    else:
        common.tls_certificates.append(tls_certificate(tls.server_certificate, tls.private_key))
        # OPTIONAL_MUTUAL validates a client certificate when one is presented.
        if tls.mode in VALIDATING_MODES and tls.ca_certificates:
            common.validation_context.CopyFrom(
                validation_context(tls.ca_certificates, tls.subject_alt_names))
    params = tls_parameters(tls.min_protocol_version, tls.max_protocol_version,
                            tls.cipher_suites)
    if params is not None:
        common.tls_params.CopyFrom(params)
    return out
