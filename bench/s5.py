"""S5: memory per connected proxy. `pilotpy serve` (pinned to CPU 0) serves a shared config to
batches of fake ADS proxies (bench/fakeproxies.py, pinned to CPU 1); the server's RSS is
sampled at each step and the slope per proxy fitted by least squares.

Prints one JSON object. Everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from configgen import write  # noqa: E402

from pilotpy.local.envoy import free_port  # noqa: E402

NODE = "router~10.0.0.1~gw-{i}.istio-system~istio-system.svc.cluster.local"


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if os.cpu_count() and os.cpu_count() > 1 else []  # type: ignore[operator]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), opener.open(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def read_report(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def start_proxies(target: str, count: int, offset: int, *, mode: str, report: Path,
                  duration: float) -> subprocess.Popen[bytes]:
    template = NODE.replace("{i}", f"{{i}}-{offset}")
    return subprocess.Popen(
        [*pinned(1), sys.executable, str(HERE / "fakeproxies.py"), "--target", target,
         "--count", str(count), "--node-template", template, "--labels",
         "istio=ingressgateway", "--namespace", "istio-system", "--mode", mode,
         "--duration", str(duration), "--report", str(report), "--report-interval", "1",
         "--connect-rate", "500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_converged(report: Path, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = read_report(report)
        if data.get("converged", 0) >= count:
            return data
        time.sleep(0.5)
    raise TimeoutError(f"{report.name}: {data.get('converged')} of {count} converged")


def least_squares_slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den


def run(steps: list[int], services: int, mode: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pilotpy-s5-"))
    write(work / "config", services)
    grpc_port, http_port = free_port(), free_port()
    server = subprocess.Popen(
        [*pinned(0), sys.executable, "-m", "pilotpy.cli", "--log-level", "warning", "serve",
         "--config", str(work / "config"), "--grpc-addr", f"127.0.0.1:{grpc_port}",
         "--http-addr", f"127.0.0.1:{http_port}", "--grpc-tls-addr", "",
         "--monitoring-addr", ""],
        stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "wb"))  # noqa: SIM115
    fleets: list[subprocess.Popen[bytes]] = []
    target = f"127.0.0.1:{grpc_port}"
    duration = 60.0 + 30.0 * len(steps)
    try:
        wait_ready(f"http://127.0.0.1:{http_port}/ready", 60)
        # One proxy first: the class snapshot is generated once and shared; what follows is
        # the cost of streams alone.
        fleets.append(start_proxies(target, 1, 0, mode=mode, report=work / "warm.json",
                                    duration=duration))
        wait_converged(work / "warm.json", 1, 60)
        time.sleep(1)
        points = [(1, rss_mb(server.pid))]
        convergence = []
        connected = 1
        for index, total in enumerate(steps, start=1):
            batch = total - connected
            report = work / f"batch-{index}.json"
            fleets.append(start_proxies(target, batch, index, mode=mode, report=report,
                                        duration=duration))
            data = wait_converged(report, batch, 120)
            connected = total
            time.sleep(2)
            points.append((connected, rss_mb(server.pid)))
            convergence.append({"batch": batch, "connected": connected,
                                "convergence_seconds": data.get("convergence_seconds")})
        slope_mb = least_squares_slope(points)
        return {
            "scenario": "S5", "mode": mode, "services": services,
            "rss_mb_by_connected_proxies": {str(n): round(r, 1) for n, r in points},
            "rss_kb_per_proxy": round(slope_mb * 1024, 1),
            "server_cpu_seconds": round(cpu_seconds(server.pid), 2),
            "batches": convergence,
        }
    finally:
        for fleet in fleets:
            fleet.send_signal(signal.SIGTERM)
        for fleet in fleets:
            with contextlib.suppress(subprocess.TimeoutExpired):
                fleet.wait(20)
            if fleet.poll() is None:
                fleet.kill()
        server.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)
        if server.poll() is None:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="1000,2000",
                        help="connected-proxy totals to measure at, comma-separated")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--mode", choices=("sotw", "delta"), default="sotw")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    print(json.dumps(run(steps, args.services, args.mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
