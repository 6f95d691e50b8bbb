"""W1 through a real Envoy gateway, and config changes applied to it while it runs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from pilotpy.local.backend import Backend
from pilotpy.local.demo import DESTINATION_RULE, registry, virtual_service, walkthrough
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import LocalStack, eventually
from pilotpy.xds import types
from tests.e2e.support import (
    V1_CLUSTER,
    V2_CLUSTER,
    W1Factory,
    weighted_virtual_service,
)

pytestmark = pytest.mark.e2e
PROTOCOLS = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
LISTENER_CHURN = ("listener_manager.listener_modified",
                  "listener_manager.listener_in_place_updated",
                  "listener_manager.total_filter_chains_draining",
                  "listener_manager.total_listeners_draining",
                  "listener_manager.lds.update_success")


@PROTOCOLS
async def test_w1_walkthrough(delta: bool) -> None:
    """No listener -> 404 from blackhole:80 -> 404 while hosts do not intersect -> 200 from
    v2 only through the v2 subset cluster with 10 retries (the same steps as `make demo`)."""
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-e2e-"))
    config = workdir / "config"
    config.mkdir()
    port = free_port()
    (config / "registry.yaml").write_text(registry(port, free_port()), encoding="utf-8")
    stack = LocalStack([config], workdir, delta=delta, poll_interval=0.05)
    await stack.start()
    try:
        await walkthrough(stack, config, port)
    finally:
        await stack.stop()


@PROTOCOLS
async def test_hot_weight_change_needs_no_listener_update(w1: W1Factory, delta: bool) -> None:
    env = await w1(delta=delta, v1=50, v2=50)
    seen = set(await eventually(lambda: set(env.versions(20)) == {"v1", "v2"} and {"v1", "v2"},
                                "both versions answering a 50/50 split"))
    assert seen == {"v1", "v2"}
    pid = env.envoy.pid
    before = {name: env.stat(name) for name in LISTENER_CHURN}
    rds_before = env.stat("http.outbound_0.0.0.0_" + str(env.port) + ";.rds.http.80.update_success")

    env.write("virtualservice.yaml", weighted_virtual_service(100, 0))
    await eventually(lambda: set(env.versions(20)) == {"v1"}, "all traffic on v1")

    assert env.envoy.pid == pid, "Envoy was restarted"
    assert {name: env.stat(name) for name in LISTENER_CHURN} == before, (
        "a route-only change touched listeners")
    rds_after = env.stat("http.outbound_0.0.0.0_" + str(env.port) + ";.rds.http.80.update_success")
    assert rds_after > rds_before


async def test_invalid_virtual_service_does_not_disturb_valid_ones(w1: W1Factory) -> None:
    env = await w1()
    plane = env.stack.plane
    invalid = virtual_service(["broken.local"]).replace("name: httpbin,", "name: broken,").replace(
        "weight: 100", "weight: -1")
    env.write("broken.yaml", invalid)
    errors = await eventually(lambda: [str(p) for p in plane.problems.errors()],
                              "the invalid VirtualService to be reported")
    assert any("VirtualService default/broken" in e and "spec.http[0].route[1].weight" in e
               for e in errors), errors
    assert set(env.versions(5)) == {"v2"}

    # Breaking the served VirtualService keeps its last valid version serving.
    env.write("virtualservice.yaml", weighted_virtual_service(0, 100).replace(
        "attempts: 10", "attempts: -3"))
    await eventually(lambda: any("VirtualService default/httpbin" in str(p)
                                 for p in plane.problems.errors()),
                     "the broken edit to be reported")
    assert set(env.versions(5)) == {"v2"}

    # A file that is not even YAML keeps what it held too.
    env.write("virtualservice.yaml", "spec: [unclosed\n")
    await eventually(lambda: any("invalid YAML" in str(p) for p in plane.problems.errors()),
                     "the YAML error to be reported")
    assert set(env.versions(5)) == {"v2"}

    env.write("virtualservice.yaml", weighted_virtual_service(100, 0))
    await eventually(lambda: set(env.versions(10)) == {"v1"}, "the repaired file to be served")
    assert not any("httpbin" in str(p) for p in plane.problems.errors())


async def test_destination_rule_change_over_delta_leaves_no_cluster_warming(
        w1: W1Factory) -> None:
    env = await w1(delta=True)
    cds_before = env.stat("cluster_manager.cds.update_success")
    env.write("destinationrule.yaml", DESTINATION_RULE.replace(
        "  host: httpbin-service\n",
        "  host: httpbin-service\n  trafficPolicy:\n"
        "    connectionPool: {tcp: {maxConnections: 7}}\n"))

    def applied() -> bool:
        clusters = env.envoy.admin_get("/clusters")
        return f"{V2_CLUSTER}::default_priority::max_connections::7" in clusters

    await eventually(applied, "the new circuit breaker on the v2 cluster")
    assert env.stat("cluster_manager.cds.update_success") > cds_before
    await eventually(lambda: env.stat("cluster_manager.warming_clusters") == 0,
                     "no cluster left warming")
    assert set(env.versions(5)) == {"v2"}


@PROTOCOLS
async def test_new_endpoint_is_pushed_as_eds_only(w1: W1Factory, delta: bool) -> None:
    env = await w1(delta=delta)
    xds = env.stack.plane.xds.stats
    pushes_before = {t: xds.pushes[t] for t in (types.CLUSTER, types.LISTENER, types.ROUTE)}
    envoy_before = {name: env.stat(name) for name in (
        "cluster_manager.cds.update_success", "listener_manager.lds.update_success")}
    extra = Backend("127.0.0.13", env.backend_port, version="v2", name="httpbin")
    extra.start()
    try:
        text = (env.config / "registry.yaml").read_text(encoding="utf-8")
        text += f"""---
apiVersion: v1
kind: Pod
metadata:
  name: httpbin-v2-b
  namespace: default
  labels: {{app: httpbin, version: v2}}
status:
  podIP: 127.0.0.13
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-service-more
  namespace: default
  labels: {{kubernetes.io/service-name: httpbin-service}}
addressType: IPv4
ports:
- {{name: http, port: {env.backend_port}}}
endpoints:
- addresses: [127.0.0.13]
  targetRef: {{kind: Pod, name: httpbin-v2-b, namespace: default}}
"""
        env.write("registry.yaml", text)
        await eventually(lambda: (env.versions(10), extra.requests > 0)[1],
                         "traffic reaching the new endpoint")
    finally:
        extra.stop()
    assert {t: xds.pushes[t] for t in pushes_before} == pushes_before, (
        "an endpoint-only change pushed more than EDS")
    assert {name: env.stat(name) for name in envoy_before} == envoy_before


async def test_pod_relabel_moves_its_endpoint_between_subsets(w1: W1Factory) -> None:
    env = await w1()
    v1_backend = next(b for b in env.stack.backends if b.version == "v1")
    served_before = v1_backend.requests
    assert set(env.versions(10)) == {"v2"}
    assert v1_backend.requests == served_before

    text = (env.config / "registry.yaml").read_text(encoding="utf-8")
    env.write("registry.yaml", text.replace("labels: {app: httpbin, version: v1}",
                                            "labels: {app: httpbin, version: v2}"))

    def v1_pod_serves_v2_subset() -> bool:
        env.versions(10)
        return v1_backend.requests > served_before

    await eventually(v1_pod_serves_v2_subset, "the relabelled pod to join subset v2")
    assignment = env.envoy.admin_get("/clusters")
    assert f"{V2_CLUSTER}::127.0.0.11:{env.backend_port}" in assignment
    assert f"{V1_CLUSTER}::127.0.0.11:{env.backend_port}" not in assignment


async def test_virtual_service_timeout_answers_504_before_a_slow_backend(w1: W1Factory) -> None:
    """A route `timeout` must fire: with any `max_stream_duration` on the route Envoy would
    ignore it (its "new timeouts" mode), so the gateway would wait out the slow backend."""
    env = await w1()
    timed = weighted_virtual_service(0, 100).replace("  - retries: {attempts: 10}\n",
                                                     "  - timeout: 0.5s\n")
    env.write("virtualservice.yaml", timed)
    await eventually(lambda: "0.500s" in str(env.envoy.config_dump("dynamic_route_configs")),
                     "the 0.5 s route timeout")
    started = time.monotonic()
    status, headers, _ = env.get(path="/delay/3")
    elapsed = time.monotonic() - started
    assert status == 504, headers
    assert elapsed < 2.0, elapsed  # the backend would answer after 3 s
