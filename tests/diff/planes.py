"""The two control planes side by side on one API server: the real istiod
(`pilot-discovery discovery`, built from the pinned istio.io/istio by hack/istio-bins.sh) and
`pilotpy serve`, each a child process with its own ports on 127.0.0.1 (or the address given),
both reading the same kubeconfig and the same mesh ConfigMap `istio` in istio-system.

istiod runs with nothing enabled that needs a real cluster: no TLS xDS (its CA still starts,
self-signed, and writes its root certificate ConfigMaps), no webhooks, no ControlZ beyond a
free loopback port, and without the filters only Istio's own proxy build has. Its working
directory is a fresh one: it resolves `./etc/istio/config/mesh` there, and finding none it
takes the mesh config from the ConfigMap, as pilotpy does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotpy.local.envoy import free_port
from tests.istio_bins import PILOT_DISCOVERY

# istiod's Istio-only filters (metadata exchange, ALPN) exist in istio/proxyv2 only; with them
# a stock Envoy rejects istiod's listeners. Off, istiod configures the Envoy pilotpy does.
ISTIOD_FOR_STOCK_ENVOY = {"PILOT_ENABLE_METADATA_EXCHANGE": "false",
                          "PILOT_ENABLE_ALPN_FILTER": "false"}
START_TIMEOUT = 60.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def istiod_binary() -> Path:
    path = PILOT_DISCOVERY
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(f"{path} not found: run `make istio-bins` (hack/istio-bins.sh "
                           "pilot-discovery builds it from the pinned istio.io/istio)")
    return path


def istio_source() -> Path:
    """The pinned istio.io/istio module in Go's module cache (the one the binary was built
    from, named by the first word of its .version file)."""
    stamp = PILOT_DISCOVERY.with_name("pilot-discovery.version")
    version = stamp.read_text(encoding="utf-8").split()[0]
    out = subprocess.run(["go", "mod", "download", "-json", f"istio.io/istio@{version}"],
                         check=True, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GOFLAGS": "-mod=mod"})
    return Path(json.loads(out.stdout)["Dir"])


def istio_crds() -> Path:
    """Istio's own CRDs (the base chart's), as a cluster running istiod has them."""
    return istio_source() / "manifests" / "charts" / "base" / "files" / "crd-all.gen.yaml"


def http_json(url: str, timeout: float = 5.0) -> Any:
    with _OPENER.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def _ready(url: str) -> bool:
    with contextlib.suppress(OSError), _OPENER.open(url, timeout=1) as response:
        return bool(response.status == 200)
    return False


@dataclass(kw_only=True)
class ControlPlane:
    """One control plane process; `target` is its plaintext ADS address."""

    name: str
    workdir: Path
    kubeconfig: Path
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    cpu: int | None = None  # pin to this CPU (taskset)
    grpc_port: int = 0
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.grpc_port = free_port(self.host)
        self.http_port = free_port()
        pin = ["taskset", "-c", str(self.cpu)] if self.cpu is not None else []
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*pin, *self.command()], cwd=self.workdir, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **self.env})
        deadline = time.monotonic() + START_TIMEOUT
        while not _ready(f"{self.http}/ready"):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT:.0f}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def config_keys(self) -> set[tuple[str, str, str]]:
        """(kind, namespace, name) of the configuration objects it serves (/debug/configz)."""
        raise NotImplementedError


@dataclass(kw_only=True)
class Istiod(ControlPlane):
    name: str = "istiod"
    # Without the filters only Istio's proxy build has (the diff tier's real Envoys need it);
    # False runs istiod with all its defaults (the benchmarks).
    stock_envoy: bool = True

    def command(self) -> list[str]:
        return [str(istiod_binary()), "discovery", f"--kubeconfig={self.kubeconfig}",
                f"--grpcAddr={self.host}:{self.grpc_port}",
                f"--httpAddr=127.0.0.1:{self.http_port}",
                f"--monitoringAddr=127.0.0.1:{free_port()}", "--secureGRPCAddr=",
                "--httpsAddr=", f"--ctrlz_port={free_port()}", "--ctrlz_address=127.0.0.1",
                "--log_output_level=default:warn"]

    def start(self) -> None:
        self.env = {"POD_NAMESPACE": "istio-system", "POD_NAME": "istiod-diff",
                    "REVISION": "default",
                    **(ISTIOD_FOR_STOCK_ENVOY if self.stock_envoy else {}), **self.env}
        super().start()

    def config_keys(self) -> set[tuple[str, str, str]]:
        return {(c["kind"], c["metadata"].get("namespace", ""), c["metadata"]["name"])
                for c in http_json(f"{self.http}/debug/configz")}


@dataclass(kw_only=True)
class Pilotpy(ControlPlane):
    name: str = "pilotpy"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pilotpy.cli", "--log-level", "warning", "serve",
                "--kubeconfig", str(self.kubeconfig), "--namespace", "istio-system",
                "--grpc-addr", f"{self.host}:{self.grpc_port}",
                "--http-addr", f"127.0.0.1:{self.http_port}", "--grpc-tls-addr", "",
                "--monitoring-addr", ""]

    def config_keys(self) -> set[tuple[str, str, str]]:
        return {(c["kind"], c["namespace"], c["name"])
                for c in http_json(f"{self.http}/debug/configz")}
