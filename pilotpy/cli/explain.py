"""`pilotpy explain`: where one request from one proxy goes, as Envoy would take it through
the config pilotpy generates for that proxy, and which Istio object each step came from.

    pilotpy explain --config DIR --node-id ID 'GET http://reviews:9080/x' -H 'end-user: jason'

The walk is the simulator's (pilotpy/simulate): listener, filter chain, route configuration,
virtual host, route, weighted clusters, endpoints. This module turns the request line into a
call (the Service VIP a sidecar's application would dial, the port a gateway listens on),
and names the VirtualService rule (`http[i].match[j]`) and DestinationRule subset behind
the route and clusters, and the Pods and subsets behind the endpoints.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pilotpy.cli.envoy_text import match_text
from pilotpy.cli.translate import LoadedConfig, ProxyConfig
from pilotpy.model import hosts
from pilotpy.model.destinationrule import DestinationRule
from pilotpy.model.kinds import Kind
from pilotpy.model.labels import Empty, selects
from pilotpy.model.meta import Key
from pilotpy.model.virtualservice import VirtualService
from pilotpy.proxy import ProxyView
from pilotpy.simulate import UNNAMED_ADDRESS, Call, Destination, Protocol, Result, Simulation
from pilotpy.translate.provenance import config_ref, http_rule
from pilotpy.wire.protojson import message_to_json

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
                      "TRACE"})


class RequestError(ValueError):
    """The request line or a header cannot be read."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    scheme: str
    host: str  # the URL's host, without port
    port: int
    authority: str  # the Host header: host[:port] as the URL writes it
    path: str  # with the query
    headers: Mapping[str, str]


def parse_request(line: str, headers: Sequence[str] = ()) -> Request:
    """`GET http://reviews:9080/x?y=1` (the method defaults to GET) and curl-style
    `-H 'name: value'` headers."""
    parts = line.split()
    if len(parts) == 2 and parts[0].upper() in _METHODS:
        method, url = parts[0].upper(), parts[1]
    elif len(parts) == 1:
        method, url = "GET", parts[0]
    else:
        raise RequestError(f"{line!r}: expected '[METHOD] URL', e.g. 'GET http://reviews:9080/'")
    parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RequestError(f"{url!r}: expected an http:// or https:// URL with a host")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as err:
        raise RequestError(f"{url!r}: {err}") from None
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    out: dict[str, str] = {}
    for header in headers:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise RequestError(f"-H {header!r}: expected 'name: value'")
        out[name.strip().lower()] = value.strip()
    authority = out.pop("host", parsed.netloc.rpartition("@")[2])
    return Request(method, parsed.scheme, parsed.hostname, port, authority, path, out)


def _resolve(loaded: LoadedConfig, view: ProxyView, host: str) -> str:
    """The address a sidecar's application dials for `host`: an IP as given, else the VIP
    of the Service the pod's DNS search path finds (istio-init captures it), else an
    address no listener names (the wildcard listener of the port takes it)."""
    if hosts.is_ip(host):
        return host
    suffix = loaded.push.mesh.domain_suffix
    for candidate in (host, f"{host}.{view.namespace}.svc.{suffix}", f"{host}.svc.{suffix}",
                      f"{host}.{suffix}"):
        service = loaded.push.service(candidate, view.namespace)
        if service is not None and service.addresses:
            return service.addresses[0]
    return UNNAMED_ADDRESS


def call_for(request: Request, loaded: LoadedConfig, view: ProxyView) -> Call:
    """The connection and request as Envoy sees them. A gateway's listener port is the
    target port of its Service's port (80 -> 8080), as the Gateway server's port becomes."""
    port = request.port
    address = UNNAMED_ADDRESS
    if view.proxy.is_router:
        for target in view.service_targets:
            if target.port.number == port:
                port = target.target_port
                break
        if hosts.is_ip(request.host):
            address = request.host
    else:
        address = _resolve(loaded, view, request.host)
    return Call(port=port, address=address, protocol=Protocol.HTTP,
                tls=request.scheme == "https", host=request.authority, path=request.path,
                method=request.method, headers=request.headers)


# -- where each step came from ------------------------------------------------------------------


def _object(loaded: LoadedConfig, key: Key) -> Any:
    return loaded.objects.get(key.kind, {}).get(key)


def route_origin(loaded: LoadedConfig, route: Any) -> dict[str, Any] | None:
    """The VirtualService and `http[i].match[j]` an Envoy route came from."""
    key = config_ref(route)
    if key is None:
        return None
    origin: dict[str, Any] = {"kind": key.kind, "namespace": key.namespace, "name": key.name}
    vs = _object(loaded, key)
    if isinstance(vs, VirtualService):
        found = http_rule(vs, route)
        if found is not None:
            i, j = found
            origin["rule"] = f"http[{i}]" + (f".match[{j}]" if j is not None else "")
    else:
        # Not a stored object: one pilotpy derived (a Kubernetes Ingress's routes).
        origin["derived"] = True
    return origin


def cluster_origin(loaded: LoadedConfig, cluster: Any) -> dict[str, Any] | None:
    """The DestinationRule (and subset) a cluster's policy came from."""
    key = config_ref(cluster)
    if key is None:
        return None
    origin: dict[str, Any] = {"kind": key.kind, "namespace": key.namespace, "name": key.name}
    istio = cluster.metadata.filter_metadata["istio"]
    subset = istio.fields["subset"].string_value if "subset" in istio.fields else ""
    if subset:
        origin["subset"] = subset
        rule = _object(loaded, key)
        if isinstance(rule, DestinationRule):
            for index, entry in enumerate(rule.subsets):
                if entry.name == subset:
                    origin["field"] = f"spec.subsets[{index}]"
    return origin


def _subsets_of(loaded: LoadedConfig, labels: Mapping[str, str], rule_key: Key | None
                ) -> list[str]:
    rule = _object(loaded, rule_key) if rule_key is not None else None
    if not isinstance(rule, DestinationRule):
        return []
    return [s.name for s in rule.subsets if selects(s.labels, labels, empty=Empty.ALL)]


def _endpoints(loaded: LoadedConfig, destination: Destination, rule_key: Key | None
               ) -> list[dict[str, Any]]:
    out = []
    for endpoint in destination.endpoints:
        entry: dict[str, Any] = {"address": endpoint.address, "port": endpoint.port}
        pod = loaded.push.pods.by_address(endpoint.address)
        if pod is not None:
            entry["pod"] = f"{pod.meta.namespace}/{pod.meta.name}"
            entry["subsets"] = _subsets_of(loaded, pod.meta.labels, rule_key)
        out.append(entry)
    return out


# -- the answer ---------------------------------------------------------------------------------


def explain(loaded: LoadedConfig, config: ProxyConfig, request: Request) -> dict[str, Any]:
    """The walk and its provenance, as JSON values (what `--output json` prints)."""
    simulation = Simulation(config.listeners, config.routes, config.clusters,
                            config.endpoints)
    call = call_for(request, loaded, config.view)
    result = simulation.run(call)
    return _answer(loaded, config, request, simulation, result)


def _answer(loaded: LoadedConfig, config: ProxyConfig, request: Request,
            simulation: Simulation, result: Result) -> dict[str, Any]:
    call = result.call
    out: dict[str, Any] = {
        "request": {"method": request.method, "url": f"{request.scheme}://{request.authority}"
                                                     f"{request.path}",
                    "headers": dict(request.headers)},
        "proxy": {"id": config.view.proxy.node_id, "type": config.view.proxy.type},
        "call": {"address": call.address, "port": call.port, "host": call.host,
                 "mode": str(call.mode)},
        "outcome": result.outcome.value, "reason": result.reason, "status": result.status,
    }
    if result.listener:
        out["listener"] = {"name": result.listener,
                           "handedOffFrom": result.handed_off_from or None}
    if result.filter_chain is not None:
        out["filterChain"] = result.filter_chain.label
    if result.route_configuration:
        out["routeConfiguration"] = result.route_configuration
    vhost = result.matched.virtual_host
    if vhost is not None:
        out["virtualHost"] = {"name": vhost.name, "domains": list(vhost.domains)}
    route = result.matched.route
    if route is not None:
        out["route"] = {"name": route.name, "index": result.route_index,
                        "match": message_to_json(route.match),
                        "from": route_origin(loaded, route)}
    if result.policy is not None and result.policy.describe():
        out["policy"] = {**dataclasses.asdict(result.policy),
                         "description": result.policy.describe()}
    if result.redirect is not None:
        out["redirect"] = {"status": result.redirect.status,
                           "location": result.redirect.location}
    if result.direct_response is not None:
        out["directResponse"] = {"status": result.direct_response.status}
    if result.upstream_path and (result.upstream_path != call.path
                                 or result.upstream_host != call.host):
        out["rewrite"] = {"host": result.upstream_host, "path": result.upstream_path}
    destinations = []
    for destination in result.destinations:
        cluster = simulation.clusters.get(destination.cluster)
        origin = cluster_origin(loaded, cluster) if cluster is not None else None
        rule_key = (Key(Kind.DESTINATION_RULE, origin["namespace"], origin["name"])
                    if origin is not None else None)
        destinations.append({
            "cluster": destination.cluster, "weight": destination.weight,
            "found": destination.found, "discovery": destination.discovery,
            "from": origin, "endpoints": _endpoints(loaded, destination, rule_key)})
    if destinations:
        out["destinations"] = destinations
    if result.mirrors:
        out["mirrors"] = list(result.mirrors)
    out["steps"] = list(result.steps)
    return out


def _origin_text(origin: Mapping[str, Any] | None) -> str:
    if origin is None:
        return ""
    text = f"{origin['kind']} {origin['namespace']}/{origin['name']}"
    for key in ("rule", "field"):
        if origin.get(key):
            text += f" {origin[key]}"
    if origin.get("subset"):
        text += f" (subset {origin['subset']})"
    if origin.get("derived"):
        text += " (derived from a Kubernetes Ingress)"
    return text


def write_text(answer: Mapping[str, Any], out: TextIO) -> None:
    rows: list[tuple[str, str]] = []
    request = answer["request"]
    head = f"{request['method']} {request['url']} from {answer['proxy']['id']}"
    if request["headers"]:
        head += " with " + ", ".join(f"{k}: {v}" for k, v in request["headers"].items())
    call = answer["call"]
    rows.append(("connection", f"{call['address']}:{call['port']} ({call['mode']})"))
    if "listener" in answer:
        listener = answer["listener"]
        text = listener["name"]
        if listener["handedOffFrom"]:
            text += f" (handed over by {listener['handedOffFrom']})"
        rows.append(("listener", text))
    if "filterChain" in answer:
        rows.append(("filter chain", answer["filterChain"]))
    if "routeConfiguration" in answer:
        rows.append(("route config", answer["routeConfiguration"]))
    if "virtualHost" in answer:
        vhost = answer["virtualHost"]
        domains = vhost["domains"]
        shown = ", ".join(domains[:3]) + (f", +{len(domains) - 3} more" if len(domains) > 3
                                           else "")
        rows.append(("virtual host", f"{vhost['name']} (domains {shown})"))
    if "route" in answer:
        route = answer["route"]
        rows.append(("route", f"#{route['index']} {route['name'] or '(unnamed)'}: "
                              f"{match_text(route['match'])}"))
        rows.append(("", "from " + (_origin_text(route["from"]) or "no VirtualService "
                                                                   "(generated by pilotpy)")))
    rows += [("policy", line) for line in answer.get("policy", {}).get("description", [])]
    if "rewrite" in answer:
        rows.append(("rewrite", f"Host {answer['rewrite']['host']}, "
                                f"path {answer['rewrite']['path']}"))
    for destination in answer.get("destinations", []):
        weight = (f" weight {destination['weight']}" if destination["weight"] is not None
                  else "")
        found = destination["discovery"] if destination["found"] else "not in CDS"
        rows.append(("cluster", f"{destination['cluster']}{weight} ({found})"))
        if destination["from"] is not None:
            rows.append(("", "from " + _origin_text(destination["from"])))
        for endpoint in destination["endpoints"]:
            text = f"{endpoint['address']}:{endpoint['port']}"
            if "pod" in endpoint:
                text += f" Pod {endpoint['pod']}"
                if endpoint["subsets"]:
                    text += " (subset " + ", ".join(endpoint["subsets"]) + ")"
            rows.append(("  endpoint", text))
    for mirror in answer.get("mirrors", []):
        rows.append(("mirror", mirror))
    if "redirect" in answer:
        rows.append(("redirect", f"{answer['redirect']['status']} to "
                                 f"{answer['redirect']['location']}"))
    result = answer["outcome"]
    if answer["status"] is not None:
        result += f" (Envoy answers {answer['status']})"
    if answer["reason"]:
        result += f": {answer['reason']}"
    rows.append(("=>", result))
    out.write(head + "\n")
    for label, text in rows:
        out.write(f"  {label:<14}{text}\n")


def write_json(answer: Mapping[str, Any], out: TextIO) -> None:
    json.dump(answer, out, indent=2, sort_keys=True)
    out.write("\n")
