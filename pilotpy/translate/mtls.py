"""Mesh mutual TLS with the workload certificates pilot-agent serves over its SDS
(`sds-grpc`: `default`, `ROOTCA`), as istiod builds it (cluster_tls.go,
security/authn/utils BuildInboundTLS, security/model ConstructSdsSecretConfig). Only agent
proxies get these contexts (docs/architecture.md#proxies-with-and-without-pilot-agent).

The caller's identity reaches the server's filters through the TLS connection: an inbound
chain that terminates mesh mTLS (`InboundChain.mtls`, pilotpy/translate/inbound.py) requires
and validates the client certificate, so Envoy's RBAC sees the caller's SPIFFE id as the
connection's `principal` (`source.principal`) and the connection manager forwards it in
`x-forwarded-client-cert`. Plaintext chains (PERMISSIVE, DISABLE) carry no peer identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.push.peer_authn import MtlsMode
from pilotpy.translate import pb
from pilotpy.translate.tls_files import (
    TLS_PROTOCOL_VERSIONS,
    tls_transport_socket,
    typed_san_matchers,
)

SDS_CLUSTER = "sds-grpc"
WORKLOAD_CERTIFICATE = "default"
MESH_ROOT = "ROOTCA"
# The Pod label injection sets on workloads with a sidecar; endpoints carrying it get
# `envoy.transport_socket_match: {tlsMode: istio}` metadata, which selects the mTLS socket.
TLS_MODE_LABEL = "security.istio.io/tlsMode"
TLS_MODE_ISTIO = "istio"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
TLS_MODE_KEY = "tlsMode"
RAW_BUFFER_SOCKET = "envoy.transport_sockets.raw_buffer"
# What a client sidecar offers (istiod's ALPNInMeshWithMxc, ALPNInMeshH2WithMxc) and what a
# server sidecar's mTLS context answers (ALPNDownstreamWithMxc for TCP, ALPNHttp for HTTP).
ALPN_IN_MESH = ("istio-peer-exchange", "istio")
ALPN_IN_MESH_H2 = ("istio-peer-exchange", "istio", "h2")
ALPN_DOWNSTREAM_TCP = ("istio-peer-exchange", "h2", "http/1.1")
ALPN_HTTP = ("h2", "http/1.1")
# Cipher suites of inbound mesh mTLS (istiod's authn utils SupportedCiphers).
INBOUND_CIPHER_SUITES = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)


class ChainProtocol(Enum):
    """What an inbound chain speaks after TLS: HTTP (a connection manager) or TCP."""

    HTTP = "http"
    TCP = "tcp"


def agent_secret_config(name: str) -> secret_pb2.SdsSecretConfig:
    """A secret from pilot-agent's SDS (istiod's ConstructSdsSecretConfig): the agent has it
    or fetches it, so Envoy waits for it (initial_fetch_timeout 0s)."""
    source = config_source_pb2.ConfigSource(
        initial_fetch_timeout=pb.seconds(0), resource_api_version=config_source_pb2.V3)
    api = source.api_config_source
    api.api_type = config_source_pb2.ApiConfigSource.GRPC
    api.set_node_on_first_message_only = True
    api.transport_api_version = config_source_pb2.V3
    api.grpc_services.append(grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)))
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _mesh_validation(context: common_pb2.CommonTlsContext,
                     sans: Sequence[common_pb2.SubjectAltNameMatcher]) -> None:
    combined = context.combined_validation_context
    combined.default_validation_context.SetInParent()
    combined.default_validation_context.match_typed_subject_alt_names.extend(sans)
    combined.validation_context_sds_secret_config.CopyFrom(agent_secret_config(MESH_ROOT))


@dataclass(frozen=True, slots=True)
class IstioMutual:
    """DestinationRule ISTIO_MUTUAL, or what auto-mTLS infers: the SANs the server must
    present (its service accounts) and the SNI (`outbound_.<port>_.<subset>_.<host>`)."""

    subject_alt_names: tuple[str, ...]
    sni: str
    # Auto-detected (no DestinationRule tls): the context goes into transport_socket_matches
    # with a plaintext fallback for endpoints without a sidecar.
    auto: bool


def istio_mutual_upstream_context(mutual: IstioMutual, *, http2: bool
                                  ) -> tls_pb2.UpstreamTlsContext:
    """istiod's buildUpstreamClusterTLSContext for ISTIO_MUTUAL."""
    out = tls_pb2.UpstreamTlsContext(sni=mutual.sni)
    common = out.common_tls_context
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    common.alpn_protocols.extend(ALPN_IN_MESH_H2 if http2 else ALPN_IN_MESH)
    common.tls_certificate_sds_secret_configs.append(agent_secret_config(WORKLOAD_CERTIFICATE))
    _mesh_validation(common, typed_san_matchers(mutual.subject_alt_names))
    return out


def raw_buffer_socket() -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=RAW_BUFFER_SOCKET,
                                    typed_config=pb.typed(raw_buffer_pb2.RawBuffer()))


def auto_mtls_socket_matches(socket: base_pb2.TransportSocket
                             ) -> list[cluster_pb2.Cluster.TransportSocketMatch]:
    """mTLS to endpoints whose metadata says they have a sidecar (`tlsMode: istio`),
    plaintext to the others (istiod's applyUpstreamTLSSettings)."""
    match = struct_pb2.Struct()
    match.fields[TLS_MODE_KEY].string_value = TLS_MODE_ISTIO
    istio = cluster_pb2.Cluster.TransportSocketMatch(
        name=f"{TLS_MODE_KEY}-{TLS_MODE_ISTIO}", match=match, transport_socket=socket)
    disabled = cluster_pb2.Cluster.TransportSocketMatch(
        name=f"{TLS_MODE_KEY}-disabled", transport_socket=raw_buffer_socket())
    disabled.match.SetInParent()
    return [istio, disabled]


def apply_istio_mutual(cluster: cluster_pb2.Cluster, mutual: IstioMutual, *,
                       http2: bool) -> None:
    socket = tls_transport_socket(istio_mutual_upstream_context(mutual, http2=http2))
    if mutual.auto and cluster.type != cluster_pb2.Cluster.ORIGINAL_DST:
        cluster.transport_socket_matches.extend(auto_mtls_socket_matches(socket))
    else:
        cluster.transport_socket.CopyFrom(socket)


def tls_mode_metadata(metadata: base_pb2.Metadata) -> None:
    """Marks an endpoint as one that terminates mesh mTLS (it has a sidecar)."""
    metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].fields[TLS_MODE_KEY].string_value = (
        TLS_MODE_ISTIO)


def trust_domain_san_prefixes(mesh: MeshConfig) -> list[common_pb2.SubjectAltNameMatcher]:
    """A client certificate must name an identity of the mesh's trust domain or an alias
    (istiod's TrustDomainsForValidation)."""
    domains = list(dict.fromkeys(d for d in (mesh.trust_domain, *mesh.trust_domain_aliases)
                                 if d))
    return [common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.URI,
        matcher=string_pb2.StringMatcher(prefix=f"spiffe://{domain}/")) for domain in domains]


def inbound_tls_context(mode: MtlsMode, protocol: ChainProtocol, mesh: MeshConfig
                        ) -> tls_pb2.DownstreamTlsContext | None:
    """The context of a sidecar chain terminating mesh mTLS (istiod's BuildInboundTLS):
    the workload certificate, a client certificate required and validated against the mesh
    root and trust domain; None when the mode accepts no mTLS."""
    if mode in (MtlsMode.DISABLE, MtlsMode.UNKNOWN):
        return None
    out = tls_pb2.DownstreamTlsContext(require_client_certificate=pb.boolean(True))
    common = out.common_tls_context
    common.alpn_protocols.extend(ALPN_DOWNSTREAM_TCP if protocol is ChainProtocol.TCP
                                 else ALPN_HTTP)
    params = common.tls_params
    params.cipher_suites.extend(mesh.mesh_mtls_cipher_suites or INBOUND_CIPHER_SUITES)
    params.tls_minimum_protocol_version = TLS_PROTOCOL_VERSIONS[
        "TLSV1_3" if mesh.mesh_mtls_min_version == "TLSV1_3" else "TLSV1_2"]
    params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    common.tls_certificate_sds_secret_configs.append(agent_secret_config(WORKLOAD_CERTIFICATE))
    _mesh_validation(common, trust_domain_san_prefixes(mesh))
    return out


def gateway_istio_mutual_context(subject_alt_names: Sequence[str], alpn: Sequence[str]
                                 ) -> tls_pb2.DownstreamTlsContext:
    """A gateway server with `tls.mode: ISTIO_MUTUAL` (east-west and egress gateways): the
    gateway's own workload certificate, a mesh client certificate required."""
    out = tls_pb2.DownstreamTlsContext(require_client_certificate=pb.boolean(True))
    common = out.common_tls_context
    common.alpn_protocols.extend(alpn)
    common.tls_certificate_sds_secret_configs.append(agent_secret_config(WORKLOAD_CERTIFICATE))
    _mesh_validation(common, typed_san_matchers(subject_alt_names))
    return out

