"""The machinery of `make bench-compare`: one kube-apiserver + etcd holding a mesh, the control
plane under test (istiod or pilotpy) pinned to CPU 0, fleets of fake proxies
(bench/fakeproxies.py, several processes) pinned to CPU 1 with the API server, and what
/proc says about a process.

Everything listens on 127.0.0.1 and every process started here is stopped by its owner."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.diff.planes import ControlPlane, Istiod, Pilotpy, istio_crds  # noqa: E402
from tests.kube.cluster import ApiStatusError, Cluster, KubeClient, object_path  # noqa: E402
from tests.kube.support import install_crds  # noqa: E402

FAKEPROXIES = Path(__file__).with_name("fakeproxies.py")
PLANE_CPU, CLIENT_CPU = 0, 1
# What the proxies report: the pinned pilot-agent's version.
ISTIO_VERSION = "1.31.0"
# istiod caps new xDS streams at 20/s on one core by default (PILOT_MAX_REQUESTS_PER_SECOND,
# 25 x GOMAXPROCS): "istiod" runs with that, "istiod-uncapped" without.
UNCAPPED = "1000000"
# A control plane above this RSS fails its run: on this shared machine a bigger one would push
# the others' tests (and the machine) into swap. istiod keeps megabytes per stream.
RSS_LIMIT_MB = 10_000


def _pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` to `cpu` (Go starts its threads before we could pin the parent)."""
    if (os.cpu_count() or 1) > 1:
        subprocess.run(["taskset", "-a", "-cp", str(cpu), str(pid)], check=True,
                       capture_output=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


@dataclass
class Api:
    """A kube-apiserver and etcd on CPU 1, Istio's CRDs installed."""

    workdir: Path
    cluster: Cluster = field(init=False)

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.workdir)

    @property
    def admin(self) -> KubeClient:
        return self.cluster.admin

    def start(self) -> None:
        self.cluster.start()
        for process in (self.cluster.etcd, self.cluster.apiserver):
            assert process is not None
            _pin(process.pid, CLIENT_CPU)
        install_crds(self.admin, istio_crds())
        self.admin.ensure_namespace("istio-system")

    def stop(self) -> None:
        self.cluster.stop()

    def load(self, docs: list[dict[str, Any]], workers: int = 8) -> float:
        """Create `docs` (namespaces first, Pods' status after them) over one kept-alive
        connection per worker (a TLS handshake per object would make loading 30k objects
        take minutes); the seconds it took."""
        started = time.monotonic()
        namespaces = sorted({d["metadata"]["namespace"] for d in docs
                             if "namespace" in d["metadata"]})
        for namespace in namespaces:
            self.admin.ensure_namespace(namespace)
        cluster = self.cluster
        context = ssl.create_default_context(cafile=str(cluster.pki.ca))
        context.load_cert_chain(str(cluster.admin_cert.cert), str(cluster.admin_cert.key))
        local = threading.local()

        def send(method: str, path: str, body: Any, content_type: str) -> None:
            for attempt in range(5):
                connection = getattr(local, "connection", None)
                if connection is None:
                    connection = local.connection = http.client.HTTPSConnection(
                        "127.0.0.1", cluster.port, context=context, timeout=60)
                try:
                    connection.request(method, path, json.dumps(body),
                                       {"Content-Type": content_type})
                    response = connection.getresponse()
                    text = response.read()
                    if response.status < 300:
                        return
                    if response.status < 500 and response.status != 429:
                        raise ApiStatusError(response.status, text.decode(errors="replace"))
                except (OSError, http.client.HTTPException):
                    connection.close()
                    local.connection = None
                if attempt == 4:
                    raise RuntimeError(f"{method} {path} kept failing")
                time.sleep(0.5 * (attempt + 1))

        def create(doc: dict[str, Any]) -> None:
            body = {k: v for k, v in doc.items() if k != "status"}
            send("POST", object_path(body, named=False), body, "application/json")
            if doc["kind"] == "Pod":
                metadata = doc["metadata"]
                ip = doc["status"]["podIP"]
                send("PATCH", f"/api/v1/namespaces/{metadata['namespace']}/pods/"
                     f"{metadata['name']}/status",
                     {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                 "conditions": [{"type": "Ready", "status": "True"}]}},
                     "application/merge-patch+json")

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(create, docs))
        return time.monotonic() - started

    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig(self.workdir / "kubeconfig")


def plane(kind: str, api: Api, workdir: Path) -> ControlPlane:
    """`istiod` (its defaults, GOMAXPROCS=1), `istiod-uncapped` (no stream rate limit) or
    `pilotpy`, on CPU 0, not yet started."""
    kubeconfig = api.kubeconfig()
    if kind == "pilotpy":
        return Pilotpy(workdir=workdir / kind, kubeconfig=kubeconfig, cpu=PLANE_CPU)
    env = {"GOMAXPROCS": "1"}
    if kind == "istiod-uncapped":
        env["PILOT_MAX_REQUESTS_PER_SECOND"] = UNCAPPED
    return Istiod(workdir=workdir / kind, kubeconfig=kubeconfig, cpu=PLANE_CPU, env=env,
                  stock_envoy=False)


@contextlib.contextmanager
def running(kind: str, api: Api, workdir: Path) -> Iterator[ControlPlane]:
    control = plane(kind, api, workdir)
    control.start()
    _pin(control.pid, PLANE_CPU)
    try:
        yield control
    finally:
        control.stop()


class Fleet:
    """Fake proxies in `processes` client processes on CPU 1, each reporting to a JSON file
    every second (`reports()` merges what they wrote last). State-of-the-world streams by
    default: istiod keeps several MB per Delta stream under load, which at 5000 proxies
    would not fit this machine beside the others' tests."""

    def __init__(self, target: str, identities: list[tuple[str, dict[str, str]]], *,
                 processes: int = 1, connect_rate: float = 0.0, duration: float = 900.0,
                 per_stream: bool = False, mode: str = "sotw") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="pilotpy-fleet-"))
        self.count = len(identities)
        self.started = time.time()
        self._procs: list[subprocess.Popen[bytes]] = []
        self.report_files: list[Path] = []
        shares = [identities[i::processes] for i in range(processes)]
        for index, share in enumerate(s for s in shares if s):
            ids = self.workdir / f"identities-{index}.json"
            ids.write_text(json.dumps(share), encoding="utf-8")
            report = self.workdir / f"report-{index}.json"
            self.report_files.append(report)
            command = [sys.executable, str(FAKEPROXIES), "--target", target, "--identities",
                       str(ids), "--mode", mode, "--duration", str(duration), "--report",
                       str(report), "--report-interval", "1", "--istio-version",
                       ISTIO_VERSION, "--connect-rate", str(connect_rate / processes)]
            if per_stream:
                command.append("--per-stream")
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            _pin(process.pid, CLIENT_CPU)
            self._procs.append(process)

    def reports(self) -> list[dict[str, Any]]:
        out = []
        for path in self.report_files:
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text(encoding="utf-8")))
        return out

    def converged(self) -> int:
        return sum(r.get("converged", 0) for r in self.reports())

    def wait_converged(self, timeout: float, watch: int | None = None) -> float:
        """Seconds from the fleet's start until every proxy had its whole config; `watch`:
        the control plane's pid, whose RSS must stay under RSS_LIMIT_MB meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if watch is not None and rss_mb(watch) > RSS_LIMIT_MB:
                raise MemoryError(f"the control plane passed {RSS_LIMIT_MB} MB of RSS with "
                                  f"{self.converged()} of {self.count} proxies converged")
            reports = self.reports()
            if len(reports) == len(self.report_files) and sum(
                    r.get("converged", 0) for r in reports) >= self.count:
                return float(max(r["last_converged_at"] for r in reports)) - self.started
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError("a fake-proxy process exited early")
            time.sleep(0.2)
        raise TimeoutError(f"{self.converged()} of {self.count} proxies converged")

    def streams(self) -> list[dict[str, Any]]:
        """Every stream's state (only with per_stream)."""
        return [s for r in self.reports() for s in r.get("streams", [])]

    def stop(self) -> None:
        for process in self._procs:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._procs:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def routers(count: int, first: int = 0, extra_labels: dict[str, str] | None = None
            ) -> list[tuple[str, dict[str, str]]]:
    """Ingress gateway proxies of one class (the same labels), distinct ids."""
    labels = {"istio": "ingressgateway", **(extra_labels or {})}
    return [(f"router~10.250.{(i >> 8) & 255}.{i & 255}~istio-ingressgateway-{i}.istio-system~"
             "istio-system.svc.cluster.local", labels) for i in range(first, first + count)]


def fresh_sidecar(index: int, namespace: str = "bench") -> tuple[str, dict[str, str]]:
    """A sidecar of a class nobody else has (its own app label; no Service selects it)."""
    return (f"sidecar~10.251.{(index >> 8) & 255}.{index & 255}~fresh-{index}.{namespace}~"
            f"{namespace}.svc.cluster.local", {"app": f"fresh-{index}"})


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
