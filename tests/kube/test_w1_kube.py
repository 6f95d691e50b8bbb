"""W1 applied through a real kube-apiserver drives a real Envoy gateway, and every later edit,
delete and new EndpointSlice reaches it."""

from __future__ import annotations

import pytest

from pilotpy.local.stack import eventually
from tests.kube.support import (
    DESTINATION_RULE,
    GATEWAY,
    HTTPBIN_IPS,
    KubeMesh,
    endpoint_slice,
    virtual_service,
)

pytestmark = pytest.mark.e2e


async def test_w1_through_the_api_server(mesh: KubeMesh) -> None:
    mesh.write_registry()
    await mesh.start()
    envoy = mesh.stack.envoy  # type: ignore[union-attr]
    assert envoy is not None
    # No Gateway yet: the gateway has no listener on its port.
    await eventually(lambda: mesh.get()[0] == 0, "no listener before the Gateway")

    mesh.apply(GATEWAY)
    await eventually(lambda: mesh.get()[0] == 404, "404 from blackhole:80")
    mesh.apply(DESTINATION_RULE)
    mesh.apply(virtual_service("httpbin", "httpbin.local", "v2"))
    await mesh.wait_version("v2")

    # An edit: all traffic to v1.
    mesh.apply(virtual_service("httpbin", "httpbin.local", "v1"))
    await mesh.wait_version("v1")

    # A new EndpointSlice brings v3 (its Pod first, as a kubelet would report it).
    mesh.apply("""\
apiVersion: v1
kind: Pod
metadata: {name: httpbin-v3, namespace: default, labels: {app: httpbin, version: v3}}
spec:
  containers: [{name: httpbin, image: mccutchen/go-httpbin:v2.15.0}]
""")
    mesh.admin.pod_ip("default", "httpbin-v3", HTTPBIN_IPS["v3"])
    mesh.apply_doc(endpoint_slice("httpbin-service-v3", mesh.backend_port, ["v3"]))
    mesh.apply(virtual_service("httpbin", "httpbin.local", "v3"))
    await mesh.wait_version("v3")

    # Deleting the slice leaves v3's subset without endpoints: 503, not a stale endpoint.
    mesh.admin.delete(endpoint_slice("httpbin-service-v3", mesh.backend_port, ["v3"]))
    await mesh.wait_version("503")

    # Deleting the VirtualService takes the routes away: back to blackhole:80.
    mesh.delete(virtual_service("httpbin", "httpbin.local", "v3"))
    await eventually(lambda: mesh.get()[0] == 404, "404 after the VirtualService is deleted")
    assert envoy.stats("update_rejected").get(
        "cluster_manager.cds.update_rejected", 0) == 0
    assert sum(mesh.plane.xds.stats.rejects.values()) == 0


async def test_kinds_read_but_not_enforced_are_reported_from_the_cluster(
        mesh: KubeMesh) -> None:
    """An EnvoyFilter (or an HTTPRoute) written through the API is not silently ignored:
    pilotpy reports, once, that it does not enforce it."""
    mesh.write_registry()
    await mesh.start()
    mesh.apply("""\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: patch, namespace: default}
spec: {configPatches: []}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec: {parentRefs: [{name: gw}]}
""")

    def reported() -> set[str]:
        return {str(p.ref) for p in mesh.plane.problems.problems() if p.reason == "NotEnforced"}

    await eventually(lambda: reported() == {
        "EnvoyFilter default/patch",
        "HTTPRoute.gateway.networking.k8s.io default/web"}, "both reported as not enforced")


DENY_HEADERS = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-headers, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - to: [{operation: {paths: [%s]}}]
"""


async def test_an_authorization_policy_written_through_the_api_is_enforced(
        mesh: KubeMesh) -> None:
    """Read from the API (the security.istio.io CRDs), enforced by the gateway Envoy; an
    invalid edit is reported and the last valid version stays in force; deleting it opens
    the path again."""
    mesh.write_registry()
    await mesh.start()
    mesh.apply(GATEWAY)
    mesh.apply(DESTINATION_RULE)
    mesh.apply(virtual_service("httpbin", "httpbin.local", "v2"))
    await mesh.wait_version("v2")
    mesh.apply(DENY_HEADERS % "/headers")
    await mesh.wait_version("403")
    mesh.apply(DENY_HEADERS % '"/headers/{**}/{*}"')

    def invalid() -> set[str]:
        return {p.field for p in mesh.plane.problems.problems()
                if p.reason == "Invalid" and p.ref is not None and p.ref.name == "deny-headers"}

    await eventually(lambda: invalid() == {"spec.rules[0].to[0].operation.paths[0]"},
                     "the invalid edit reported")
    assert mesh.version() == "403"
    mesh.delete(DENY_HEADERS % "/headers")
    await mesh.wait_version("v2")
