"""Upstream TLS origination from a DestinationRule's `tls` (istiod's cluster_tls.go
buildUpstreamClusterTLSContext and constructUpstreamTLS), with certificate FILES read by Envoy
itself: inline `filename` data sources, never SDS through pilot-agent
(docs/architecture.md#deliberate-differences-from-istiod). Paths are paths on the proxy.

SIMPLE and MUTUAL are translated. ISTIO_MUTUAL (mesh certificates) and `credentialName`
(Secrets) are not: the model warns, and the cluster stays plaintext, as istiod leaves a
sidecar's cluster when a DestinationRule without workloadSelector names a credential.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model.destinationrule import ClientTLS
from pilotpy.translate.tls_files import file_source, tls_certificate, tls_transport_socket

# What pilot-agent resolves istiod's default CA `system` to on Istio's (Debian-based) proxy
# image: the first of security.GetOSRootFilePath's candidates.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ALPN_H2 = ("h2",)
# Envoy expands the untyped `match_subject_alt_names` istiod writes into one matcher per SAN
# type; pilotpy writes that expansion with the non-deprecated typed field.
_SAN_TYPES = (
    common_pb2.SubjectAltNameMatcher.DNS,
    common_pb2.SubjectAltNameMatcher.URI,
    common_pb2.SubjectAltNameMatcher.EMAIL,
    common_pb2.SubjectAltNameMatcher.IP_ADDRESS,
)


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """The cluster's transport socket, and what goes into its HttpProtocolOptions'
    `upstream_http_protocol_options`."""

    transport_socket: base_pb2.TransportSocket
    auto_sni: bool
    auto_san_validation: bool


def originates_tls(tls: ClientTLS | None) -> TypeGuard[ClientTLS]:
    """SIMPLE or MUTUAL that pilotpy translates (credentialName ones are ignored)."""
    return tls is not None and tls.mode in ("SIMPLE", "MUTUAL") and not tls.credential_name


def typed_san_matchers(names: Sequence[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    return [common_pb2.SubjectAltNameMatcher(san_type=san_type,
                                             matcher=string_pb2.StringMatcher(exact=name))
            for name in names for san_type in _SAN_TYPES]


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
                 mesh: MeshConfig | None = None) -> UpstreamTls | None:
    """None when the cluster stays plaintext."""
    if not originates_tls(tls):
        return None
    context = upstream_tls_context(tls, http2=http2, service_sans=service_sans, mesh=mesh)
    socket = tls_transport_socket(context)
    # istiod's setAutoSniAndAutoSanValidation: the SNI (and the SAN to verify) follow the
    # request's host when the rule fixes neither; computed before the ServiceEntry's SANs
    # stand in for the rule's.
    auto_sni = not tls.sni
    auto_san = auto_sni and not tls.subject_alt_names and not tls.insecure_skip_verify
    return UpstreamTls(socket, auto_sni, auto_san)
