"""HTTP connection managers and their filter chains (istiod's listener_builder.go and
gateway.go), built only from extensions upstream Envoy ships, so a stock Envoy accepts them
(docs/architecture.md#deliberate-differences-from-istiod)."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import range_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.translate import pb
from pilotpy.translate.config_source import ads_config_source
from pilotpy.translate.observability import apply_observability

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
ORIGINAL_DST = "envoy.filters.listener.original_dst"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HCM = hcm_pb2.HttpConnectionManager
GATEWAY_SERVER_NAME = "istio-envoy"


def http_filters(security: Sequence[hcm_pb2.HttpFilter] = ()) -> list[hcm_pb2.HttpFilter]:
    """`security` first (authentication and authorization in istiod's order, CUSTOM ext_authz,
    jwt_authn, RBAC: pilotpy/translate/security.py), grpc_stats, then fault and CORS
    (per-route configs reference them), router last."""
    return [
        *security,
        hcm_pb2.HttpFilter(name="envoy.filters.http.grpc_stats", typed_config=pb.typed(
            grpc_stats_pb2.FilterConfig(emit_filter_state=True,
                                        stats_for_all_methods=pb.boolean(False)))),
        hcm_pb2.HttpFilter(name="envoy.filters.http.fault",
                           typed_config=pb.typed(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name="envoy.filters.http.cors",
                           typed_config=pb.typed(cors_pb2.Cors())),
        hcm_pb2.HttpFilter(name="envoy.filters.http.router",
                           typed_config=pb.typed(router_pb2.Router())),
    ]


def _apply_path_normalization(manager: hcm_pb2.HttpConnectionManager, mesh: MeshConfig) -> None:
    manager.path_with_escaped_slashes_action = HCM.KEEP_UNCHANGED
    mode = mesh.path_normalization
    manager.normalize_path.value = mode != "NONE"
    if mode in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"):
        manager.merge_slashes = True
    if mode == "DECODE_AND_MERGE_SLASHES":
        manager.path_with_escaped_slashes_action = HCM.UNESCAPE_AND_FORWARD


def _connection_manager(stat_prefix: str, mesh: MeshConfig,
                        security: Sequence[hcm_pb2.HttpFilter] = ()
                        ) -> hcm_pb2.HttpConnectionManager:
    """What gateways and both sidecar directions share."""
    manager = HCM(
        stat_prefix=stat_prefix,
        codec_type=HCM.AUTO,
        http_filters=http_filters(security),
        stream_idle_timeout=pb.seconds(0),
        upgrade_configs=[HCM.UpgradeConfig(upgrade_type="websocket")],
        # istiod's ENABLE_100_CONTINUE_HEADERS default: answer `Expect: 100-continue` itself.
        proxy_100_continue=True,
    )
    _apply_path_normalization(manager, mesh)
    apply_observability(manager, mesh)
    return manager


def _rds_connection_manager(route_name: str, stat_prefix: str, mesh: MeshConfig, *,
                            use_remote_address: bool,
                            security: Sequence[hcm_pb2.HttpFilter] = ()
                            ) -> hcm_pb2.HttpConnectionManager:
    manager = _connection_manager(stat_prefix, mesh, security)
    manager.rds.CopyFrom(hcm_pb2.Rds(config_source=ads_config_source(),
                                     route_config_name=route_name))
    manager.use_remote_address.value = use_remote_address
    return manager


def gateway_connection_manager(route_name: str, stat_prefix: str, mesh: MeshConfig,
                               security: Sequence[hcm_pb2.HttpFilter] = ()
                               ) -> hcm_pb2.HttpConnectionManager:
    manager = _rds_connection_manager(route_name, stat_prefix, mesh, use_remote_address=True,
                                      security=security)
    manager.forward_client_cert_details = HCM.SANITIZE_SET
    manager.set_current_client_cert_details.CopyFrom(HCM.SetCurrentClientCertDetails(
        subject=pb.boolean(True), cert=True, dns=True, uri=True))
    manager.server_name = GATEWAY_SERVER_NAME
    manager.http_protocol_options.SetInParent()
    return manager


def sidecar_outbound_connection_manager(route_name: str, stat_prefix: str,
                                        mesh: MeshConfig) -> hcm_pb2.HttpConnectionManager:
    """Outbound: RDS, the client's addresses are not trusted, Envoy's own `server` name."""
    return _rds_connection_manager(route_name, stat_prefix, mesh, use_remote_address=False)


def sidecar_inbound_connection_manager(route: route_pb2.RouteConfiguration, stat_prefix: str,
                                       mesh: MeshConfig, *, http2: bool,
                                       security: Sequence[hcm_pb2.HttpFilter] = ()
                                       ) -> hcm_pb2.HttpConnectionManager:
    """Inbound: an inline route to the workload (istiod's buildSidecarInboundHTTPRouteConfig);
    the caller's certificate (mesh mTLS) is appended to `x-forwarded-client-cert`."""
    manager = _connection_manager(stat_prefix, mesh, security)
    manager.route_config.CopyFrom(route)
    manager.use_remote_address.value = False
    manager.forward_client_cert_details = HCM.APPEND_FORWARD
    manager.set_current_client_cert_details.CopyFrom(HCM.SetCurrentClientCertDetails(
        subject=pb.boolean(True), dns=True, uri=True))
    manager.server_name = GATEWAY_SERVER_NAME
    if http2:
        manager.http2_protocol_options.SetInParent()
    return manager


def tcp_proxy_filter(cluster: str, stat_prefix: str | None = None) -> lc.Filter:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix or cluster, cluster=cluster)
    return lc.Filter(name=TCP_PROXY_FILTER, typed_config=pb.typed(proxy))


def http_inspector(disabled_ports: Sequence[int] | None = None) -> lc.ListenerFilter:
    """Detects HTTP/1.x and h2c for filter chain matching; skipped on `disabled_ports`."""
    out = lc.ListenerFilter(name=HTTP_INSPECTOR, typed_config=pb.typed(
        http_inspector_pb2.HttpInspector()))
    if disabled_ports:
        out.filter_disabled.CopyFrom(_port_ranges(disabled_ports))
    return out


def _port_ranges(ports: Sequence[int]) -> lc.ListenerFilterChainMatchPredicate:
    predicates = [lc.ListenerFilterChainMatchPredicate(
        destination_port_range=range_pb2.Int32Range(start=port, end=port + 1))
        for port in ports]
    if len(predicates) == 1:
        return predicates[0]
    out = lc.ListenerFilterChainMatchPredicate()
    out.or_match.rules.extend(predicates)
    return out


def tls_inspector(disabled_ports: Sequence[int] = (), *,
                  only_ports: Sequence[int] = ()) -> lc.ListenerFilter:
    """Reads SNI and ALPN from the ClientHello for `server_names` matches and TLS contexts;
    skipped on `disabled_ports`, or everywhere but `only_ports`."""
    # istiod reads at most 512 bytes of the ClientHello first (Envoy's default is 64 KiB).
    out = lc.ListenerFilter(name=TLS_INSPECTOR, typed_config=pb.typed(
        tls_inspector_pb2.TlsInspector(initial_read_buffer_size=pb.uint32(512))))
    if disabled_ports:
        out.filter_disabled.CopyFrom(_port_ranges(disabled_ports))
    elif only_ports:
        out.filter_disabled.not_match.CopyFrom(_port_ranges(only_ports))
    return out


def original_dst() -> lc.ListenerFilter:
    return lc.ListenerFilter(name=ORIGINAL_DST, typed_config=pb.typed(
        original_dst_pb2.OriginalDst()))


def network_filter(manager: hcm_pb2.HttpConnectionManager) -> lc.Filter:
    return lc.Filter(name=HCM_FILTER, typed_config=pb.typed(manager))
