"""HTTP connection managers and their filter chains (istiod's listener_builder.go and
gateway.go), built only from extensions upstream Envoy ships (DESIGN.md §4)."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotpy.mesh import MeshConfig
from pilotpy.translate import pb
from pilotpy.translate.config_source import ads_config_source
from pilotpy.translate.observability import apply_observability

HCM_FILTER = "envoy.filters.network.http_connection_manager"
HCM = hcm_pb2.HttpConnectionManager
GATEWAY_SERVER_NAME = "istio-envoy"


def http_filters() -> list[hcm_pb2.HttpFilter]:
    """grpc_stats, then fault and CORS (per-route configs reference them), router last."""
    return [
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


def gateway_connection_manager(route_name: str, stat_prefix: str,
                               mesh: MeshConfig) -> hcm_pb2.HttpConnectionManager:
    manager = HCM(
        stat_prefix=stat_prefix,
        codec_type=HCM.AUTO,
        rds=hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=route_name),
        http_filters=http_filters(),
        use_remote_address=pb.boolean(True),
        forward_client_cert_details=HCM.SANITIZE_SET,
        set_current_client_cert_details=HCM.SetCurrentClientCertDetails(
            subject=pb.boolean(True), cert=True, dns=True, uri=True),
        server_name=GATEWAY_SERVER_NAME,
        stream_idle_timeout=pb.seconds(0),
        upgrade_configs=[HCM.UpgradeConfig(upgrade_type="websocket")],
    )
    manager.http_protocol_options.SetInParent()
    _apply_path_normalization(manager, mesh)
    apply_observability(manager, mesh)
    return manager


def network_filter(manager: hcm_pb2.HttpConnectionManager) -> lc.Filter:
    return lc.Filter(name=HCM_FILTER, typed_config=pb.typed(manager))
