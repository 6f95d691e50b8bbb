"""S13: a hostile neighbour. `pilotpy serve` (pinned to CPU 0) serves a real Envoy gateway;
another process (bench/hostile.py, pinned to CPU 1 with Envoy) runs one attack at a time.
Meanwhile a probe VirtualService is edited again and again, and the time from each edit to
Envoy applying the new route (its RDS update counter) is the propagation. Each attack gets a
fresh server, so one that breaks a server does not spoil the next; the server's RSS is
sampled throughout.

    python bench/s13.py [--attacks idle,flood,...] [--samples 8] [--root DIR]

`--root` runs another checkout's pilotpy as the server (the figures "before"); the attacker,
Envoy and this script come from this one. Prints one JSON object. Loopback only; every
process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402
from configgen import documents  # noqa: E402

from pilotpy.local.bootstrap import envoy_bootstrap  # noqa: E402
from pilotpy.local.envoy import EnvoyProcess, free_port  # noqa: E402

ATTACKS = ("idle", "flood", "names", "nack", "http", "config", "corrupt", "labels", "debug",
           "typeurls")
NODE = "router~127.0.0.1~gw-probe.istio-system~istio-system.svc.cluster.local"
SERVICES = 100
SAMPLE_TIMEOUT = 10.0
WARMUP = 3.0  # seconds of attack before the first sample


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 else []


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def probe_vs(timeout_s: int) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "probe", "namespace": "bench"},
            "spec": {"hosts": ["probe.bench.example.com"], "gateways": ["bench-gateway"],
                     "http": [{"timeout": f"{timeout_s}s",
                               "route": [{"destination": {"host": "svc-0"}}]}]}}


def write_config(directory: Path, gateway_port: int) -> None:
    directory.mkdir(parents=True)
    docs = documents(SERVICES)
    # The gateway Service maps 80 to a free port: Envoy binds it on every interface.
    docs[0]["spec"]["ports"][0]["targetPort"] = gateway_port
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    (directory / "mesh.yaml").write_text(yaml.dump_all(docs, Dumper=dumper), encoding="utf-8")
    write_probe(directory, 5)


def write_probe(directory: Path, timeout_s: int) -> None:
    temp = directory / ".probe.yaml.tmp"
    temp.write_text(yaml.safe_dump(probe_vs(timeout_s)), encoding="utf-8")
    temp.replace(directory / "probe.yaml")


class Sampler(threading.Thread):
    """The server's RSS every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> float:
        self._done.set()
        self.join(5)
        return self.peak


def http_size(url: str, timeout: float) -> int | None:
    """The length of the body at `url` (None: no answer)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with contextlib.suppress(OSError), opener.open(url, timeout=timeout) as response:
        return len(response.read())
    return None


def http_ok(url: str, timeout: float) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with contextlib.suppress(OSError), opener.open(url, timeout=timeout) as response:
        return bool(response.status == 200)
    return False


class Run:
    """A fresh server and Envoy for one attack."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.work = work
        self.config = work / "config"
        self.gateway_port = free_port()
        write_config(self.config, self.gateway_port)
        self.grpc_port, self.http_port, self.monitoring_port = (free_port() for _ in range(3))
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.server = subprocess.Popen(
            [*pinned(0), sys.executable, "-m", "pilotpy.cli", "--log-level", "warning",
             "serve", "--config", str(self.config), "--grpc-addr",
             f"127.0.0.1:{self.grpc_port}", "--grpc-tls-addr", "",
             "--http-addr", f"127.0.0.1:{self.http_port}",
             "--monitoring-addr", f"127.0.0.1:{self.monitoring_port}"],
            cwd=root, env=env, stdout=subprocess.DEVNULL,
            stderr=open(work / "server.log", "wb"))  # noqa: SIM115
        self.envoy: EnvoyProcess | None = None
        self.timeout_s = 5

    def start(self) -> None:
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{self.http_port}/ready", 1):
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError(f"pilotpy not ready; see {self.work / 'server.log'}")
            time.sleep(0.2)
        bootstrap = envoy_bootstrap(node_id=NODE, xds_address=("127.0.0.1", self.grpc_port),
                                    labels={"istio": "ingressgateway"},
                                    admin_port=free_port(), status_port=free_port(),
                                    stats_port=free_port())
        self.envoy = EnvoyProcess(bootstrap, self.work, name="gateway", log_level="error",
                                  concurrency=1, extra_args=())
        self.envoy.start()
        if self.envoy.pid:
            subprocess.run(["taskset", "-pc", "1", str(self.envoy.pid)], check=False,
                           capture_output=True)
        self.envoy.wait_for(lambda: self.rds_updates() > 0, 60, "Envoy's first routes")

    def rds_updates(self) -> int:
        assert self.envoy is not None
        try:
            stats = self.envoy.stats("rds.http.80.update_success")
        except OSError:
            return -1
        return sum(v for k, v in stats.items() if k.endswith("rds.http.80.update_success"))

    def propagation(self) -> float | None:
        """Seconds from an edit of the probe to Envoy applying it (None: not in time)."""
        before = self.rds_updates()
        self.timeout_s = 6 if self.timeout_s == 5 else 5
        started = time.monotonic()
        write_probe(self.config, self.timeout_s)
        while time.monotonic() - started < SAMPLE_TIMEOUT:
            if self.rds_updates() > before:
                return time.monotonic() - started
            time.sleep(0.005)
        return None

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(15)
        if self.server.poll() is None:
            self.server.kill()
            self.server.wait(10)


def attack(run: Run, name: str, samples: int) -> dict[str, Any]:
    attacker = None
    sampler = Sampler(run.server.pid)
    idle_rss = rss_mb(run.server.pid)
    sampler.start()
    if name != "idle":
        attacker = subprocess.Popen(
            [*pinned(1), sys.executable, str(HERE / "hostile.py"), "--attack", name,
             "--grpc", f"127.0.0.1:{run.grpc_port}",
             "--http-ports", f"{run.http_port},{run.monitoring_port}",
             "--config-dir", str(run.config), "--duration", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(WARMUP)
    times = []
    for _ in range(samples):
        if run.server.poll() is not None:
            break
        times.append(run.propagation())
        time.sleep(0.3)
    outcome: dict[str, Any] = {}
    if attacker is not None:
        attacker.send_signal(signal.SIGTERM)
        try:
            out, _ = attacker.communicate(timeout=30)
            outcome = json.loads(out.decode().strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            attacker.kill()
            attacker.wait(10)
    time.sleep(2)
    after_rss = rss_mb(run.server.pid)
    metrics = http_size(f"http://127.0.0.1:{run.monitoring_port}/metrics", 10)
    peak = sampler.stop()
    measured = sorted(t for t in times if t is not None)
    missed = sum(1 for t in times if t is None)
    return {
        "attack": name, "samples": [None if t is None else round(t, 3) for t in times],
        "missed": missed, "server_alive": run.server.poll() is None,
        "propagation_p50": round(statistics.median(measured), 3) if measured else None,
        # With a handful of samples the 99th percentile is the slowest; a miss counts as
        # the sample timeout.
        "propagation_p99": SAMPLE_TIMEOUT if missed else (
            round(measured[-1], 3) if measured else None),
        "rss_idle_mb": round(idle_rss, 1), "rss_peak_mb": round(peak, 1),
        "rss_after_mb": round(after_rss, 1),
        "metrics_kb": None if metrics is None else round(metrics / 1024, 1),
        "attacker": outcome,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--root", type=Path, default=HERE.parent,
                        help="the checkout whose pilotpy serves (default: this one)")
    args = parser.parse_args()
    results = []
    for name in args.attacks.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"pilotpy-s13-{name}-"))
        run = Run(args.root.resolve(), work)
        try:
            run.start()
            results.append(attack(run, name, args.samples))
        except Exception as err:  # a broken run is a result too
            results.append({"attack": name, "error": f"{type(err).__name__}: {err}"})
        finally:
            run.stop()
    idle = next((r for r in results if r["attack"] == "idle" and "error" not in r), None)
    print(json.dumps({"scenario": "S13", "root": str(args.root), "services": SERVICES,
                      "samples": args.samples, "idle": idle, "attacks": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
