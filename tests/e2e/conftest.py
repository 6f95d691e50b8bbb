"""End-to-end fixtures: pilotpy (file source) + a real Envoy gateway + local backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilotpy.local.demo import DESTINATION_RULE, GATEWAY, registry
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import LocalStack, eventually
from tests.e2e.support import W1, W1Factory, weighted_virtual_service


@pytest.fixture
async def w1(tmp_path: Path) -> AsyncIterator[W1Factory]:
    """Start the W1 stack; `await w1(delta=..., routed=...)`. Everything stops at teardown."""
    stacks: list[LocalStack] = []

    async def start(*, delta: bool = False, routed: bool = True, v1: int = 0,
                    v2: int = 100, mesh_config: str | None = None) -> W1:
        config = tmp_path / "config"
        config.mkdir()
        port = free_port()
        backend_port = free_port()
        (config / "registry.yaml").write_text(registry(port, backend_port), encoding="utf-8")
        (config / "gateway.yaml").write_text(GATEWAY, encoding="utf-8")
        if routed:
            (config / "destinationrule.yaml").write_text(DESTINATION_RULE, encoding="utf-8")
            (config / "virtualservice.yaml").write_text(weighted_virtual_service(v1, v2),
                                                        encoding="utf-8")
        mesh = None
        if mesh_config is not None:
            mesh = tmp_path / "mesh.yaml"
            mesh.write_text(mesh_config, encoding="utf-8")
        stack = LocalStack([config], tmp_path, delta=delta, poll_interval=0.05,
                           mesh_config=mesh)
        stacks.append(stack)
        await stack.start()
        await stack.wait_live()
        env = W1(stack, config, port, backend_port)
        if routed:
            await eventually(lambda: env.get()[0] == 200, "the first 200 through the gateway")
        return env

    yield start
    for stack in stacks:
        await stack.stop()
