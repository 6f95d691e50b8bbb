"""End-to-end fixtures: pilotpy (file source) + a real Envoy gateway + local backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pilotpy.local.demo import DESTINATION_RULE, GATEWAY, registry, virtual_service
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import LocalStack, http_get

V1_CLUSTER = "outbound|80|v1|httpbin-service.default.svc.cluster.local"
V2_CLUSTER = "outbound|80|v2|httpbin-service.default.svc.cluster.local"


def weighted_virtual_service(v1: int, v2: int) -> str:
    text = virtual_service(["httpbin.local"])
    head, sep, tail = text.partition("weight: 0\n")  # v1's weight comes first
    return head + f"weight: {v1}\n" + tail.replace("weight: 100", f"weight: {v2}")


async def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll `check` (run in a thread: it may block on HTTP) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class W1:
    """The W1 config in a directory the test edits, and the running stack serving it."""

    def __init__(self, stack: LocalStack, config: Path, port: int) -> None:
        self.stack = stack
        self.config = config
        self.port = port

    @property
    def envoy(self) -> Any:
        assert self.stack.envoy is not None
        return self.stack.envoy

    def write(self, name: str, text: str) -> None:
        path = self.config / name
        tmp = path.with_suffix(".tmp")  # the file source ignores .tmp: no half-written reads
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    def get(self, host: str = "httpbin.local", path: str = "/headers"
            ) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.port, host, path)

    def versions(self, count: int) -> list[str | None]:
        out = []
        for _ in range(count):
            status, headers, _ = self.get()
            out.append(headers.get("x-backend-version") if status == 200 else str(status))
        return out

    def stat(self, name: str) -> int:
        return int(self.envoy.stats().get(name, 0))


W1Factory = Callable[..., Awaitable[W1]]


@pytest.fixture
async def w1(tmp_path: Path) -> AsyncIterator[W1Factory]:
    """Start the W1 stack; `await w1(delta=..., routed=...)`. Everything stops at teardown."""
    stacks: list[LocalStack] = []

    async def start(*, delta: bool = False, routed: bool = True, v1: int = 0,
                    v2: int = 100) -> W1:
        config = tmp_path / "config"
        config.mkdir()
        port = free_port()
        (config / "registry.yaml").write_text(registry(port), encoding="utf-8")
        (config / "gateway.yaml").write_text(GATEWAY, encoding="utf-8")
        if routed:
            (config / "destinationrule.yaml").write_text(DESTINATION_RULE, encoding="utf-8")
            (config / "virtualservice.yaml").write_text(weighted_virtual_service(v1, v2),
                                                        encoding="utf-8")
        stack = LocalStack([config], tmp_path, delta=delta, poll_interval=0.05)
        stacks.append(stack)
        await stack.start()
        await stack.wait_live()
        env = W1(stack, config, port)
        if routed:
            await eventually(lambda: env.get()[0] == 200, "the first 200 through the gateway")
        return env

    yield start
    for stack in stacks:
        await stack.stop()
