"""`make demo`: walkthrough W1 scripted against a real Envoy gateway, step by step.

no Gateway: no listener -> Gateway: 404 from blackhole:80 -> VirtualService whose hosts do
not intersect the Gateway's: still 404 -> hosts intersect: 200 from v2 only, through
`outbound|80|v2|httpbin-service.default.svc.cluster.local` with 10 retries.
Each step prints what it checked; any misbehaviour exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pilotpy.local.stack import LocalStack, eventually, http_get, port_or_free

V2_CLUSTER = "outbound|80|v2|httpbin-service.default.svc.cluster.local"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [httpbin.local]
"""
DESTINATION_RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin-service
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def virtual_service(hosts: list[str]) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [{", ".join(hosts)}]
  gateways: [httpbin-gateway, mesh]
  http:
  - retries: {{attempts: 10}}
    route:
    - destination: {{host: httpbin-service, subset: v1}}
      weight: 0
    - destination: {{host: httpbin-service, subset: v2}}
      weight: 100
"""


class StepFailed(Exception):
    pass


def registry(listen_port: int, backend_port: int = 8000) -> str:
    """The gateway Service (80 -> listen_port) and httpbin's Service, Pods and slice, its
    endpoints on `backend_port` (tests pick a free one so parallel runs do not collide)."""
    text = (EXAMPLES / "gateway-service.yaml").read_text(encoding="utf-8")
    text = text.replace("targetPort: 8080", f"targetPort: {listen_port}")
    httpbin = (EXAMPLES / "httpbin.yaml").read_text(encoding="utf-8")
    httpbin = httpbin.replace("8000", str(backend_port))
    return text + "---\n" + httpbin


def _ok(message: str) -> None:
    print(f"   ok: {message}", flush=True)


async def walkthrough(stack: LocalStack, config: Path, port: int) -> None:
    """The W1 steps against a started stack whose config directory is `config`."""
    envoy = stack.envoy
    assert envoy is not None

    def listener_names() -> list[str]:
        dump = envoy.config_dump("dynamic_listeners")
        return [c.get("name", "") for c in dump.get("configs", [])]

    def route(name: str) -> dict[str, Any]:
        for config_item in envoy.config_dump("dynamic_route_configs").get("configs", []):
            route_config = config_item.get("route_config", {})
            if route_config.get("name") == name:
                return dict(route_config)
        return {}

    print("1. Before any Gateway: the gateway has only its health and stats listeners.",
          flush=True)
    await stack.wait_live()
    if listener_names():
        raise StepFailed(f"unexpected listeners {listener_names()}")
    status, _, _ = await asyncio.to_thread(http_get, port, "httpbin-service", "/headers")
    if status != 0:
        raise StepFailed(f"port {port} answered {status}; expected nothing")
    _ok(f"no dynamic listener; nothing answers on :{port}")
    health, _, _ = await asyncio.to_thread(http_get, stack.status_port, "gw", "/healthz/ready")
    if health != 200:
        raise StepFailed(f"/healthz/ready answered {health}")
    _ok(f"/healthz/ready on :{stack.status_port} answers 200")

    print("2. Apply the Gateway (port 80, hosts [httpbin.local]).", flush=True)
    (config / "gateway.yaml").write_text(GATEWAY, encoding="utf-8")
    listener = f"0.0.0.0_{port}"
    await eventually(lambda: listener in listener_names(), f"listener {listener}")
    _ok(f"listener {listener} (Service port 80 -> targetPort {port})")

    def route_hosts() -> list[str]:
        return [v.get("name") for v in route("http.80").get("virtual_hosts", [])]

    # The listener is up before its RDS answer lands: wait for the route, then check it.
    with contextlib.suppress(TimeoutError):
        await eventually(route_hosts, "route http.80", timeout=10)
    if (hosts := route_hosts()) != ["blackhole:80"]:
        raise StepFailed(f"route http.80 has virtual hosts {hosts}; expected [blackhole:80]")
    status, headers, _ = await asyncio.to_thread(http_get, port, "httpbin-service", "/headers")
    if status != 404 or headers.get("server") != "istio-envoy":
        raise StepFailed(f"got {status} server={headers.get('server')}; expected 404 istio-envoy")
    _ok("route http.80 holds only blackhole:80; curl gets 404, server: istio-envoy")

    print("3. Bind a VirtualService (hosts [httpbin-service]) and a DestinationRule.",
          flush=True)
    (config / "destinationrule.yaml").write_text(DESTINATION_RULE, encoding="utf-8")
    (config / "virtualservice.yaml").write_text(virtual_service(["httpbin-service"]),
                                                encoding="utf-8")

    def has_v2_cluster() -> bool:
        return f"{V2_CLUSTER}::" in envoy.admin_get("/clusters")

    await eventually(has_v2_cluster, f"cluster {V2_CLUSTER}")
    status, _, _ = await asyncio.to_thread(http_get, port, "httpbin.local", "/headers")
    if status != 404:
        raise StepFailed(f"got {status}; expected 404 while the hosts do not intersect")
    _ok("subset clusters exist; still 404: the VirtualService hosts miss httpbin.local")

    print("4. Add httpbin.local to the VirtualService hosts.", flush=True)
    (config / "virtualservice.yaml").write_text(
        virtual_service(["httpbin-service", "httpbin.local"]), encoding="utf-8")
    vhost = await eventually(
        lambda: next((v for v in route("http.80").get("virtual_hosts", [])
                      if v.get("name") == "httpbin.local:80"), None),
        "virtual host httpbin.local:80")
    action = vhost["routes"][0]["route"]
    if action.get("cluster") != V2_CLUSTER:
        raise StepFailed(f"route goes to {action.get('cluster')}; expected {V2_CLUSTER}")
    if action.get("retry_policy", {}).get("num_retries") != 10:
        raise StepFailed(f"retry policy {action.get('retry_policy')}; expected 10 retries")
    _ok(f"vhost httpbin.local:80 -> {V2_CLUSTER}, num_retries 10")
    versions = []
    for _ in range(10):
        status, headers, _ = await asyncio.to_thread(http_get, port, "httpbin.local", "/headers")
        if status != 200:
            raise StepFailed(f"got {status}; expected 200")
        versions.append(headers.get("x-backend-version"))
    if set(versions) != {"v2"}:
        raise StepFailed(f"answers came from {versions}; expected v2 only")
    served = (await asyncio.to_thread(envoy.stats)).get(
        f"cluster.{V2_CLUSTER};.upstream_rq_200", 0)
    if served < 10:
        raise StepFailed(f"Envoy counted {served} 200s on {V2_CLUSTER}")
    _ok(f"10/10 requests answered 200 by v2; Envoy counts {served} on {V2_CLUSTER}")
    print(f"\n   curl -i -H 'Host: httpbin.local' http://127.0.0.1:{port}/headers", flush=True)


async def _demo(delta: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-demo-"))
    config = workdir / "config"
    config.mkdir()
    port = port_or_free(8080)
    (config / "registry.yaml").write_text(registry(port), encoding="utf-8")
    stack = LocalStack([config], workdir, delta=delta, poll_interval=0.2)
    print(f"Starting pilotpy, an Envoy gateway ({'Delta' if delta else 'SotW'} xDS) and "
          f"httpbin v1/v2 backends (work dir {workdir})", flush=True)
    await stack.start()
    try:
        await walkthrough(stack, config, port)
    finally:
        await stack.stop()


def run_demo(*, delta: bool = False) -> int:
    started = time.monotonic()
    try:
        asyncio.run(_demo(delta))
    except (StepFailed, TimeoutError) as err:
        print(f"FAILED: {err}", file=sys.stderr, flush=True)
        return 1
    print(f"\nW1 walkthrough passed in {time.monotonic() - started:.1f}s", flush=True)
    return 0
