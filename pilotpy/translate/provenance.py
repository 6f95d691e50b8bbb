"""Which Istio objects a proxy's config comes from.

Per proxy: the objects translation reads for it (istiod's SidecarScope config dependencies,
and a gateway's selected Gateways and the VirtualServices bound to their hosts), so a change
to one of them is known to reach that proxy class. Propagation status asks it.

Per message: the object an Envoy route or cluster was built from (the `istio` filter
metadata's `config` path, as istiod writes it), and which `http[i].match[j]` of a
VirtualService a route came from. `pilotpy explain` asks it.
"""

from __future__ import annotations

import re
from typing import Any

from pilotpy.model import hosts
from pilotpy.model.ingress import uses_ingress_semantics
from pilotpy.model.kinds import Kind
from pilotpy.model.labels import Empty, selects
from pilotpy.model.meta import Key
from pilotpy.model.virtualservice import VirtualService
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext, Service
from pilotpy.translate.gateway_tcp import GatewayServer
from pilotpy.translate.routes import route_match
from pilotpy.translate.sidecar_scope import SidecarScope, sidecar_scope

# `/apis/networking.istio.io/v1/namespaces/<ns>/<kind>/<name>` (routes.config_path,
# clusters._istio_metadata).
_CONFIG_PATH = re.compile(r"^/apis/networking\.istio\.io/[^/]+/namespaces/([^/]+)/"
                          r"(virtual-service|destination-rule)/([^/]+)$")
_KIND_OF_PATH = {"virtual-service": Kind.VIRTUAL_SERVICE,
                 "destination-rule": Kind.DESTINATION_RULE}


# -- per message -------------------------------------------------------------------------------


def config_ref(message: Any) -> Key | None:
    """The VirtualService or DestinationRule an Envoy route, cluster or filter chain names in
    its `metadata.filter_metadata["istio"]["config"]`; None when it names none."""
    if not message.HasField("metadata"):
        return None
    istio = message.metadata.filter_metadata.get("istio")
    if istio is None or "config" not in istio.fields:
        return None
    found = _CONFIG_PATH.match(istio.fields["config"].string_value)
    if found is None:
        return None
    namespace, kind, name = found.groups()
    return Key(_KIND_OF_PATH[kind], namespace, name)


def http_rule(vs: VirtualService, route: Any) -> tuple[int, int | None] | None:
    """`(i, j)`: the `http[i].match[j]` of `vs` an Envoy route was built from (`j` None for
    a rule without matches); None when no rule gives that route. Rules are told apart by
    the route's name and match, as translation writes them; the first fitting rule wins, as
    it would in Envoy."""
    path_separated = uses_ingress_semantics(vs.meta)
    for i, rule in enumerate(vs.http):
        matches = rule.match or (None,)
        for j, match in enumerate(matches):
            name = rule.name
            if match is not None and match.name:
                name = f"{name}.{match.name}"
            if name != route.name:
                continue
            if route_match(match, path_separated=path_separated) == route.match:
                return i, (j if rule.match else None)
    return None


# -- per proxy ---------------------------------------------------------------------------------


def config_dependencies(push: PushContext, view: ProxyView) -> frozenset[Key]:
    """Every stored object whose change may change this proxy class's config: the Gateways
    selecting a gateway proxy and the VirtualServices bound to their hosts, a sidecar's
    Sidecar resource and the `mesh` VirtualServices in its scope, and for both the Services
    and ServiceEntries it sees with their DestinationRules."""
    proxy = view.proxy
    out: set[Key] = set()
    if proxy.is_router:
        services = push.visible_services(view.namespace)
        out |= _gateway_dependencies(push, view)
    elif proxy.is_sidecar or proxy.is_grpc:
        # All a sidecar's come from its scope, which every class it applies to shares.
        scope = sidecar_scope(push, view)
        return push.memoized(("sidecar-dependencies", id(scope)),
                             lambda: _scope_dependencies(push, view.namespace, scope))
    else:
        return frozenset()
    for service in services:
        out |= _service_dependencies(push, view.namespace, service)
    return frozenset(out)


def _scope_dependencies(push: PushContext, namespace: str, scope: SidecarScope
                        ) -> frozenset[Key]:
    out = _mesh_virtual_services(scope)
    if scope.sidecar is not None:
        out.add(scope.sidecar.meta.key)
    for service in scope.services:
        if any(scope.port_visible(service, port) for port in service.ports):
            out |= _service_dependencies(push, namespace, service)
    return frozenset(out)


def _gateway_dependencies(push: PushContext, view: ProxyView) -> set[Key]:
    out: set[Key] = set()
    for gateway in push.gateways:
        if not selects(gateway.selector, view.labels, empty=Empty.ALL):
            continue
        out.add(gateway.meta.key)
        for server in gateway.servers:
            entry = GatewayServer(gateway, server)
            for vs in push.virtual_services.for_gateway(view.namespace, entry.gateway_name):
                if hosts.intersection(entry.hosts_for(vs.meta.namespace), vs.hosts):
                    out.add(vs.meta.key)
    return out


def _mesh_virtual_services(scope: SidecarScope) -> set[Key]:
    visible = (scope.virtual_services if scope.sidecar is None or not scope.sidecar.egress
               else [vs for vs in scope.virtual_services
                     if any(_host_allowed(scope, vs, host) for host in vs.hosts)])
    return {vs.meta.key for vs in visible}


def _host_allowed(scope: SidecarScope, vs: VirtualService, host: str) -> bool:
    assert scope.sidecar is not None
    ports = {listener.port for listener in scope.sidecar.egress}
    return any(scope.allows(vs.meta.namespace, host, port or 0) for port in ports)


def _service_dependencies(push: PushContext, namespace: str, service: Service) -> set[Key]:
    out = {service.origin}
    rule = push.destination_rule(namespace, service)
    if rule is not None:
        out.update(push.destination_rules.sources_of(rule))
    return out

