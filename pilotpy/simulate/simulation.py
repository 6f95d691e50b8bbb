"""A call through one proxy's config, step by step, as Envoy would take it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_http_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as rbac_network_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotpy.simulate import listeners as lst
from pilotpy.simulate import rbac, routing, upstream
from pilotpy.simulate.call import Call, Mode, Protocol
from pilotpy.simulate.policy import route_policy
from pilotpy.simulate.result import (
    DirectResponse,
    FilterChainRef,
    Matched,
    Outcome,
    Redirect,
    Result,
)


def _trusted_client(call: Call, manager: Any) -> str:
    """The client address the connection manager settles on: the connection's own with
    `use_remote_address` (or an x-forwarded-for entry `xff_num_trusted_hops` from the right),
    else the last x-forwarded-for entry (Envoy trusts it on internal hops)."""
    hops = int(manager.xff_num_trusted_hops)
    forwarded = [a.strip() for a in call.headers.get("x-forwarded-for", "").split(",")
                 if a.strip()]
    if manager.use_remote_address.value:
        return forwarded[-hops] if hops and len(forwarded) >= hops else call.source
    skip = hops + 1
    return forwarded[-skip] if len(forwarded) >= skip else call.source


HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


@dataclass(slots=True)
class _Trace:
    """The result being built: the fields reached so far and the steps in words."""

    call: Call
    steps: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    matched: dict[str, Any] = field(default_factory=dict)
    # Dynamic metadata filters wrote for the call: filter name -> key -> value.
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    def step(self, text: str) -> None:
        self.steps.append(text)

    def done(self, outcome: Outcome, reason: str = "", **fields: Any) -> Result:
        self.fields.update(fields)
        return Result(call=self.call, outcome=outcome, reason=reason, steps=tuple(self.steps),
                      matched=Matched(**self.matched), **self.fields)


class Simulation:
    """One proxy's config, as the listeners, route configurations, clusters and
    ClusterLoadAssignments it was sent; `run` takes a call through it."""

    def __init__(self, listeners: Iterable[Any], route_configurations: Iterable[Any] = (),
                 clusters: Iterable[Any] = (), load_assignments: Iterable[Any] = ()) -> None:
        self.listeners = list(listeners)
        self.route_configurations = {r.name: r for r in route_configurations}
        self.clusters = {c.name: c for c in clusters}
        self.load_assignments = {a.cluster_name: a for a in load_assignments}

    @property
    def is_sidecar(self) -> bool:
        """Whether the config captures outbound traffic (a `use_original_dst` listener)."""
        return self._capture(Mode.OUTBOUND) is not None

    def _capture(self, mode: Mode) -> Any | None:
        for listener in self.listeners:
            if not lst.binds(listener):
                continue
            if mode is Mode.OUTBOUND and listener.use_original_dst.value:
                return listener
            if mode is Mode.INBOUND and not listener.use_original_dst.value and (
                    lst.has_listener_filter(listener, lst.ORIGINAL_DST)):
                return listener
        return None

    def run(self, call: Call) -> Result:
        mode = call.mode or (Mode.OUTBOUND if self.is_sidecar else Mode.GATEWAY)
        trace = _Trace(replace(call, mode=mode))
        try:
            return self._run(trace, mode)
        except routing.UnsupportedConfig as err:
            return trace.done(Outcome.UNSUPPORTED, str(err))

    # -- listener and filter chain -----------------------------------------------------------

    def _run(self, trace: _Trace, mode: Mode) -> Result:
        call = trace.call
        listener = self._listener(trace, mode)
        if listener is None:
            return trace.done(Outcome.NO_LISTENER, trace.steps.pop())
        detected = lst.inspect(listener, call, call.port)
        for note in detected.notes:
            trace.step(note)
        choice = lst.select_filter_chain(listener, call.address, call.port, detected)
        if choice.chain is None:
            outcome = (Outcome.OVERLAPPING_FILTER_CHAINS if choice.overlapping
                       else Outcome.NO_FILTER_CHAIN)
            return trace.done(outcome, choice.why + ("" if choice.overlapping
                                                     else ": Envoy closes the connection"))
        chain = choice.chain
        ref = FilterChainRef(choice.index, str(chain.name))
        trace.fields["filter_chain"] = ref
        trace.matched["filter_chain"] = chain
        trace.step(f"filter chain {ref.label}: {choice.why}")
        terminates_tls = chain.HasField("transport_socket")
        if terminates_tls and not call.tls:
            return trace.done(Outcome.TLS_ERROR, f"filter chain {ref.label} terminates TLS but "
                                                 "the client speaks plaintext")
        if terminates_tls:
            trace.step("TLS terminated")
        for network_filter in chain.filters:
            kind = lst.type_name(network_filter.typed_config)
            if kind in (rbac.NETWORK_RBAC, rbac.NETWORK_EXT_AUTHZ):
                stopped = self._authorize(trace, network_filter.typed_config, terminates_tls,
                                          None)
                if stopped is not None:
                    return stopped
                continue
            if kind == HCM:
                manager = hcm_pb2.HttpConnectionManager()
                network_filter.typed_config.Unpack(manager)
                return self._http(trace, manager, terminates_tls)
            if kind == TCP_PROXY:
                proxy = tcp_proxy_pb2.TcpProxy()
                network_filter.typed_config.Unpack(proxy)
                return self._tcp(trace, proxy)
        return trace.done(Outcome.UNSUPPORTED, f"filter chain {ref.label} ends in neither an "
                                               "HTTP connection manager nor tcp_proxy")

    def _listener(self, trace: _Trace, mode: Mode) -> Any | None:
        call = trace.call
        if mode is Mode.GATEWAY:
            found = lst.find_bound(self.listeners, call.address, call.port)
            if found is None:
                trace.step(f"no listener is bound to {call.address}:{call.port}: connection "
                           "refused")
                return None
            trace.step(f"listener {found.name}")
            trace.fields["listener"] = str(found.name)
            trace.matched["listener"] = found
            return found
        capture = self._capture(mode)
        if capture is None:
            what = "use_original_dst" if mode is Mode.OUTBOUND else "original_dst"
            trace.step(f"no bound listener with {what} captures {mode.value} traffic: this is "
                       "not a sidecar's config")
            return None
        found = capture
        if mode is Mode.OUTBOUND:
            target = lst.find_for_original_destination(self.listeners, call.address, call.port)
            if target is not None and target is not capture:
                trace.fields["handed_off_from"] = str(capture.name)
                trace.step(f"listener {capture.name} hands the connection to {target.name} "
                           f"(original destination {call.address}:{call.port})")
                found = target
            else:
                trace.step(f"listener {capture.name} keeps the connection: no listener for "
                           f"{call.address}:{call.port}")
        else:
            trace.step(f"listener {capture.name} (original destination "
                       f"{call.address}:{call.port})")
        trace.fields["listener"] = str(found.name)
        trace.matched["listener"] = found
        return found

    # -- TCP ---------------------------------------------------------------------------------

    def _tcp(self, trace: _Trace, proxy: Any) -> Result:
        which = proxy.WhichOneof("cluster_specifier")
        if which == "cluster":
            trace.step(f"tcp_proxy to {proxy.cluster}")
            return self._forward(trace, [(str(proxy.cluster), None)])
        if which == "weighted_clusters":
            weighted = [(str(c.name), int(c.weight)) for c in proxy.weighted_clusters.clusters]
            trace.step("tcp_proxy to " + ", ".join(f"{n} ({w})" for n, w in weighted))
            return self._forward(trace, weighted)
        return trace.done(Outcome.UNSUPPORTED, f"tcp_proxy {which} is not modelled")

    # -- HTTP --------------------------------------------------------------------------------

    def _http(self, trace: _Trace, manager: Any, terminates_tls: bool) -> Result:
        call = trace.call
        if call.tls and not terminates_tls:
            return trace.done(Outcome.PROTOCOL_ERROR, "TLS bytes reach an HTTP connection "
                                                      "manager that does not terminate TLS")
        if call.protocol is Protocol.TCP:
            return trace.done(Outcome.PROTOCOL_ERROR, "opaque bytes reach an HTTP connection "
                                                      "manager: the codec rejects them")
        if manager.HasField("route_config"):
            configuration = manager.route_config
            trace.step(f"inline route configuration {configuration.name}")
        else:
            name = str(manager.rds.route_config_name)
            trace.fields["route_configuration"] = name
            configuration = self.route_configurations.get(name)
            if configuration is None:
                return trace.done(Outcome.NO_ROUTE_CONFIGURATION,
                                  f"route configuration {name} was never served: the listener "
                                  "stays warming")
            trace.step(f"route configuration {name}")
        trace.fields["route_configuration"] = str(configuration.name)
        trace.matched["route_configuration"] = configuration
        # Authorization runs before the router, which answers 404s and redirects.
        for http_filter in manager.http_filters:
            if lst.type_name(http_filter.typed_config) in (rbac.HTTP_RBAC, rbac.HTTP_EXT_AUTHZ):
                stopped = self._authorize(trace, http_filter.typed_config, terminates_tls,
                                          manager)
                if stopped is not None:
                    return stopped
        vhost = routing.find_virtual_host(configuration, call.host)
        if vhost is None:
            return trace.done(Outcome.NO_VIRTUAL_HOST, f"no virtual host of "
                                                       f"{configuration.name} answers to Host "
                                                       f"{call.host or '(none)'}: 404 NR")
        trace.fields["virtual_host"] = str(vhost.name)
        trace.matched["virtual_host"] = vhost
        trace.step(f"virtual host {vhost.name} for Host {call.host or '(none)'}")
        scheme = "https" if terminates_tls else "http"
        forwarded_proto = scheme
        if not manager.use_remote_address.value:
            # An edge proxy overwrites x-forwarded-proto; others keep what the client sent.
            forwarded_proto = call.headers.get("x-forwarded-proto", scheme)
        require = int(vhost.require_tls)
        internal = call.headers.get("x-envoy-internal") == "true"
        if forwarded_proto != "https" and (require == 2 or (require == 1 and not internal)):
            location = f"https://{call.host}{call.path}"
            return trace.done(Outcome.TLS_REDIRECT, f"virtual host {vhost.name} requires TLS: "
                                                    f"301 to {location}",
                              redirect=Redirect(301, location))
        request = routing.Request.of(call, scheme)
        found = routing.find_route(vhost, request)
        if found is None:
            return trace.done(Outcome.NO_ROUTE, f"no route of virtual host {vhost.name} "
                                                f"matches {call.method} {call.path}: 404 NR")
        index, route = found
        policy = route_policy(route)
        trace.fields.update(route=str(route.name), route_index=index, policy=policy)
        trace.matched["route"] = route
        trace.step(f"route {route.name or '(unnamed)'} (#{index}) for {request.method} "
                   f"{call.path}")
        if policy.describe():
            trace.step("route policy: " + "; ".join(policy.describe()))
        action = route.WhichOneof("action")
        if action == "redirect":
            status, location = routing.redirect_location(route, request)
            return trace.done(Outcome.REDIRECT, f"{status} to {location}",
                              redirect=Redirect(status, location))
        if action == "direct_response":
            body = route.direct_response.body
            text = (body.inline_string or body.inline_bytes.decode("utf-8", "replace")
                    if route.direct_response.HasField("body") else "")
            status = int(route.direct_response.status)
            return trace.done(Outcome.DIRECT_RESPONSE, f"Envoy answers {status} itself",
                              direct_response=DirectResponse(status, text))
        if action != "route":
            return trace.done(Outcome.UNSUPPORTED, f"route action {action} is not modelled")
        return self._route_action(trace, route, request)

    def _authorize(self, trace: _Trace, typed_config: Any, terminates_tls: bool,
                   manager: Any | None) -> Result | None:
        """Where one authorization filter (of the chain, or of `manager` for HTTP) stops the
        call, else None. An RBAC filter refuses or lets through, and records the shadow
        policy its shadow rules match (Envoy's dynamic metadata); an ext_authz filter
        enabled by that record asks an external service, which is not modelled."""
        call = trace.call
        kind = lst.type_name(typed_config)
        rbac_filter = rbac.HTTP_RBAC_NAME if manager is not None else rbac.NETWORK_RBAC_NAME
        if kind in (rbac.HTTP_EXT_AUTHZ, rbac.NETWORK_EXT_AUTHZ):
            enabled = rbac.ext_authz_enabled(typed_config, trace.metadata)
            if not enabled:
                trace.step("ext_authz not enabled for this request")
                return None
            return trace.done(Outcome.UNSUPPORTED, "the ext_authz filter asks an external "
                                                   "authorization service: not modelled")
        config = (rbac_http_pb2.RBAC() if manager is not None else rbac_network_pb2.RBAC())
        typed_config.Unpack(config)
        request = routing.Request.of(call, "https" if terminates_tls else "http")
        subject = rbac.Subject(
            destination_address=call.address, destination_port=call.port,
            source_address=call.source,
            remote_address=_trusted_client(call, manager) if manager is not None
            else call.source,
            server_name=call.server_name,
            peer_principal=call.peer_principal if terminates_tls else None,
            request=request if manager is not None else None,
            jwt_payload=call.jwt_payload if manager is not None else None)
        trace.metadata.setdefault(rbac_filter, {}).update(rbac.shadow_metadata(config, subject))
        why = rbac.refusal(config, subject)
        if why is None:
            trace.step("RBAC lets it through" if config.HasField("rules")
                       else "RBAC shadow rules only: not enforced")
            return None
        return trace.done(Outcome.FORBIDDEN, f"RBAC: {why}: " + (
            "403 RBAC: access denied" if manager is not None else "connection closed"))

    def _route_action(self, trace: _Trace, route: Any, request: routing.Request) -> Result:
        action = route.route
        which = action.WhichOneof("cluster_specifier")
        if which == "cluster":
            targets: list[tuple[str, int | None]] = [(str(action.cluster), None)]
        elif which == "weighted_clusters":
            targets = [(str(c.name), int(c.weight.value))
                       for c in action.weighted_clusters.clusters]
        else:
            return trace.done(Outcome.UNSUPPORTED, f"cluster specifier {which} is not modelled")
        host = request.authority
        if action.host_rewrite_literal:
            host = action.host_rewrite_literal
        elif len(targets) > 1:
            rewrites = {c.host_rewrite_literal for c in action.weighted_clusters.clusters}
            host = rewrites.pop() if len(rewrites) == 1 and "" not in rewrites else host
        path = routing.rewritten_path(route, request, action.prefix_rewrite,
                                      action.regex_rewrite if action.HasField("regex_rewrite")
                                      else None)
        trace.fields.update(upstream_host=host, upstream_path=path,
                            mirrors=tuple(str(m.cluster) for m in action.request_mirror_policies))
        if path != request.path or host != request.authority:
            trace.step(f"rewritten to Host {host}, path {path}")
        return self._forward(trace, targets)

    # -- upstream ----------------------------------------------------------------------------

    def _forward(self, trace: _Trace, targets: Sequence[tuple[str, int | None]]) -> Result:
        call = trace.call
        destinations = tuple(
            upstream.destination(name, weight, self.clusters, self.load_assignments,
                                 (call.address, call.port))
            for name, weight in targets)
        trace.fields["destinations"] = destinations
        if len(destinations) == 1:
            only = destinations[0]
            if not only.found:
                return trace.done(Outcome.NO_CLUSTER, f"cluster {only.cluster} is not in CDS"
                                  + (": 503 NC" if call.is_http else ": connection closed"))
            trace.step(f"cluster {only.cluster} ({only.discovery})")
            if not only.endpoints:
                return trace.done(Outcome.NO_HEALTHY_UPSTREAM, f"cluster {only.cluster} has no "
                                  "endpoints" + (": 503 UH" if trace.fields.get(
                                      "route_configuration") else ": connection closed"))
            trace.step("endpoints " + ", ".join(str(e) for e in only.endpoints))
            return trace.done(Outcome.FORWARDED)
        for destination in destinations:
            state = (f"{destination.discovery}, {len(destination.endpoints)} endpoints"
                     if destination.found else "not in CDS")
            trace.step(f"cluster {destination.cluster} weight {destination.weight} ({state})")
        return trace.done(Outcome.FORWARDED)
