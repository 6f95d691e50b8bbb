"""DestinationRule and its TrafficPolicy (networking.istio.io), validated like istiod."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from pilotpy.model import hosts
from pilotpy.model.common import parse_export_to, parse_port_selector
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta, is_dns1123_label

MILLISECOND = 1_000_000
SIMPLE_LB = ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")
TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
H2_UPGRADE = ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")


@dataclass(frozen=True, slots=True)
class CookieAttribute:
    name: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class HTTPCookie:
    name: str
    path: str = ""
    ttl_ns: int | None = None
    attributes: tuple[CookieAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsistentHash:
    http_header_name: str = ""
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str = ""
    ring_hash_minimum_ring_size: int | None = None  # ringHash.minimumRingSize or legacy field
    maglev_table_size: int | None = None


@dataclass(frozen=True, slots=True)
class Warmup:
    duration_ns: int
    minimum_percent: float | None = None
    aggression: float | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    simple: str = ""
    consistent_hash: ConsistentHash | None = None
    warmup: Warmup | None = None


@dataclass(frozen=True, slots=True)
class TcpKeepalive:
    probes: int = 0
    time_ns: int | None = None
    interval_ns: int | None = None


@dataclass(frozen=True, slots=True)
class TCPSettings:
    max_connections: int = 0
    connect_timeout_ns: int | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration_ns: int | None = None
    idle_timeout_ns: int | None = None


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    http1_max_pending_requests: int = 0
    http2_max_requests: int = 0
    max_requests_per_connection: int = 0
    max_retries: int = 0
    idle_timeout_ns: int | None = None
    h2_upgrade_policy: str = ""
    use_client_protocol: bool = False
    max_concurrent_streams: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_errors: int = 0  # deprecated
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failures: int | None = None
    consecutive_gateway_errors: int | None = None
    consecutive_5xx_errors: int | None = None
    interval_ns: int | None = None
    base_ejection_time_ns: int | None = None
    max_ejection_percent: int = 0
    min_health_percent: int = 0


@dataclass(frozen=True, slots=True)
class ClientTLS:
    mode: str = "DISABLE"
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    credential_name: str = ""
    subject_alt_names: tuple[str, ...] = ()
    sni: str = ""
    insecure_skip_verify: bool | None = None
    ca_crl: str = ""


@dataclass(frozen=True, slots=True)
class PortTrafficPolicy:
    port: int
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class DestinationRule:
    meta: Meta
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Mapping[str, str] | None = None

    def subset(self, name: str) -> Subset | None:
        for subset in self.subsets:
            if subset.name == name:
                return subset
        return None


def _is_prime(x: int) -> bool:
    if 0 < x < 4:
        return True
    if x % 2 == 0:
        return False
    return all(x % factor for factor in range(3, math.isqrt(x) + 1, 2))


def _parse_load_balancer(f: Fields | None) -> LoadBalancer | None:
    if f is None:
        return None
    simple = f.enum("simple", SIMPLE_LB)
    consistent = None
    ch = f.child("consistentHash")
    if ch is not None:
        if simple:
            f.error("only one of simple or consistentHash may be set")
        keys = [k for k in ("httpHeaderName", "httpCookie", "useSourceIp",
                            "httpQueryParameterName") if ch.has(k)]
        if len(keys) > 1:
            ch.error(f"only one hash key may be set, got {', '.join(keys)}")
        cookie = None
        c = ch.child("httpCookie")
        if c is not None:
            attributes = []
            names: set[str] = set()
            for a in c.children("attributes"):
                name = a.string("name", required=True)
                if name in names:
                    a.error(f"duplicate cookie attribute name {name!r}", "name")
                names.add(name)
                attributes.append(CookieAttribute(name, a.string("value")))
                a.done()
            cookie = HTTPCookie(c.string("name", required=True), c.string("path"),
                                c.duration_ns("ttl"), tuple(attributes))
            c.done()
        ring = legacy_ring = maglev = None
        r = ch.child("ringHash")
        if r is not None:
            ring = r.integer("minimumRingSize", minimum=0)
            r.done()
        if ch.has("minimumRingSize"):
            ch.deprecated("deprecated, use ringHash.minimumRingSize", "minimumRingSize")
            legacy_ring = ch.integer("minimumRingSize", minimum=0)
        m = ch.child("maglev")
        if m is not None:
            maglev = m.integer("tableSize", minimum=0)
            if not maglev:
                m.error("tableSize must be set for maglev", "tableSize")
            elif maglev >= 5000011 or not _is_prime(maglev):
                m.error("tableSize must be a prime number below 5000011", "tableSize")
            m.done()
        if r is not None and m is not None:
            ch.error("only one of ringHash or maglev may be set")
        if legacy_ring and (r is not None or m is not None):
            ch.error("only one of minimumRingSize or maglev/ringHash may be set")
        consistent = ConsistentHash(
            http_header_name=ch.string("httpHeaderName"),
            http_cookie=cookie,
            use_source_ip=ch.boolean("useSourceIp"),
            http_query_parameter_name=ch.string("httpQueryParameterName"),
            ring_hash_minimum_ring_size=ring if ring is not None else legacy_ring,
            maglev_table_size=maglev,
        )
        ch.done()
    warmup = None
    duration = f.duration_ns("warmupDurationSecs", minimum_ns=MILLISECOND)
    w = f.child("warmup")
    if w is not None:
        d = w.duration_ns("duration", minimum_ns=MILLISECOND)
        if d is None and not w.has("duration"):
            w.error("required", "duration")
        # DoubleValues: plain numbers in Istio's JSON. Unset, istiod writes Envoy's defaults
        # (setWarmup); only the deprecated warmupDurationSecs leaves them out.
        min_pct = w.optional_number("minimumPercent")
        aggr = w.optional_number("aggression")
        if min_pct is not None and not 0 <= min_pct <= 100:
            w.error("minimumPercent must be between 0 and 100", "minimumPercent")
        if aggr is not None and aggr <= 0:
            w.error("aggression must be greater than 0", "aggression")
        if d is not None:
            warmup = Warmup(d, 10.0 if min_pct is None else min_pct,
                            1.0 if aggr is None else aggr)
        w.done()
    elif duration is not None:
        warmup = Warmup(duration)
    f.unsupported("localityLbSetting", "zoneAwareLbSetting")
    f.done()
    return LoadBalancer(simple, consistent, warmup)


def _parse_connection_pool(f: Fields | None) -> ConnectionPool | None:
    if f is None:
        return None
    tcp = http = None
    t = f.child("tcp")
    if t is not None:
        keepalive = None
        k = t.child("tcpKeepalive")
        if k is not None:
            keepalive = TcpKeepalive(k.integer("probes", minimum=0),
                                     k.duration_ns("time", minimum_ns=MILLISECOND),
                                     k.duration_ns("interval", minimum_ns=MILLISECOND))
            k.done()
        tcp = TCPSettings(
            max_connections=t.integer("maxConnections", minimum=0),
            connect_timeout_ns=t.duration_ns("connectTimeout", minimum_ns=MILLISECOND),
            tcp_keepalive=keepalive,
            max_connection_duration_ns=t.duration_ns("maxConnectionDuration",
                                                     minimum_ns=MILLISECOND),
            idle_timeout_ns=t.duration_ns("idleTimeout"),
        )
        t.done()
    h = f.child("http")
    if h is not None:
        http = HTTPSettings(
            http1_max_pending_requests=h.integer("http1MaxPendingRequests", minimum=0),
            http2_max_requests=h.integer("http2MaxRequests", minimum=0),
            max_requests_per_connection=h.integer("maxRequestsPerConnection", minimum=0),
            max_retries=h.integer("maxRetries", minimum=0),
            idle_timeout_ns=h.duration_ns("idleTimeout", minimum_ns=MILLISECOND),
            h2_upgrade_policy=h.enum("h2UpgradePolicy", H2_UPGRADE),
            use_client_protocol=h.boolean("useClientProtocol"),
            max_concurrent_streams=h.integer("maxConcurrentStreams", minimum=0),
        )
        if http.h2_upgrade_policy == "UPGRADE" and http.use_client_protocol:
            h.error("useClientProtocol must not be true when h2UpgradePolicy is UPGRADE")
        h.unsupported("http2KeepAlive")
        h.done()
    if t is None and h is None:
        f.error("connection pool must have at least one of tcp or http")
    f.done()
    return ConnectionPool(tcp, http)


def _optional_uint32(f: Fields, key: str) -> int | None:
    """google.protobuf.UInt32Value written either bare (`5`) or as `{value: 5}`."""
    if isinstance(f.raw(key), dict):
        inner = f.child(key)
        if inner is None:
            return None
        value = inner.integer("value", minimum=0)
        inner.done()
        return value
    return f.optional_integer(key, minimum=0)


def _parse_outlier_detection(f: Fields | None) -> OutlierDetection | None:
    if f is None:
        return None
    consecutive = f.integer("consecutiveErrors", minimum=0)
    if consecutive:
        f.deprecated("deprecated, use consecutiveGatewayErrors or consecutive5xxErrors",
               "consecutiveErrors")
    split = f.boolean("splitExternalLocalOriginErrors")
    local = _optional_uint32(f, "consecutiveLocalOriginFailures")
    if local and not split:
        f.error("consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true",
                "consecutiveLocalOriginFailures")
    outlier = OutlierDetection(
        consecutive_errors=consecutive,
        split_external_local_origin_errors=split,
        consecutive_local_origin_failures=local,
        consecutive_gateway_errors=_optional_uint32(f, "consecutiveGatewayErrors"),
        consecutive_5xx_errors=_optional_uint32(f, "consecutive5xxErrors"),
        interval_ns=f.duration_ns("interval", minimum_ns=MILLISECOND),
        base_ejection_time_ns=f.duration_ns("baseEjectionTime", minimum_ns=MILLISECOND),
        max_ejection_percent=f.integer("maxEjectionPercent", minimum=0, maximum=100),
        min_health_percent=f.integer("minHealthPercent", minimum=0, maximum=100),
    )
    f.unsupported("outlierDetectionHttpErrorCodes")
    f.done()
    return outlier


def _parse_tls(f: Fields | None) -> ClientTLS | None:
    if f is None:
        return None
    skip = f.raw("insecureSkipVerify")
    if isinstance(skip, dict):
        inner = f.child("insecureSkipVerify")
        insecure = inner.optional_boolean("value") if inner else None
        if inner:
            inner.done()
    else:
        insecure = f.optional_boolean("insecureSkipVerify")
    tls = ClientTLS(
        mode=f.enum("mode", TLS_MODES, default="DISABLE") or "DISABLE",
        client_certificate=f.string("clientCertificate"),
        private_key=f.string("privateKey"),
        ca_certificates=f.string("caCertificates"),
        credential_name=f.string("credentialName"),
        subject_alt_names=f.string_list("subjectAltNames"),
        sni=f.string("sni"),
        insecure_skip_verify=insecure,
        ca_crl=f.string("caCrl"),
    )
    _validate_tls(f, tls)
    f.done()
    return tls


def _is_path(value: str) -> bool:
    """The shape of a file path on the proxy: Envoy reads the file, pilotpy never does."""
    return bool(value) and "\x00" not in value and value == value.strip()


def _validate_tls(f: Fields, tls: ClientTLS) -> None:
    """istiod's ValidateClientTLSSettings."""
    insecure = bool(tls.insecure_skip_verify)
    if insecure and tls.mode in ("SIMPLE", "MUTUAL") and (
            tls.ca_certificates or tls.subject_alt_names
            or (tls.mode == "SIMPLE" and tls.credential_name)):
        f.error("cannot specify caCertificates, credentialName or subjectAltNames when "
                "insecureSkipVerify is true", "insecureSkipVerify")
    if tls.mode in ("SIMPLE", "MUTUAL") and tls.credential_name:
        if tls.client_certificate or tls.private_key or tls.ca_certificates or tls.ca_crl:
            f.error("cannot specify clientCertificate, privateKey, caCertificates or caCrl "
                    "when credentialName is set", "credentialName")
        return
    if tls.mode == "MUTUAL":
        if not tls.client_certificate:
            f.error("client certificate required for mutual tls", "clientCertificate")
        if not tls.private_key:
            f.error("private key required for mutual tls", "privateKey")
    for key, value in (("clientCertificate", tls.client_certificate),
                       ("privateKey", tls.private_key), ("caCertificates", tls.ca_certificates),
                       ("caCrl", tls.ca_crl)):
        if value and not _is_path(value):
            f.error(f"{value!r} is not a file path on the proxy", key)


def _parse_policy_parts(f: Fields) -> tuple[LoadBalancer | None, ConnectionPool | None,
                                              OutlierDetection | None, ClientTLS | None]:
    outlier = _parse_outlier_detection(f.child("outlierDetection"))
    return (
        _parse_load_balancer(f.child("loadBalancer")),
        _parse_connection_pool(f.child("connectionPool")),
        outlier,
        _parse_tls(f.child("tls")),
    )


def parse_traffic_policy(f: Fields | None) -> TrafficPolicy | None:
    if f is None:
        return None
    lb, pool, outlier, tls = _parse_policy_parts(f)
    port_level = []
    seen_ports: set[int] = set()
    for item in f.children("portLevelSettings"):
        port = parse_port_selector(item.child("port"))
        if port is None:
            item.error("required", "port")
        plb, ppool, poutlier, ptls = _parse_policy_parts(item)
        if not (plb or ppool or poutlier or ptls):
            item.error("port traffic policy must have at least one field")
        item.done()
        if port is not None:
            if port in seen_ports:
                item.error(f"duplicate port {port}", "port")
            seen_ports.add(port)
            port_level.append(PortTrafficPolicy(port, plb, ppool, poutlier, ptls))
    f.unsupported("tunnel", "proxyProtocol", "retryBudget")
    f.done()
    policy = TrafficPolicy(lb, pool, outlier, tls, tuple(port_level))
    if policy == TrafficPolicy() and not f.has("tunnel") and not f.has("proxyProtocol") and not (
        f.has("retryBudget")
    ):
        f.error("traffic policy must have at least one field")
    return policy


def parse_destination_rule(meta: Meta, spec: Fields) -> DestinationRule:
    host = spec.string("host", required=True)
    if host:
        problem = hosts.validate_hostname(host, allow_wildcard=True)
        if problem:
            spec.error(problem, "host")
    policy = parse_traffic_policy(spec.child("trafficPolicy"))
    subsets = []
    names: set[str] = set()
    for item in spec.children("subsets"):
        name = item.string("name", required=True)
        if name and not is_dns1123_label(name):
            item.error(f"subset name {name!r} is not a DNS-1123 label", "name")
        if name in names:
            item.error(f"duplicate subset name {name!r}", "name")
        names.add(name)
        subsets.append(Subset(name, item.string_map("labels"),
                              parse_traffic_policy(item.child("trafficPolicy"))))
        item.done()
    selector = None
    ws = spec.child("workloadSelector")
    if ws is not None:
        selector = ws.string_map("matchLabels")
        ws.done()
        spec.unsupported("workloadSelector", reason="DestinationRules scoped to workloads are "
                         "not translated yet", consequence="the whole rule is ignored")
    export_to = parse_export_to(spec, meta.namespace)
    spec.done()
    return DestinationRule(meta, host, policy, tuple(subsets), export_to, selector)
