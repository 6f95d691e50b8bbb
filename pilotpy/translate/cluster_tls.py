"""Upstream TLS origination from a DestinationRule's `tls` (istiod's cluster_tls.go
buildUpstreamClusterTLSContext and constructUpstreamTLS) for SIMPLE and MUTUAL: with
certificate FILES read by Envoy itself (inline `filename` data sources, not `file-cert:` SDS
through pilot-agent; docs/architecture.md#deliberate-differences-from-istiod; paths are paths
on the proxy), or, on gateways, with a Kubernetes Secret named by `credentialName` over SDS in
the ADS stream (pilotpy/translate/credentials.py). A sidecar's cluster whose rule names a
credential stays plaintext, as istiod leaves it (a DestinationRule without workloadSelector).
ISTIO_MUTUAL is mesh mTLS (pilotpy/translate/mtls.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model.destinationrule import ClientTLS
from pilotpy.translate.credentials import CA_SUFFIX, ads_secret_config, resource_name
from pilotpy.translate.tls_files import (
    file_source,
    tls_certificate,
    tls_transport_socket,
    typed_san_matchers,
)

# What pilot-agent resolves istiod's default CA `system` to on Istio's (Debian-based) proxy
# image: the first of security.GetOSRootFilePath's candidates.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ALPN_H2 = ("h2",)


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """The cluster's transport socket, and what goes into its HttpProtocolOptions'
    `upstream_http_protocol_options`."""

    transport_socket: base_pb2.TransportSocket
    auto_sni: bool
    auto_san_validation: bool


def originates_tls(tls: ClientTLS | None, *, credentials: bool = False
                   ) -> TypeGuard[ClientTLS]:
    """SIMPLE or MUTUAL; with a credentialName only where `credentials` (gateways)."""
    return (tls is not None and tls.mode in ("SIMPLE", "MUTUAL")
            and (credentials or not tls.credential_name))


def credential_resources(tls: ClientTLS) -> list[str]:
    """The SDS names a credentialName origination reads: the client key pair (MUTUAL) and
    the CA (`<name>-cacert`) unless verification is off."""
    if not tls.credential_name:
        return []
    out = [resource_name(tls.credential_name)] if tls.mode == "MUTUAL" else []
    if not tls.insecure_skip_verify:
        out.append(resource_name(tls.credential_name + CA_SUFFIX))
    return out


def _credential_context(common: common_pb2.CommonTlsContext, tls: ClientTLS,
                        sans: Sequence[str]) -> None:
    """istiod's ApplyCustomSDSToClientCommonTLSContext."""
    if tls.mode == "MUTUAL":
        common.tls_certificate_sds_secret_configs.append(
            ads_secret_config(resource_name(tls.credential_name)))
    if tls.insecure_skip_verify:
        return
    combined = common.combined_validation_context
    combined.default_validation_context.SetInParent()
    combined.default_validation_context.match_typed_subject_alt_names.extend(
        typed_san_matchers(sans))
    combined.validation_context_sds_secret_config.CopyFrom(
        ads_secret_config(resource_name(tls.credential_name + CA_SUFFIX)))


def _validation_context(tls: ClientTLS, sans: Sequence[str]
                        ) -> common_pb2.CertificateValidationContext:
    context = common_pb2.CertificateValidationContext(
        trusted_ca=file_source(tls.ca_certificates or SYSTEM_CA_BUNDLE))
    context.match_typed_subject_alt_names.extend(typed_san_matchers(sans))
    if tls.ca_crl:
        context.crl.CopyFrom(file_source(tls.ca_crl))
    return context


def upstream_tls_context(tls: ClientTLS, *, http2: bool, service_sans: Sequence[str] = (),
                         mesh: MeshConfig | None = None) -> tls_pb2.UpstreamTlsContext:
    """`service_sans`: a ServiceEntry's subjectAltNames, used when the rule names none;
    `mesh`: its tlsDefaults (curves, cipher suites) apply."""
    context = tls_pb2.UpstreamTlsContext(sni=tls.sni)
    common = context.common_tls_context
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    if tls.credential_name:
        _credential_context(common, tls, tls.subject_alt_names or service_sans)
    else:
        if tls.mode == "MUTUAL":
            common.tls_certificates.append(tls_certificate(tls.client_certificate,
                                                           tls.private_key))
        if tls.insecure_skip_verify:
            common.validation_context.SetInParent()  # istiod's empty context: verify nothing
        else:
            common.validation_context.CopyFrom(
                _validation_context(tls, tls.subject_alt_names or service_sans))
    if mesh is not None:
        common.tls_params.ecdh_curves.extend(mesh.tls_ecdh_curves)
        common.tls_params.cipher_suites.extend(mesh.tls_cipher_suites)
    if http2:
        common.alpn_protocols.extend(ALPN_H2)
    return context


def upstream_tls(tls: ClientTLS | None, *, http2: bool, service_sans: Sequence[str] = (),
                 mesh: MeshConfig | None = None, credentials: bool = False
                 ) -> UpstreamTls | None:
    """None when the cluster stays plaintext; `credentials`: a credentialName is served
    (a gateway)."""
    if not originates_tls(tls, credentials=credentials):
        return None
    context = upstream_tls_context(tls, http2=http2, service_sans=service_sans, mesh=mesh)
    socket = tls_transport_socket(context)
    # istiod's setAutoSniAndAutoSanValidation: the SNI (and the SAN to verify) follow the
    # request's host when the rule fixes neither; computed before the ServiceEntry's SANs
    # stand in for the rule's.
    auto_sni = not tls.sni
    auto_san = auto_sni and not tls.subject_alt_names and not tls.insecure_skip_verify
    return UpstreamTls(socket, auto_sni, auto_san)
