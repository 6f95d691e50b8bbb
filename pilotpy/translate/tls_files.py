"""TLS material read by Envoy from files: inline `filename` data sources, never the
`sds-grpc` cluster only pilot-agent's bootstrap has (Envoy waits silently, with no NACK, on a
missing SDS cluster; docs/architecture.md#deliberate-differences-from-istiod). Shared by
downstream (gateway servers) and upstream (DestinationRule) TLS contexts."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from pilotpy.translate import pb

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"

# Istio's TLS protocol enum names -> Envoy's TlsParameters.TlsProtocol.
TLS_PROTOCOL_VERSIONS = {
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


SPIFFE_SCHEME = "spiffe://"
# Envoy expands the untyped `match_subject_alt_names` istiod writes into one matcher per SAN
# type; pilotpy writes that expansion with the non-deprecated typed field.
_SAN_TYPES = (
    common_pb2.SubjectAltNameMatcher.DNS,
    common_pb2.SubjectAltNameMatcher.URI,
    common_pb2.SubjectAltNameMatcher.EMAIL,
    common_pb2.SubjectAltNameMatcher.IP_ADDRESS,
)


def typed_san_matchers(names: Sequence[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """istiod's exact SAN matchers (`util.StringToExactMatch`), one per SAN type; a SPIFFE id
    can only ever be a URI SAN, so it gets that one."""
    uri = common_pb2.SubjectAltNameMatcher.URI
    return [common_pb2.SubjectAltNameMatcher(san_type=san_type,
                                             matcher=string_pb2.StringMatcher(exact=name))
            for name in names
            for san_type in ((uri,) if name.startswith(SPIFFE_SCHEME) else _SAN_TYPES)]


def tls_transport_socket(context: tls_pb2.DownstreamTlsContext | tls_pb2.UpstreamTlsContext
                         ) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pb.typed(context))


def file_source(path: str) -> base_pb2.DataSource:
    return base_pb2.DataSource(filename=path)


def tls_certificate(certificate_chain: str, private_key: str) -> common_pb2.TlsCertificate:
    return common_pb2.TlsCertificate(certificate_chain=file_source(certificate_chain),
                                     private_key=file_source(private_key))


def _san_types(name: str) -> list[int]:
    san = common_pb2.SubjectAltNameMatcher
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return [san.DNS, san.URI]
    return [san.IP_ADDRESS]


def validation_context(trusted_ca: str, subject_alt_names: tuple[str, ...] = ()
                       ) -> common_pb2.CertificateValidationContext:
    """Trust `trusted_ca` (a file); when SANs are given the peer certificate must carry one of
    them (as a DNS name or URI, or as an IP address)."""
    out = common_pb2.CertificateValidationContext(trusted_ca=file_source(trusted_ca))
    for name in subject_alt_names:
        for san_type in _san_types(name):
            out.match_typed_subject_alt_names.add(
                san_type=san_type, matcher=string_pb2.StringMatcher(exact=name))
    return out


def tls_parameters(minimum: str = "", maximum: str = "", cipher_suites: tuple[str, ...] = ()
                   ) -> common_pb2.TlsParameters | None:
    """None when nothing is set (Envoy's defaults apply)."""
    if not (minimum not in ("", "TLS_AUTO") or maximum not in ("", "TLS_AUTO")
            or cipher_suites):
        return None
    out = common_pb2.TlsParameters(cipher_suites=list(cipher_suites))
    if minimum:
        out.tls_minimum_protocol_version = TLS_PROTOCOL_VERSIONS[minimum]
    if maximum:
        out.tls_maximum_protocol_version = TLS_PROTOCOL_VERSIONS[maximum]
    return out
