"""Propagation status with two real Envoy gateways: the W1 gateway accepts a
VirtualService, a second gateway rejects the part of it bound to its own Gateway (a regex RE2
refuses); once with the refusal over Delta and the acceptance over SotW, once the other way.
`pilotpy status` names that proxy and Envoy's own message, exits 1, and exits 0 once the rule
is fixed and both have acknowledged it; /debug/status and the pending metrics say the same,
and `pilotpy diff --server` shows what the fix does to each connected gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pilotpy.local.bootstrap import envoy_bootstrap
from pilotpy.local.envoy import EnvoyProcess, free_port
from pilotpy.local.stack import eventually, http_get
from tests.e2e.support import W1, W1Factory

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]
SECOND_NODE = "router~127.0.0.1~second-gw.istio-system~istio-system.svc.cluster.local"
# RE2 has no backreferences: Envoy rejects this route regex, Python's `re` accepts it.
ENVOY_REJECTS = "/(a)\\\\1"


def gateways(second_port: int) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gateway-a, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [a.local]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gateway-b, namespace: default}}
spec:
  selector: {{istio: second}}
  servers:
  - port: {{number: {second_port}, name: http, protocol: HTTP}}
    hosts: [b.local]
"""


def shared(broken: bool) -> str:
    rule = (f"  - match: [{{gateways: [gateway-b], uri: {{regex: \"{ENVOY_REJECTS}\"}}}}]\n"
            "    route: [{destination: {host: httpbin-service, subset: v1}}]\n"
            if broken else "")
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shared, namespace: default}}
spec:
  hosts: [a.local, b.local]
  gateways: [gateway-a, gateway-b]
  http:
{rule}  - route: [{{destination: {{host: httpbin-service, subset: v2}}}}]
"""


@pytest.fixture(params=["refused-over-delta", "refused-over-sotw"])
async def two_gateways(w1: W1Factory, tmp_path: Path, request: pytest.FixtureRequest
                       ) -> AsyncIterator[tuple[W1, int]]:
    """W1's gateway, and a second gateway Envoy labelled istio=second: the second over Delta
    and W1's over SotW, or the other way round, so each protocol carries a real refusal."""
    second_delta = request.param == "refused-over-delta"
    env = await w1(delta=not second_delta)
    second_port = free_port()
    env.write("gateways.yaml", gateways(second_port))
    bootstrap = envoy_bootstrap(node_id=SECOND_NODE, xds_address=(
        "127.0.0.1", env.stack.plane.grpc_port), delta=second_delta,
        labels={"istio": "second"},
        admin_port=free_port(), status_port=free_port(), stats_port=None)
    workdir = tmp_path / "second"
    workdir.mkdir()
    second = EnvoyProcess(bootstrap, workdir, name="second")
    await asyncio.to_thread(second.start)
    try:
        yield env, second_port
    finally:
        await asyncio.to_thread(second.stop)


def server_url(env: W1) -> str:
    return f"http://127.0.0.1:{env.stack.plane.http_port}"


def pilotpy_cli(env: W1, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilotpy.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=False)


def pilotpy_status(env: W1, *args: str) -> subprocess.CompletedProcess[str]:
    return pilotpy_cli(env, "status", "vs/shared", "-n", "default", "--server",
                       server_url(env), *args)


def debug_status(env: W1) -> dict[str, Any]:
    status, _, body = http_get(env.stack.plane.http_port, "127.0.0.1",
                               "/debug/status?kind=VirtualService&namespace=default&name=shared")
    assert status == 200, body
    found: dict[str, Any] = json.loads(body)
    return found


def pending_metrics(env: W1) -> dict[str, float]:
    _, _, body = http_get(env.stack.plane.monitoring_port, "127.0.0.1", "/metrics")
    return {line.split()[0]: float(line.split()[1]) for line in body.decode().splitlines()
            if line.startswith("pilotpy_config_")}


async def test_status_names_the_proxy_that_refused_and_its_message(
        two_gateways: tuple[W1, int], tmp_path: Path) -> None:
    env, second_port = two_gateways
    env.write("shared.yaml", shared(broken=True))

    done = await asyncio.to_thread(pilotpy_status, env, "--wait", "--timeout", "20s")
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stdout.splitlines()
    (refused,) = [line for line in lines if "NACKED" in line and SECOND_NODE in line]
    assert "(RouteConfiguration)" in refused and "invalid escape sequence" in refused, refused
    assert any("ACKED" in line and env.stack.node_id in line for line in lines), lines

    answer = await asyncio.to_thread(debug_status, env)
    assert (answer["affected"], answer["acked"], answer["nacked"]) == (2, 1, 1)
    (nacked,) = [p for p in answer["proxies"] if p["state"] == "NACKED"]
    assert nacked["proxy"] == SECOND_NODE and "invalid escape sequence" in nacked["message"]
    metrics = await asyncio.to_thread(pending_metrics, env)
    assert metrics["pilotpy_config_pending_objects"] >= 1

    # The first gateway serves the VirtualService meanwhile.
    assert (await asyncio.to_thread(http_get, env.port, "a.local", "/headers"))[0] == 200

    # What the fix will do, for the proxies connected to this pilotpy: only the second
    # gateway's routes lose the refused rule.
    fix = tmp_path / "fix.yaml"
    fix.write_text(shared(broken=False))
    diff = await asyncio.to_thread(pilotpy_cli, env, "diff", "--config", str(env.config),
                                   "--proposed", str(fix), "--server", server_url(env))
    assert diff.returncode == 1, (diff.stdout, diff.stderr)
    blocks = diff.stdout.split("router 1 proxy ")
    (first,) = [b for b in blocks if b.startswith("(istio-ingressgateway-local.istio-system)")]
    (second,) = [b for b in blocks if b.startswith("(second-gw.istio-system)")]
    assert first.splitlines()[0].endswith(": no change"), diff.stdout
    assert "~ RouteConfiguration" in second and "path regex /(a)" in second, diff.stdout

    # Files carry no generation for --generation to wait on: wait until pilotpy has taken
    # the fix (a newer config version) before asking, or the refusal still answers.
    refused_version = answer["version"]
    env.write("shared.yaml", shared(broken=False))
    await eventually(lambda: debug_status(env)["version"] > refused_version, "the fix taken")
    done = await asyncio.to_thread(pilotpy_status, env, "--wait", "--timeout", "20s")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "2 proxies affected, 2 ACKED" in done.stdout, done.stdout
    assert (await asyncio.to_thread(http_get, second_port, "b.local", "/headers"))[0] == 200
    await eventually(lambda: pending_metrics(env)["pilotpy_config_pending_objects"] == 0,
                     "no object pending")
    json_out = await asyncio.to_thread(pilotpy_status, env, "-o", "json")
    assert json_out.returncode == 0 and json.loads(json_out.stdout)["acked"] == 2
