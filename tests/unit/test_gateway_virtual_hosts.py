"""Gateway virtual hosts as istiod builds them (buildGatewayHTTPRouteConfig): one per
hostname, then hostnames whose routes are the very same (one VirtualService, several hosts)
collapsed into one named after the alphabetically first, as istiod's default
PILOT_ENABLE_ROUTE_COLLAPSE_OPTIMIZATION does (bookinfo's eu/uk hosts)."""

from __future__ import annotations

from typing import Any

from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.translate.generate import generate
from tests.unit.support import context

NODE = "router~10.244.0.7~gw-1.istio-system~istio-system.svc.cluster.local"
GATEWAY = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
           "metadata": {"name": "gw", "namespace": "istio-system"},
           "spec": {"selector": {"istio": "ingressgateway"},
                    "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                 "hosts": ["*"]}]}}


def virtual_service(name: str, hosts: list[str], destination: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "istio-system"},
            "spec": {"hosts": hosts, "gateways": ["gw"],
                     "http": [{"route": [{"destination": {"host": destination}}]}]}}


def virtual_hosts(*docs: dict[str, Any]) -> dict[str, list[str]]:
    push = context(GATEWAY, *docs)
    view = view_proxy(parse_proxy(NODE, {"LABELS": {"istio": "ingressgateway"}}), push)
    (route,) = generate(push, view).routes
    return {v.name: list(v.domains) for v in route.virtual_hosts}


def test_hosts_of_one_virtual_service_share_one_virtual_host() -> None:
    assert virtual_hosts(virtual_service("bookinfo", ["uk.bookinfo.com", "eu.bookinfo.com"],
                                         "productpage")) == {
        "eu.bookinfo.com:80": ["eu.bookinfo.com", "uk.bookinfo.com"]}


def test_hosts_with_different_routes_keep_their_own_virtual_hosts() -> None:
    assert virtual_hosts(virtual_service("uk", ["uk.bookinfo.com"], "productpage"),
                         virtual_service("eu", ["eu.bookinfo.com"], "productpage")) == {
        "eu.bookinfo.com:80": ["eu.bookinfo.com"], "uk.bookinfo.com:80": ["uk.bookinfo.com"]}
