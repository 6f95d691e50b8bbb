"""What the W3 tests share: Istio's sample files, applying a step's objects over the
baseline (`kubectl apply` of bookinfo-gateway, destination-rule-all and
virtual-service-all-v1, then the step's objects replacing those of the same name), requests
to the ingress gateway, and waiting until a proxy holds the step's configuration."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.mesh.bookinfo.conftest import GATEWAY_POD, GATEWAY_PORT
from tests.mesh.client import fetch_concurrently
from tests.mesh.mesh import Mesh, object_file
from tests.mesh.netns import wait_until

SAMPLES = Path(__file__).with_name("samples")
BASELINE = ("bookinfo-gateway.yaml", "destination-rule-all.yaml", "virtual-service-all-v1.yaml")
GATEWAY_ROUTE = "http.80"  # the Gateway server's port names the route, not the listener's
SIDECAR_ROUTE = "9080"


def sample(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((SAMPLES / name).read_text()) if doc]


def fqdn(service: str) -> str:
    return f"{service}.default.svc.cluster.local"


def subset_cluster(service: str, subset: str, port: int = 9080) -> str:
    return f"outbound|{port}|{subset}|{fqdn(service)}"


def use(mesh: Mesh, *docs: Mapping[str, Any]) -> None:
    """Make the baseline plus `docs` (replacing baseline objects of the same kind and name)
    the whole configuration; objects of earlier steps not named again are deleted."""
    desired: dict[str, Mapping[str, Any]] = {
        object_file(doc): doc for name in BASELINE for doc in sample(name)}
    desired.update({object_file(doc): doc for doc in docs})
    stale = [path for path in mesh.config_dir.glob("*.yaml")
             if path.name != "registry.yaml" and path.name not in desired]
    for path in stale:
        path.unlink()
    mesh.apply(desired.values())


def virtual_host(config: Mapping[str, Any], service: str) -> dict[str, Any]:
    """The sidecar route's virtual host of a bookinfo service ({} while absent)."""
    for vhost in config.get("virtual_hosts", []):
        if vhost.get("name") == f"{fqdn(service)}:9080":
            found: dict[str, Any] = vhost
            return found
    return {}


def wait_for_vhost(mesh: Mesh, pod: str, service: str,
                   predicate: Callable[[dict[str, Any]], bool], what: str) -> None:
    """Until `pod`'s sidecar routes `service` as `predicate` wants, then until every cluster
    the virtual host names has a healthy endpoint (a new subset cluster may still warm)."""
    mesh.wait_for_route(pod, SIDECAR_ROUTE,
                        lambda c: bool(virtual_host(c, service)) and
                        predicate(virtual_host(c, service)), what)
    target = mesh.pods[pod]
    config = target.route_config(SIDECAR_ROUTE)
    assert config is not None
    clusters = sorted(set(_clusters(virtual_host(config, service))))
    wait_until(lambda: all(target.healthy_hosts(c) >= 1 for c in clusters),
               f"{pod}'s clusters {clusters} warmed")


def _clusters(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["cluster"]] if isinstance(node.get("cluster"), str) else []
        if isinstance(node.get("name"), str) and "weight" in node:
            found.append(node["name"])
        return found + [c for value in node.values() for c in _clusters(value)]
    if isinstance(node, list):
        return [c for value in node for c in _clusters(value)]
    return []


def routed_to(vhost: Mapping[str, Any], *subsets: str) -> bool:
    """The virtual host's routes name exactly these subset clusters (and no others)."""
    names = {c.split("|")[2] for c in _clusters(vhost) if c.startswith("outbound|")}
    return names == set(subsets)


def gateway_address(mesh: Mesh) -> str:
    return f"http://{mesh.pods[GATEWAY_POD].ip}:{GATEWAY_PORT}"


def gateway_get(mesh: Mesh, path: str, *, headers: Mapping[str, str] | None = None,
                count: int = 1, concurrency: int = 1,
                timeout: float = 10.0) -> list[dict[str, Any]]:
    """GET requests from the test process (the root namespace) over the bridge to the
    gateway pod; each result has `page`, the parsed JSON body (None if not JSON)."""
    results = fetch_concurrently(gateway_address(mesh) + path, "", count, timeout,
                                 headers=dict(headers or {}), concurrency=concurrency)
    for result in results:
        try:
            result["page"] = json.loads(result["body"])
        except ValueError:
            result["page"] = None
    return results


def page(mesh: Mesh, *, user: str = "") -> dict[str, Any]:
    """One /productpage through the gateway (as `user` when given); must answer 200."""
    (answer,) = gateway_get(mesh, "/productpage", headers={"end-user": user} if user else {})
    assert answer["status"] == 200, answer
    found: dict[str, Any] = answer["page"]
    return found


def wait_for_gateway(mesh: Mesh, predicate: Callable[[dict[str, Any]], bool],
                     what: str) -> None:
    mesh.wait_for_route(GATEWAY_POD, GATEWAY_ROUTE, predicate, what)
