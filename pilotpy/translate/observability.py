"""Access logs, tracing and request ids on HTTP connection managers, from meshConfig
(istiod's pilot/pkg/model/telemetry_logging.go, pilot/pkg/networking/core/tracing.go and
requestidextension). Stock Envoy extensions only.

Where istiod relies on pilot-agent's bootstrap for the tracer (the `zipkin` cluster and the
tracing provider), pilotpy puts the provider on the connection manager and serves the
collector's cluster over CDS, so a plain Envoy traces too.
"""

from __future__ import annotations

import ipaddress
import json

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, substitution_format_string_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.trace.v3 import http_tracer_pb2, zipkin_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import struct_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.translate import pb

FILE_ACCESS_LOG = "envoy.access_loggers.file"
ZIPKIN_TRACER = "envoy.tracers.zipkin"
# The cluster name istio's bootstrap gives the Zipkin collector.
ZIPKIN_CLUSTER = "zipkin"
ZIPKIN_SPANS_PATH = "/api/v2/spans"

# istiod's EnvoyTextLogFormat (Istio 1.9 onwards).
TEXT_FORMAT = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% "
    "%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% "
    "%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" "
    "\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" "
    "%UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% "
    "%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

# istiod's EnvoyJSONLogFormatIstio.
JSON_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}


def _log_format(mesh: MeshConfig) -> substitution_format_string_pb2.SubstitutionFormatString:
    if mesh.access_log_encoding == "JSON":
        fields = json.loads(mesh.access_log_format) if mesh.access_log_format else JSON_FORMAT
        json_format = struct_pb2.Struct()
        for key in sorted(fields):  # sorted: deterministic bytes whatever the input order
            json_format[key] = fields[key]
        return substitution_format_string_pb2.SubstitutionFormatString(
            json_format=json_format,
            json_format_options=substitution_format_string_pb2.JsonFormatOptions(
                sort_properties=False))
    text = mesh.access_log_format or TEXT_FORMAT
    if not text.endswith("\n"):
        text += "\n"
    return substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source={"inline_string": text})


def access_logs(mesh: MeshConfig) -> list[accesslog_pb2.AccessLog]:
    """meshConfig accessLogFile: one file logger per connection manager, or none."""
    if not mesh.access_log_file:
        return []
    logger = file_pb2.FileAccessLog(path=mesh.access_log_file, log_format=_log_format(mesh))
    return [accesslog_pb2.AccessLog(name=FILE_ACCESS_LOG, typed_config=pb.typed(logger))]


def listener_access_logs(mesh: MeshConfig) -> list[accesslog_pb2.AccessLog]:
    """The same logger on a listener that binds (gateways, virtualOutbound, virtualInbound),
    for connections no filter chain takes (response flag NR), which no connection manager
    sees (istiod's setListenerAccessLog)."""
    logs = access_logs(mesh)
    for log in logs:
        log.filter.response_flag_filter.flags.append("NR")
    return logs


def request_id_extension() -> hcm_pb2.RequestIDExtension:
    """UUID request ids (x-request-id), also used for the trace sampling decision."""
    return hcm_pb2.RequestIDExtension(typed_config=pb.typed(uuid_pb2.UuidRequestIdConfig(
        use_request_id_for_trace_sampling=pb.boolean(True))))


def _zipkin_provider() -> http_tracer_pb2.Tracing.Http:
    return http_tracer_pb2.Tracing.Http(name=ZIPKIN_TRACER, typed_config=pb.typed(
        zipkin_pb2.ZipkinConfig(
            collector_cluster=ZIPKIN_CLUSTER, collector_endpoint=ZIPKIN_SPANS_PATH,
            collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
            trace_id_128bit=True, shared_span_context=pb.boolean(False))))


def tracing(mesh: MeshConfig) -> hcm_pb2.HttpConnectionManager.Tracing | None:
    """enableTracing: sample meshConfig's percentage of requests (client and overall 100%),
    reporting to the Zipkin collector when one is configured. B3 headers (x-b3-*) are what
    Envoy's Zipkin tracer propagates."""
    if not mesh.enable_tracing:
        return None
    out = hcm_pb2.HttpConnectionManager.Tracing(
        client_sampling=percent_pb2.Percent(value=100.0),
        random_sampling=percent_pb2.Percent(value=mesh.trace_sampling),
        overall_sampling=percent_pb2.Percent(value=100.0))
    if mesh.zipkin_address:
        out.provider.CopyFrom(_zipkin_provider())
    return out


def apply_observability(manager: hcm_pb2.HttpConnectionManager, mesh: MeshConfig) -> None:
    """Access logs, request ids and tracing on any HTTP connection manager."""
    manager.access_log.extend(access_logs(mesh))
    manager.request_id_extension.CopyFrom(request_id_extension())
    found = tracing(mesh)
    if found is not None:
        manager.tracing.CopyFrom(found)


def tracing_clusters(mesh: MeshConfig) -> list[cluster_pb2.Cluster]:
    """The Zipkin collector's cluster, when tracing reports to one."""
    if not (mesh.enable_tracing and mesh.zipkin_address):
        return []
    host, _, port = mesh.zipkin_address.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        kind = cluster_pb2.Cluster.STATIC
    except ValueError:
        kind = cluster_pb2.Cluster.STRICT_DNS
    endpoint = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address=host, port_value=int(port)))))
    return [cluster_pb2.Cluster(
        name=ZIPKIN_CLUSTER, type=kind, connect_timeout=pb.duration(mesh.connect_timeout_ns),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=ZIPKIN_CLUSTER,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])]))]
