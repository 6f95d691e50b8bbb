"""`pilotpy explain` held to what a real Envoy did: an access log format naming the route
Envoy picked (its name and the VirtualService its istio metadata names), the upstream
cluster and host, and the request itself; each logged request is explained again from the
same proxy's config and the answers compared. Shared by the W1 (e2e) and W3 (mesh) tiers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pilotpy.cli.explain import explain, parse_request
from pilotpy.cli.translate import LoadedConfig, proxy_config, proxy_of

# meshConfig accessLogFormat (JSON encoding): what Envoy chose, per request.
ACCESS_LOG_FIELDS = {
    "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "authority": "%REQ(:AUTHORITY)%", "end_user": "%REQ(END-USER)%",
    "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%",
    "route_name": "%ROUTE_NAME%", "route_config": "%METADATA(ROUTE:istio:config)%",
    # The cluster name itself (UPSTREAM_CLUSTER is its alt_stat_name, `...;`).
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%", "upstream_host": "%UPSTREAM_HOST%",
    "local": "%DOWNSTREAM_LOCAL_ADDRESS%",
}
ACCESS_LOG_FORMAT = json.dumps(ACCESS_LOG_FIELDS, sort_keys=True)


def mesh_config(log_file: str) -> dict[str, str]:
    return {"accessLogFile": log_file, "accessLogEncoding": "JSON",
            "accessLogFormat": ACCESS_LOG_FORMAT}


def entries(text: str) -> list[dict[str, Any]]:
    """The access log lines of a file that may hold other output too."""
    out = []
    for line in text.splitlines():
        if line.startswith("{") and '"route_config"' in line:
            out.append(json.loads(line))
    return out


def explain_logged(loaded: LoadedConfig, node_id: str, labels: Mapping[str, str],
                   entry: Mapping[str, Any], scheme: str = "http") -> dict[str, Any]:
    """What `pilotpy explain` says of the logged request, from the proxy that logged it."""
    headers = [f"end-user: {entry['end_user']}"] if entry.get("end_user") else []
    request = parse_request(f"{entry['method']} {scheme}://{entry['authority']}{entry['path']}",
                            headers)
    return explain(loaded, proxy_config(loaded.push, proxy_of(node_id, labels)), request)


def config_path(origin: Mapping[str, Any] | None) -> str | None:
    """An explained step's object as the route's istio metadata names it."""
    if origin is None:
        return None
    kind = {"VirtualService": "virtual-service"}[origin["kind"]]
    return (f"/apis/networking.istio.io/v1/namespaces/{origin['namespace']}/{kind}/"
            f"{origin['name']}")


def disagreements(answer: Mapping[str, Any], entry: Mapping[str, Any]) -> list[str]:
    """How the explanation differs from what Envoy logged (empty when they agree)."""
    out = []
    route = answer.get("route")
    picked = (route["name"] or None, config_path(route["from"])) if route else (None, None)
    logged = (entry.get("route_name"), entry.get("route_config"))
    if picked != logged:
        out.append(f"route: explain {picked}, Envoy {logged}")
    destinations = {d["cluster"]: d for d in answer.get("destinations", [])}
    cluster = entry.get("upstream_cluster")
    if answer["outcome"] == "forwarded":
        if cluster not in destinations:
            out.append(f"cluster: explain {sorted(destinations)}, Envoy {cluster}")
        else:
            hosts = {f"{e['address']}:{e['port']}" for e in destinations[cluster]["endpoints"]}
            if entry.get("upstream_host") not in hosts:
                out.append(f"endpoint: explain {sorted(hosts)}, Envoy {entry['upstream_host']}")
    elif answer["status"] is not None and answer["status"] != entry.get("code"):
        out.append(f"status: explain {answer['status']}, Envoy {entry.get('code')}")
    if entry.get("local") and answer["call"]["mode"] == "outbound":
        dialled = f"{answer['call']['address']}:{answer['call']['port']}"
        if dialled != entry["local"]:
            out.append(f"destination: explain {dialled}, Envoy {entry['local']}")
    return out
