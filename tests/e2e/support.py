"""Helpers for end-to-end tests: the W1 stack a test edits, and bounded waiting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pilotpy.local.demo import virtual_service
from pilotpy.local.stack import LocalStack, http_get

V1_CLUSTER = "outbound|80|v1|httpbin-service.default.svc.cluster.local"
V2_CLUSTER = "outbound|80|v2|httpbin-service.default.svc.cluster.local"


def weighted_virtual_service(v1: int, v2: int) -> str:
    text = virtual_service(["httpbin.local"])
    head, _, tail = text.partition("weight: 0\n")  # v1's weight comes first
    return head + f"weight: {v1}\n" + tail.replace("weight: 100", f"weight: {v2}")


def deep_policy(levels: int, leaf: str = "x") -> str:
    """An AuthorizationPolicy (stored as written, not enforced) nested `levels` deep."""
    nested = "".join(f"{'  ' * (i + 2)}a:\n" for i in range(levels))
    return ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            "metadata: {name: deep, namespace: default}\nspec:\n  rules:\n"
            + nested + "  " * (levels + 2) + leaf + "\n")


class W1:
    """The W1 config in a directory the test edits, and the running stack serving it."""

    def __init__(self, stack: LocalStack, config: Path, port: int, backend_port: int) -> None:
        self.stack = stack
        self.config = config
        self.port = port
        self.backend_port = backend_port

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
