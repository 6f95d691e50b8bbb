"""`make run` / `pilotpy local`: pilotpy on a config directory, a real Envoy gateway and local
backends for the config's pods, on loopback, until interrupted."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from pilotpy.local.stack import LocalStack, port_or_free
from pilotpy.model.gateway import Gateway
from pilotpy.model.kinds import Kind
from pilotpy.runtime.lifecycle import run_until_stopped


def _curl_hints(stack: LocalStack) -> list[str]:
    envoy = stack.envoy
    push = stack.plane.discovery.push
    assert envoy is not None and push is not None
    ports = []
    for listener in envoy.config_dump("dynamic_listeners").get("configs", []):
        active = listener.get("active_state", {}).get("listener", {})
        port = active.get("address", {}).get("socket_address", {}).get("port_value")
        if port:
            ports.append(int(port))
    hosts = sorted({h.partition("/")[2] or h for g in push.objects.get(Kind.GATEWAY, {}).values()
                    if isinstance(g, Gateway) for s in g.servers for h in s.hosts})
    lines = []
    for port in sorted(set(ports)):
        for host in hosts:
            shown = "anything.example" if host == "*" else host.replace("*", "www")
            lines.append(f"curl -i -H 'Host: {shown}' http://127.0.0.1:{port}/headers")
    return lines


async def _run(config: Path, delta: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-local-"))
    stack = LocalStack([config], workdir, delta=delta, status_port=port_or_free(15021),
                       stats_port=port_or_free(15090), poll_interval=0.5)
    await stack.start()
    try:
        await stack.wait_live(30)
        assert stack.envoy is not None
        backends = ", ".join(f"{b.name}/{b.version} on {b.host}:{b.port}"
                             for b in stack.backends) or "none"
        tries = [*_curl_hints(stack),
                 f"curl -i http://127.0.0.1:{stack.status_port}/healthz/ready",
                 f"curl -s http://127.0.0.1:{stack.stats_port}/stats/prometheus | head",
                 f"curl -s http://127.0.0.1:{stack.plane.monitoring_port}/metrics | grep ^pilot_",
                 f"curl -s http://127.0.0.1:{stack.plane.http_port}/debug/syncz"]
        print("\n".join([
            "",
            f"pilotpy is serving {config}: xDS on 127.0.0.1:{stack.plane.grpc_port}, "
            f"readiness on http://127.0.0.1:{stack.plane.http_port}/ready",
            f"Envoy gateway ({'Delta' if delta else 'SotW'} xDS) is LIVE; admin at "
            f"{stack.envoy.admin_url}, logs in {workdir}",
            f"Backends: {backends}",
            "",
            "Try:",
            *(f"  {line}" for line in tries),
            "",
            f"Edit the YAML under {config}: pilotpy picks changes up within a second. "
            "Ctrl-C stops everything.",
        ]), flush=True)
        await asyncio.Event().wait()
    finally:
        await stack.stop()


def run_local(config: Path, *, delta: bool = False) -> int:
    if not config.exists():
        print(f"pilotpy local: {config}: no such file or directory", file=sys.stderr)
        return 2

    run_until_stopped(lambda: _run(config, delta))
    print("stopped", flush=True)
    return 0
