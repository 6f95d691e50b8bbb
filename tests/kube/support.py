"""W1 written to a real API server, pilotpy watching it, a real Envoy gateway, local backends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import yaml

from pilotpy.local import demo
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import LocalStack, eventually, http_get
from pilotpy.server.settings import Settings
from tests.kube.cluster import ApiStatusError, Cluster, KubeClient
from tests.kube.podnet import PREFIX, PodNetwork
from tests.kube.tcpproxy import TcpProxy

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
GATEWAY_POD_IP = "10.244.0.10"
GATEWAY_NODE = (f"router~{GATEWAY_POD_IP}~istio-ingressgateway-0.istio-system~"
                "istio-system.svc.cluster.local")
HTTPBIN_IPS = {"v1": f"{PREFIX}.11", "v2": f"{PREFIX}.12", "v3": f"{PREFIX}.13"}


def install_crds(admin: KubeClient, path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    for doc in docs:
        admin.apply(doc)
    deadline = time.monotonic() + 60
    for doc in docs:
        name = doc["metadata"]["name"]
        while True:
            crd = admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = {c["type"]: c["status"]
                          for c in crd.get("status", {}).get("conditions", [])}
            if conditions.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established: {conditions}")
            time.sleep(0.1)


def gateway_registry(listen_port: int) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: istio-ingressgateway, namespace: istio-system,
           labels: {{istio: ingressgateway}}}}
spec:
  type: ClusterIP
  selector: {{istio: ingressgateway}}
  ports:
  - {{name: http2, port: 80, targetPort: {listen_port}}}
  - {{name: status-port, port: 15021, targetPort: 15021}}
---
apiVersion: v1
kind: Pod
metadata:
  name: istio-ingressgateway-0
  namespace: istio-system
  labels: {{istio: ingressgateway, app: istio-ingressgateway}}
spec:
  containers: [{{name: istio-proxy, image: envoyproxy/envoy:v1.40.0}}]
"""


def httpbin_registry(port: int) -> str:
    pods = "".join(f"""\
---
apiVersion: v1
kind: Pod
metadata: {{name: httpbin-{version}, namespace: default,
           labels: {{app: httpbin, version: {version}}}}}
spec:
  containers: [{{name: httpbin, image: mccutchen/go-httpbin:v2.15.0}}]
""" for version in ("v1", "v2"))
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: httpbin-service, namespace: default}}
spec:
  selector: {{app: httpbin}}
  ports:
  - {{name: http, port: 80, targetPort: {port}}}
{pods}"""


def endpoint_slice(name: str, port: int, versions: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "httpbin-service"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [HTTPBIN_IPS[v]], "conditions": {"ready": True},
                       "targetRef": {"kind": "Pod", "namespace": "default",
                                     "name": f"httpbin-{v}"}}
                      for v in versions],
    }


# W1's Gateway for every host, and its DestinationRule with a third subset for the new slice.
GATEWAY = demo.GATEWAY.replace("hosts: [httpbin.local]", 'hosts: ["*"]')
DESTINATION_RULE = demo.DESTINATION_RULE + "  - {name: v3, labels: {version: v3}}\n"


def virtual_service(name: str, host: str, subset: str, weight: int = 100) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  gateways: [httpbin-gateway]
  http:
  - route:
    - destination: {{host: httpbin-service, subset: {subset}}}
      weight: {weight}
"""


class KubeMesh:
    """Owns what a kube test starts; `stop()` undoes all of it, including API objects."""

    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        self.cluster = cluster
        self.admin = cluster.admin
        self.workdir = workdir
        self.proxy = TcpProxy(cluster.port)
        self.listen_port = free_port()
        self.backend_port = free_port()
        self.pods = PodNetwork()
        self.stack: LocalStack | None = None
        self._applied: list[dict[str, Any]] = []

    # -- the API ---------------------------------------------------------------------------

    def apply(self, text: str) -> None:
        for doc in yaml.safe_load_all(text):
            if doc:
                self.admin.apply(doc)
                self._applied.append(doc)

    def apply_doc(self, doc: dict[str, Any]) -> None:
        self.admin.apply(doc)
        self._applied.append(doc)

    def delete(self, text: str) -> None:
        for doc in yaml.safe_load_all(text):
            if doc:
                self.admin.delete(doc)

    def write_registry(self) -> None:
        """What the controllers and kubelets of a real cluster would write."""
        self.apply(gateway_registry(self.listen_port))
        self.admin.pod_ip("istio-system", "istio-ingressgateway-0", GATEWAY_POD_IP)
        self.apply(httpbin_registry(self.backend_port))
        for version in ("v1", "v2"):
            self.admin.pod_ip("default", f"httpbin-{version}", HTTPBIN_IPS[version])
        self.apply_doc(endpoint_slice("httpbin-service-abc", self.backend_port, ["v1", "v2"]))

    # -- pilotpy and Envoy -----------------------------------------------------------------

    async def start(self, *, delta: bool = True, wait_ready: bool = True,
                    api_reachable: bool = True, xds_identity: str = "") -> LocalStack:
        """`xds_identity`: the gateway Envoy connects over pilotpy's TLS port with a mesh
        certificate for this SPIFFE id (a verified stream, as pilot-agent's is)."""
        await self.proxy.start()
        if not api_reachable:
            await self.proxy.cut()
        await asyncio.to_thread(self.pods.start, list(HTTPBIN_IPS.values()))
        for version, ip in HTTPBIN_IPS.items():
            await asyncio.to_thread(self.pods.backend, ip, self.backend_port, version)
        kubeconfig = self.cluster.kubeconfig(self.workdir / "kubeconfig",
                                             server=f"https://127.0.0.1:{self.proxy.port}")
        settings = Settings(grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                            grpc_tls_addr="127.0.0.1:0", monitoring_addr="127.0.0.1:0", kube=True,
                            kubeconfig=kubeconfig)
        self.stack = LocalStack([], self.workdir, delta=delta, start_backends=False,
                                node_id=GATEWAY_NODE,
                                labels={"istio": "ingressgateway"}, settings=settings,
                                xds_identity=xds_identity)
        await self.stack.start()
        if wait_ready:
            await self.wait_ready()
        return self.stack

    async def wait_ready(self) -> None:
        assert self.stack is not None
        await asyncio.wait_for(self.stack.plane.xds.ready.wait(), 30)

    def informer(self, kind: str) -> Any:
        assert self.plane.kube is not None
        return next(i for i in self.plane.kube.informers if i.kind.kind == kind)

    async def ready_status(self) -> int:
        """/ready's status code (from a thread: the server runs on this loop)."""
        answer = await asyncio.to_thread(http_get, self.plane.http_port, "pilotpy", "/ready")
        return answer[0]

    async def metrics(self) -> str:
        answer = await asyncio.to_thread(http_get, self.plane.monitoring_port, "pilotpy",
                                         "/metrics")
        return answer[2].decode()

    async def source_connected(self, kind: str) -> str:
        """The `pilotpy_source_connected` sample of one informer: "1", "0" or "" (absent)."""
        prefix = f'pilotpy_source_connected{{source="kube/{kind}"}} '
        for line in (await self.metrics()).splitlines():
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        return ""

    def virtual_services(self) -> list[str]:
        push = self.plane.discovery.push
        return sorted(k.name for k in push.objects.get("VirtualService", {})) if push else []

    @property
    def plane(self) -> Any:
        assert self.stack is not None
        return self.stack.plane

    def get(self, host: str = "httpbin.local", path: str = "/headers"
            ) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.listen_port, host, path)

    def version(self, host: str = "httpbin.local") -> str:
        status, headers, _ = self.get(host)
        return headers.get("x-backend-version", "") if status == 200 else str(status)

    async def wait_version(self, want: str, host: str = "httpbin.local",
                           timeout: float = 20) -> None:
        await eventually(lambda: self.version(host) == want,
                         f"{host} answering {want}", timeout=timeout)

    async def stop(self) -> None:
        if self.stack is not None:
            await self.stack.stop()
        await self.proxy.stop()
        await asyncio.to_thread(self.pods.stop)
        leftovers = self.pods.leftovers()
        assert not leftovers, f"the test left {leftovers} behind"
        for doc in reversed(self._applied):
            with contextlib.suppress(ApiStatusError, OSError):
                self.admin.delete(doc)
