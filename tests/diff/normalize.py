"""The normalisation applied before comparing istiod's resources with pilotpy's. It removes
only what docs/translation.md's "Differences from istiod" documents as by design, and orders that
Envoy ignores:

- istiod's `istio.*` filters (network, HTTP, listener and upstream filters): pilotpy works
  with stock Envoy, which has none of them;
- Istio-only metadata: the `istio` key of filter metadata (read only by those filters and by
  Istio's telemetry);
- gateway route names: istiod names a gateway's RDS after the listener port (`http.8080`),
  pilotpy after the Gateway server port (`http.80`); istiod's name is replaced with pilotpy's
  where the same filter chain of the same listener uses it;
- list orders Envoy does not evaluate in order: virtual host domains, virtual hosts, filter
  chains (matched by specificity), endpoints, the sets inside a filter chain match, and a
  route's query parameter matchers (all must match).

Versions and nonces never reach the comparison: only resources are compared."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from pilotpy.xds.types import LISTENER, ROUTE

Resources = dict[str, dict[str, Any]]

_FILTER_LISTS: Final = frozenset({"filters", "httpFilters", "listenerFilters"})
_ISTIO_FILTER = re.compile(r"^istio[._]")
_GATEWAY_ROUTE = re.compile(r"^https?\.\d+")
_HCM_TYPE: Final = ("type.googleapis.com/envoy.extensions.filters.network."
                    "http_connection_manager.v3.HttpConnectionManager")


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# List field -> the part of each item that identifies it for sorting.
_SORT_KEYS: Final[dict[str, Callable[[Any], str]]] = {
    "domains": _json_key,
    "virtualHosts": lambda v: _json_key(v.get("name")),
    "filterChains": lambda v: _json_key(v.get("filterChainMatch", {})),
    "lbEndpoints": lambda v: _json_key(v.get("endpoint", {}).get("address")),
    "serverNames": _json_key,
    "prefixRanges": _json_key,
    "sourcePrefixRanges": _json_key,
    "applicationProtocols": _json_key,
    # Matchers that must all match; istiod writes query parameters in Go's map order.
    "queryParameters": lambda v: _json_key(v.get("name")),
}
UNORDERED_LISTS: Final = frozenset(_SORT_KEYS)


def _walk(value: Any, istiod: bool) -> Any:
    if isinstance(value, list):
        return [_walk(v, istiod) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        item = _walk(item, istiod)
        if istiod and key in _FILTER_LISTS and isinstance(item, list):
            item = [f for f in item
                    if not (isinstance(f, dict) and _ISTIO_FILTER.match(str(f.get("name", ""))))]
        if key in ("filterMetadata", "typedFilterMetadata") and isinstance(item, dict):
            item = {k: v for k, v in item.items() if k != "istio"}
        if key in _SORT_KEYS and isinstance(item, list):
            item = sorted(item, key=_SORT_KEYS[key])
        if item in ({}, []) and key in (*_FILTER_LISTS, "filterMetadata",
                                        "typedFilterMetadata"):
            continue
        if key == "metadata" and item == {}:
            continue
        out[key] = item
    return out


def normalize(resources: Resources, *, istiod: bool) -> Resources:
    return {type_url: {name: _walk(tree, istiod) for name, tree in by_name.items()}
            for type_url, by_name in resources.items()}


def _chain_routes(listener: dict[str, Any]) -> dict[str, str]:
    """filter chain match (as JSON) -> the RDS name of its connection manager."""
    chains = [*listener.get("filterChains", [])]
    if "defaultFilterChain" in listener:
        chains.append({**listener["defaultFilterChain"], "filterChainMatch": "default"})
    out = {}
    for chain in chains:
        for f in chain.get("filters", []):
            config = f.get("typedConfig", {})
            if config.get("@type") == _HCM_TYPE and "rds" in config:
                out[_json_key(chain.get("filterChainMatch", {}))] = \
                    config["rds"]["routeConfigName"]
    return out


def gateway_route_names(istiod: Resources, pilotpy: Resources) -> dict[str, str]:
    """istiod's gateway RDS name -> pilotpy's, for the chains both name differently."""
    renames: dict[str, str] = {}
    theirs, ours = istiod.get(LISTENER, {}), pilotpy.get(LISTENER, {})
    for name in theirs.keys() & ours.keys():
        ours_by_match = _chain_routes(ours[name])
        for match, route in _chain_routes(theirs[name]).items():
            mine = ours_by_match.get(match)
            if (mine is not None and mine != route and _GATEWAY_ROUTE.match(route)
                    and _GATEWAY_ROUTE.match(mine)):
                renames[route] = mine
    return renames


def _renamed(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_renamed(v, renames) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _renamed(v, renames) for k, v in value.items()}
    if "rds" in out and out["rds"].get("routeConfigName") in renames:
        out["rds"] = {**out["rds"], "routeConfigName": renames[out["rds"]["routeConfigName"]]}
    return out


def rename_gateway_routes(istiod: Resources, renames: dict[str, str]) -> Resources:
    if not renames:
        return istiod
    out = dict(istiod)
    out[LISTENER] = {n: _renamed(tree, renames) for n, tree in istiod.get(LISTENER, {}).items()}
    routes = {}
    for name, tree in istiod.get(ROUTE, {}).items():
        new = renames.get(name, name)
        routes[new] = {**tree, "name": new} if "name" in tree else tree
    out[ROUTE] = routes
    return out
