"""Running proxyless gRPC against pilotpy: `pilotpy serve` as a process on loopback, and the
echo programs of tests/e2e/grpc_echo.py, each in its own process with its own bootstrap.
Every process started here is stopped by its owner (`stop()`), and each also ends by itself
when its stdin closes or after MAX_LIFETIME."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pilotpy.local.envoy import free_port
from pilotpy.local.grpc_bootstrap import grpc_bootstrap

ROOT = Path(__file__).resolve().parents[2]
PILOTPY = Path(sys.executable).with_name("pilotpy")
WAIT = 20.0  # bound of every wait for something to happen


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT:.0f} s waiting for {what}")
        time.sleep(0.2)


def accepts(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def stop(process: subprocess.Popen[Any]) -> None:
    if process.stdin is not None and not process.stdin.closed:
        process.stdin.close()  # the echo programs end when stdin closes
    else:
        process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class Pilotpy:
    """`pilotpy serve` on a config directory: xDS, HTTP and monitoring on free loopback ports,
    its log in the work directory."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.xds_port, self.http_port, self.monitoring_port = free_port(), free_port(), free_port()
        self.process = subprocess.Popen(
            [str(PILOTPY), "--log-level", "warning", "serve", "--config", str(config),
             "--grpc-addr", f"127.0.0.1:{self.xds_port}", "--grpc-tls-addr", "",
             "--http-addr", f"127.0.0.1:{self.http_port}",
             "--monitoring-addr", f"127.0.0.1:{self.monitoring_port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(workdir / "pilotpy.log").open("w", encoding="utf-8"),
            start_new_session=True)
        eventually(self._ready, "pilotpy to be ready")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"pilotpy exited with {self.process.returncode}")
        try:
            return _get(f"http://127.0.0.1:{self.http_port}/ready").startswith("ready")
        except OSError:  # refused, or 503 before the config is loaded
            return False

    def syncz(self) -> list[dict[str, object]]:
        found: list[dict[str, object]] = json.loads(
            _get(f"http://127.0.0.1:{self.http_port}/debug/syncz"))
        return found

    def rejects(self) -> list[str]:
        """NACKs pilotpy saw: errors in /debug/syncz and pilot_total_xds_rejects lines."""
        found = [f"{p['proxy']} {t}: {r['lastError']}" for p in self.syncz()
                 for t, r in p.get("resources", {}).items()  # type: ignore[attr-defined]
                 if r.get("lastError")]
        metrics = _get(f"http://127.0.0.1:{self.monitoring_port}/metrics")
        found += [line for line in metrics.splitlines()
                  if line.startswith("pilot_total_xds_rejects{") and not line.endswith(" 0")]
        return found

    def stop(self) -> None:
        stop(self.process)


def spawn(workdir: Path, args: list[str], node_id: str, xds_port: int,
          labels: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m tests.e2e.grpc_echo <args>` with a bootstrap for `node_id`."""
    name = node_id.split("~")[2]
    bootstrap = workdir / f"{name}.bootstrap.json"
    bootstrap.write_text(json.dumps(grpc_bootstrap(node_id, ("127.0.0.1", xds_port),
                                                   labels=labels)), encoding="utf-8")
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
    log = (workdir / f"{name}.{args[0]}.log").open("w", encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.grpc_echo", *args], cwd=ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
        start_new_session=True)


def call(client: subprocess.Popen[str], target: str, count: int = 1,
         metadata: dict[str, str] | None = None, *, payload: str = "",
         timeout: float = 10.0, method: str = "/echo.Echo/Call") -> dict[str, int]:
    """The answers of `count` calls from a running client: version -> count, or status code
    -> count."""
    assert client.stdin and client.stdout
    client.stdin.write(json.dumps({"target": target, "count": count, "timeout": timeout,
                                   "metadata": metadata or {}, "payload": payload,
                                   "method": method}) + "\n")
    ready, _, _ = select.select([client.stdout], [], [], count * timeout + WAIT)
    assert ready, f"the client did not answer {count} calls to {target}"
    answer: dict[str, int] = json.loads(client.stdout.readline())
    return answer
