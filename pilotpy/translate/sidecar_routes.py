"""Outbound routes of sidecars (istiod's httproute.go buildSidecarOutboundHTTPRouteConfig):
route `<port>` holds one virtual host per visible service with an HTTP port of that number,
reachable by every name a client may use, then the catch-all `allow_any` (PassthroughCluster)
or `block_all` (502) virtual host. A sniffed port's private route `<fqdn>:<port>` holds that
service's virtual host alone, for any Host."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilotpy.model.common import Destination
from pilotpy.model.kinds import Kind
from pilotpy.model.virtualservice import VirtualService
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext, Resolution, Service
from pilotpy.translate import pb
from pilotpy.translate.names import (
    DEFAULT_ROUTE_NAME,
    MESH_GATEWAY,
    PASSTHROUGH_CLUSTER,
    virtual_host_name,
)
from pilotpy.translate.policy import consistent_hash_for
from pilotpy.translate.retry import set_retry_policy
from pilotpy.translate.routes import (
    MAX_DIRECT_RESPONSE_BODY,
    RouteOptions,
    build_http_routes,
    destination_cluster,
    hash_policy,
    sorted_routes,
)
from pilotpy.translate.sidecar_scope import SidecarScope, VirtualServiceOwners

ALLOW_ANY = "allow_any"
BLOCK_ALL = "block_all"
# A VirtualService host that names no registry service on this port still gets a virtual host
# on it (istiod's special case: plain HTTP to an external name).
UNREGISTERED_HOSTS_PORT = 80


def kubernetes_short_names(hostname: str, proxy_domain: str) -> list[str]:
    """`name`, `name.ns.svc`, `name.ns` in the proxy's namespace; `name.ns`, `name.ns.svc`
    from other namespaces (istiod's generateAltVirtualHostsForKubernetesService)."""
    proxy_namespace = proxy_domain.split(".svc.", 1)[0]
    svc_at = hostname.find(".svc.")
    dot = hostname.find(".")
    if svc_at <= 0 or dot + 1 > svc_at:
        return []
    name, name_ns = hostname[:dot], hostname[:svc_at]
    if hostname[dot + 1:svc_at] == proxy_namespace:
        return [name, f"{name_ns}.svc", name_ns]
    return [name_ns, f"{name_ns}.svc"]


def host_names(hostname: str, proxy_domain: str) -> list[str]:
    """The names a client may use for `hostname`: itself, absolute (with a trailing dot),
    and the short names its DNS search path allows."""
    names = [hostname, hostname + "."]
    if ".svc." in proxy_domain:
        suffix = proxy_domain.split(".svc.", 1)[1]
        if hostname.endswith(".svc." + suffix):
            names += kubernetes_short_names(hostname, proxy_domain)
    return names


def virtual_host_domains(service: Service, proxy_domain: str,
                         aliases: Iterable[Service] = ()) -> list[str]:
    """Every Host a client may send for `service`: its names (`host_names`) and those of the
    ExternalName `aliases` resolving to it, the VIPs; `*.` forms too for headless Kubernetes
    services (pods by name). No `:port` forms: the route configuration ignores the port in
    Host matching (istiod's SidecarIgnorePort)."""
    domains = host_names(service.hostname, proxy_domain)
    for alias in aliases:
        domains += host_names(alias.hostname, proxy_domain)
    if service.resolution is Resolution.PASSTHROUGH and service.origin.kind == Kind.SERVICE:
        domains += ["*." + d for d in domains]
    # A CIDR is no Host anybody sends.
    return domains + [a for a in service.addresses if a != "0.0.0.0" and "/" not in a]


def default_route(push: PushContext, view: ProxyView, service: Service, port: int) -> rc.Route:
    """The route of a service no VirtualService covers: everything to its cluster."""
    cluster = destination_cluster(Destination(service.hostname, "", port), service, port)
    route = rc.Route(name=DEFAULT_ROUTE_NAME, match=rc.RouteMatch(prefix="/"))
    action = route.route
    action.cluster = cluster
    action.timeout.CopyFrom(pb.seconds(0))
    action.max_grpc_timeout.CopyFrom(pb.seconds(0))  # as istiod; see routes.py on why
    consistent = None
    rule = push.destination_rule(view.namespace, service)
    if rule is not None:
        consistent = consistent_hash_for(rule, "", port)
    # istiod's BuildDefaultHTTPOutboundRoute: the mesh's retry policy as if there were no
    # consistent hash, so the previous-hosts predicate stays even when the route hashes.
    set_retry_policy(action, push.mesh.default_http_retry_policy, consistent_hash=False)
    if consistent is not None:
        found = hash_policy(consistent)
        if found is not None:
            action.hash_policy.append(found)
    route.decorator.operation = f"{service.hostname}:{port}/*"
    return route


def catch_all_virtual_host(scope: SidecarScope) -> rc.VirtualHost:
    if scope.registry_only:
        route = rc.Route(name=BLOCK_ALL, match=rc.RouteMatch(prefix="/"))
        route.direct_response.status = 502
        return rc.VirtualHost(name=BLOCK_ALL, domains=["*"], routes=[route],
                              include_request_attempt_count=True)
    route = rc.Route(name=ALLOW_ANY, match=rc.RouteMatch(prefix="/"))
    route.route.cluster = PASSTHROUGH_CLUSTER
    route.route.timeout.CopyFrom(pb.seconds(0))
    route.route.max_grpc_timeout.CopyFrom(pb.seconds(0))
    return rc.VirtualHost(name=ALLOW_ANY, domains=["*"], routes=[route],
                          include_request_attempt_count=True)


# A virtual host's bytes are its fields in number order: name and domains (1, 2), the routes
# (3), then include_request_attempt_count (14). Routes are serialized once per
# VirtualService and shared by all its virtual hosts; with 10k services that is 20k virtual
# hosts, and copying route messages into each cost more than translating them.
_ATTEMPT_COUNT = rc.VirtualHost(include_request_attempt_count=True).SerializeToString()


def _serialized_routes(routes: list[rc.Route]) -> bytes:
    """`routes` as VirtualHost.routes entries."""
    return b"".join(pb.entry(rc.VirtualHost.ROUTES_FIELD_NUMBER,
                             r.SerializeToString(deterministic=True)) for r in routes)


def _serialized_virtual_host(name: str, domains: list[str], routes: bytes) -> list[bytes]:
    """A RouteConfiguration.virtual_hosts entry holding the pre-serialized `routes` (shared,
    not copied)."""
    head = rc.VirtualHost(name=name, domains=domains).SerializeToString()
    return pb.entry_parts(route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER, head,
                          [routes, _ATTEMPT_COUNT])


def _reads_source_labels(vs: VirtualService) -> bool:
    return any(m.source_labels for route in vs.http for m in route.match)


class _Routes:
    """The routes of one port's virtual hosts: a `mesh` VirtualService's, else the default,
    serialized (see _serialized_routes).

    A VirtualService's routes depend on the port, the proxy's namespace and, only when a
    match names `sourceLabels`, its labels: they are built once per push context for all
    classes that share those (the push context's memo), like a service's default route."""

    __slots__ = ("candidates", "opts", "owners", "port", "push", "view")

    def __init__(self, push: PushContext, view: ProxyView, scope: SidecarScope,
                 port: int) -> None:
        self.push, self.view, self.port = push, view, port
        self.candidates = scope.virtual_services_on(port)
        self.owners = VirtualServiceOwners(self.candidates)
        self.opts = RouteOptions(push, view, port, frozenset({MESH_GATEWAY}))

    def of(self, vs: VirtualService) -> bytes:
        """The VirtualService's routes for this port, in virtual-host order (catch-alls
        last); empty when none applies. The context holds `vs` for its lifetime, so its id
        names it in the memo."""
        view = self.view
        labels = tuple(sorted(view.labels.items())) if _reads_source_labels(vs) else None
        return self.push.memoized(
            ("sidecar-vs-routes", id(vs), self.port, view.namespace, labels),
            lambda: _serialized_routes(sorted_routes(build_http_routes(vs, self.opts))))

    def for_service(self, service: Service) -> bytes:
        vs = self.owners.owner(service.hostname)
        routes = self.of(vs) if vs is not None else b""
        return routes or self.push.memoized(
            ("sidecar-default-route", id(service), self.port, self.view.namespace),
            lambda: _serialized_routes(
                [default_route(self.push, self.view, service, self.port)]))


# The options of every sidecar route configuration (fields 7, 11, 14).
_OPTIONS = route_pb2.RouteConfiguration(
    validate_clusters=pb.boolean(False),
    ignore_port_in_host_matching=True,
    max_direct_response_body_size_bytes=pb.uint32(MAX_DIRECT_RESPONSE_BODY),
).SerializeToString(deterministic=True)


def _route_configuration(name: str, virtual_hosts: list[list[bytes]]) -> pb.Serialized:
    """A route configuration from serialized virtual hosts: its name (field 1), the virtual
    hosts (2), then its options, as protobuf would write the whole. It stays bytes: parsing
    it into a message only to serialize it again for xDS costs as much as writing it."""
    head = route_pb2.RouteConfiguration(name=name).SerializeToString()
    return pb.Serialized(name, (head, *(p for vhost in virtual_hosts for p in vhost),
                                _OPTIONS))


def port_route_configuration(push: PushContext, view: ProxyView, scope: SidecarScope,
                             port: int, services: list[Service]) -> pb.Serialized:
    """Route `<port>` for the visible `services` with an HTTP port `port`, oldest first. A
    domain is served by the first virtual host claiming it (the oldest service); Envoy rejects
    a route configuration naming one domain twice."""
    routes = _Routes(push, view, scope, port)
    claimed: set[str] = set()
    vhosts: list[tuple[str, list[str], bytes]] = []  # (name, domains, serialized routes)

    def add(name: str, domains: list[str], built: bytes) -> None:
        fresh = [d for d in dict.fromkeys(domains) if d not in claimed]
        if fresh and built:
            claimed.update(fresh)
            vhosts.append((name, fresh, built))

    for service in services:
        aliases = [a for a in push.services.aliases_of(service.hostname)
                   if a.visible_to(view.namespace) and scope.allows(a.namespace, a.hostname,
                                                                    port)]
        add(virtual_host_name(service.hostname, port),
            virtual_host_domains(service, view.proxy.dns_domain, aliases),
            routes.for_service(service))
    if port == UNREGISTERED_HOSTS_PORT:
        known = {s.hostname for s in services}
        for vs in routes.candidates:
            for host in vs.hosts:
                # Skipped only when it names a service with this port: a VirtualService for
                # `ratings` (port 9080) still gets a virtual host here, as in istiod.
                if host in known or any(s.port(port) is not None
                                        for s in push.services.matching(host)):
                    continue
                add(virtual_host_name(host, port), [host], routes.of(vs))
    vhosts.sort(key=lambda v: v[0])
    serialized = [_serialized_virtual_host(*v) for v in vhosts]
    serialized.append([pb.entry(route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER,
                                catch_all_virtual_host(scope).SerializeToString(
                                    deterministic=True))])
    return _route_configuration(str(port), serialized)


def sniffed_route_configuration(push: PushContext, view: ProxyView, scope: SidecarScope,
                                service: Service, port: int) -> pb.Serialized:
    """Route `<fqdn>:<port>` of a port whose protocol is detected: any Host reaches it."""
    name = virtual_host_name(service.hostname, port)
    routes = _Routes(push, view, scope, port).for_service(service)
    return _route_configuration(name, [_serialized_virtual_host(name, ["*"], routes)])
