"""S12: the mesh CA under load. `pilotpy serve` (pinned to CPU 0) signs CSRs from 50
concurrent clients over its TLS port (RSA 2048 keys and CA, SHA-256, as istiod and
pilot-agent by default; each call authenticated by a JWT checked against the JWKS of
--jwt-rule), while 100 fake proxies on its plaintext port follow config changes. The load
and the proxies run in separate processes pinned to CPU 1.

Measured: CSRs signed, signatures per second and per CPU-second of the server, CSR latency
p50/p99 at the client, and the push latency (config file written -> new CDS at a proxy)
p50/p99 with and without the CSR load.

    python bench/s12.py [--csrs 1000] [--rate 500] [--proxies 100] [--concurrency 50]

Prints one JSON object. Everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from s5 import cpu_seconds, pinned, wait_ready  # noqa: E402

from pilotpy.local.envoy import free_port  # noqa: E402

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
CREATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"
ISTIOD = "istiod.istio-system.svc"
ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE = "router~10.0.0.1~gw-{i}.istio-system~istio-system.svc.cluster.local"
TOGGLES = 15
TOGGLE_INTERVAL = 0.4


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the fake proxies (a subprocess) -----------------------------------------------------------

async def proxies(target: str, count: int, seconds: float, out: Path, ready: Path) -> None:
    import grpc
    from envoy.service.discovery.v3 import discovery_pb2

    arrivals: list[tuple[float, int, str]] = []
    first = asyncio.Event()
    seen = 0

    async def one(i: int) -> None:
        nonlocal seen
        queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

        async def requests() -> Any:
            while True:
                yield await queue.get()

        request = discovery_pb2.DiscoveryRequest(type_url=CDS)
        request.node.id = NODE.format(i=i)
        request.node.metadata.update({"NAMESPACE": "istio-system",
                                      "LABELS": {"istio": "ingressgateway"}})
        queue.put_nowait(request)
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.stream_stream(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
                "StreamAggregatedResources",
                request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString)(requests())
            async for response in call:
                arrivals.append((time.time(), i, response.version_info))
                if len([a for a in arrivals if a[1] == i]) == 1:
                    seen += 1
                    if seen == count:
                        first.set()
                queue.put_nowait(discovery_pb2.DiscoveryRequest(
                    type_url=CDS, version_info=response.version_info,
                    response_nonce=response.nonce))

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.wait_for(first.wait(), 60)
    ready.write_text("ready")
    stop = ready.with_suffix(".stop")
    deadline = time.monotonic() + seconds
    while not stop.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.write_text(json.dumps(arrivals))


# -- the CSR load (a subprocess) ----------------------------------------------------------------

async def csrs(target: str, root: bytes, tokens: list[str], *, concurrency: int, total: int,
               rate: float, out: Path) -> None:
    """`total` CSRs from `concurrency` clients (one TLS connection and token each): each
    client in turn when `rate` is 0 (capacity), else paced at `rate` per second overall
    (latency at a given load)."""
    import grpc
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from pilotpy.ca import ca_pb2

    latencies: list[float] = []
    errors: list[str] = []
    per_client = total // concurrency

    def csr_of(n: int) -> str:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        identity = f"spiffe://cluster.local/ns/bench/sa/sa-{n}"
        return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(identity)]), critical=True)
                .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())

    requests = [ca_pb2.IstioCertificateRequest(csr=csr_of(n), validity_duration=86400)
                for n in range(concurrency)]
    channels = [grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root),
                                        options=[("grpc.ssl_target_name_override", ISTIOD)])
                for _ in range(concurrency)]
    calls = [c.unary_unary(CREATE,
                           request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
                           response_deserializer=ca_pb2.IstioCertificateResponse.FromString)
             for c in channels]
    for channel in channels:
        await channel.channel_ready()

    async def one(n: int) -> None:
        started = time.perf_counter()
        try:
            await calls[n](requests[n], metadata=[("authorization", f"Bearer {tokens[n]}")],
                           timeout=30)
        except grpc.aio.AioRpcError as err:
            errors.append(f"{err.code().name}: {err.details()}")
            return
        latencies.append(time.perf_counter() - started)

    async def client(n: int) -> None:
        if not rate:
            for _ in range(per_client):
                await one(n)
            return
        interval = concurrency / rate
        start = began + n * interval / concurrency
        pending = []
        for k in range(per_client):
            await asyncio.sleep(max(0.0, start + k * interval - time.perf_counter()))
            pending.append(asyncio.create_task(one(n)))
        await asyncio.gather(*pending)

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(concurrency)))
    seconds = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    out.write_text(json.dumps({"latencies": latencies, "errors": errors[:5],
                               "error_count": len(errors), "seconds": seconds}))


# -- the orchestration ----------------------------------------------------------------------------

def jwt_material(count: int) -> tuple[str, list[str]]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="bench", alg="RS256")
    rule = json.dumps({"issuer": ISSUER, "jwks": json.dumps({"keys": [jwk]})})
    now = int(time.time())
    tokens = [jwt.encode({"iss": ISSUER, "aud": ["istio-ca"], "iat": now, "exp": now + 3600,
                          "sub": f"system:serviceaccount:bench:sa-{n}"}, key,
                         algorithm="RS256", headers={"kid": "bench"}) for n in range(count)]
    return rule, tokens


def toggle(config: Path, n: int) -> float:
    """A DestinationRule whose subsets change the gateway's clusters; returns when written."""
    subset = f"s{n % 2}"
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "toggle", "namespace": "bench"},
            "spec": {"host": "svc-0", "subsets": [{"name": subset,
                                                   "labels": {"version": subset}}]}}
    staging = config / ".toggle.json"
    staging.write_text(json.dumps(rule))
    written = time.time()
    staging.replace(config / "toggle.json")
    return written


def push_latencies(arrivals: list[list[Any]], writes: list[float]) -> list[float]:
    out = []
    for arrived, _, _ in arrivals:
        before = [w for w in writes if w <= arrived]
        if before and arrived - before[-1] < TOGGLE_INTERVAL:
            out.append(arrived - before[-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role")
    p = sub.add_parser("proxies")
    p.add_argument("--target")
    p.add_argument("--count", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--out", type=Path)
    p.add_argument("--ready", type=Path)
    c = sub.add_parser("csrs")
    c.add_argument("--target")
    c.add_argument("--root", type=Path)
    c.add_argument("--tokens", type=Path)
    c.add_argument("--concurrency", type=int)
    c.add_argument("--total", type=int)
    c.add_argument("--rate", type=float)
    c.add_argument("--out", type=Path)
    parser.add_argument("--csrs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0,
                        help="CSRs per second of the paced run (the target load)")
    parser.add_argument("--proxies", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    if args.role == "proxies":
        asyncio.run(proxies(args.target, args.count, args.seconds, args.out, args.ready))
        return 0
    if args.role == "csrs":
        asyncio.run(csrs(args.target, args.root.read_bytes(),
                         json.loads(args.tokens.read_text()), concurrency=args.concurrency,
                         total=args.total, rate=args.rate, out=args.out))
        return 0
    return orchestrate(args)


def orchestrate(args: argparse.Namespace) -> int:
    from configgen import write

    work = Path(tempfile.mkdtemp(prefix="pilotpy-s12-"))
    config = work / "config"
    write(config, services=50)
    toggle(config, 0)
    rule, tokens = jwt_material(args.concurrency)
    (work / "tokens.json").write_text(json.dumps(tokens))
    grpc_port, tls_port, http_port = free_port(), free_port(), free_port()
    server = subprocess.Popen(
        [*pinned(0), sys.executable, "-m", "pilotpy.cli", "--log-level", "warning", "serve",
         "--config", str(config), "--grpc-addr", f"127.0.0.1:{grpc_port}",
         "--grpc-tls-addr", f"127.0.0.1:{tls_port}", "--http-addr", f"127.0.0.1:{http_port}",
         "--monitoring-addr", "", "--jwt-rule", rule, "--ca-dir", str(work / "ca"),
         "--poll-interval", "0.02", "--webhook-addr", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[subprocess.Popen[bytes]] = [server]
    try:
        wait_ready(f"http://127.0.0.1:{http_port}/ready", 60)
        phase = TOGGLES * TOGGLE_INTERVAL
        total = 2 * phase + 600  # at most: the proxies stop when told
        ready = work / "proxies.ready"
        proxies_process = subprocess.Popen(
            [*pinned(1), sys.executable, __file__, "proxies", "--target",
             f"127.0.0.1:{grpc_port}", "--count", str(args.proxies), "--seconds", str(total),
             "--out", str(work / "arrivals.json"), "--ready", str(ready)])
        children.append(proxies_process)
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline, "the fake proxies did not converge"
            time.sleep(0.1)
        time.sleep(1)
        idle_writes = []
        for n in range(1, TOGGLES + 1):
            idle_writes.append(toggle(config, n))
            time.sleep(TOGGLE_INTERVAL)

        def load(total: int, rate: float, name: str) -> subprocess.Popen[bytes]:
            process = subprocess.Popen(
                [*pinned(1), sys.executable, __file__, "csrs", "--target",
                 f"127.0.0.1:{tls_port}", "--root", str(work / "ca" / "root-cert.pem"),
                 "--tokens", str(work / "tokens.json"), "--concurrency",
                 str(args.concurrency), "--total", str(total), "--rate", str(rate), "--out",
                 str(work / name)])
            children.append(process)
            return process

        # Capacity: the CSRs as fast as 50 clients in turn get them signed.
        cpu_before = cpu_seconds(server.pid)
        load(args.csrs, 0, "capacity.json").wait(300)
        capacity_cpu = cpu_seconds(server.pid) - cpu_before
        # Latency at the target rate, pushes going on meanwhile.
        paced_total = int(args.rate * (phase + 3))
        paced = load(paced_total, args.rate, "paced.json")
        time.sleep(2)  # keys made, channels connected
        load_writes = []
        for n in range(TOGGLES + 1, 2 * TOGGLES + 1):
            load_writes.append(toggle(config, n))
            time.sleep(TOGGLE_INTERVAL)
        paced.wait(300)
        ready.with_suffix(".stop").write_text("stop")
        proxies_process.wait(60)
        arrivals = json.loads((work / "arrivals.json").read_text())
        capacity = json.loads((work / "capacity.json").read_text())
        at_rate = json.loads((work / "paced.json").read_text())
        idle = push_latencies(arrivals, idle_writes)
        loaded = push_latencies(arrivals, load_writes)
        signed = len(capacity["latencies"])

        def ms(values: list[float]) -> dict[str, float]:
            return {"p50": round(1000 * percentile(values, 0.5), 1),
                    "p99": round(1000 * percentile(values, 0.99), 1)}

        report = {
            "scenario": "S12", "proxies": args.proxies, "concurrency": args.concurrency,
            "key": "RSA 2048 (CA and CSRs), SHA-256",
            "capacity": {"csrs_signed": signed, "errors": capacity["error_count"],
                         "seconds": round(capacity["seconds"], 2),
                         "signatures_per_second": round(signed / capacity["seconds"], 1),
                         "server_cpu_seconds": round(capacity_cpu, 2),
                         "signatures_per_cpu_second": round(signed / capacity_cpu, 1),
                         "latency_ms": ms(capacity["latencies"])},
            "at_rate": {"rate": args.rate, "csrs_signed": len(at_rate["latencies"]),
                        "errors": at_rate["error_count"],
                        "achieved_per_second": round(len(at_rate["latencies"])
                                                     / at_rate["seconds"], 1),
                        "latency_ms": ms(at_rate["latencies"])},
            "push_latency_ms_idle": {**ms(idle), "samples": len(idle)},
            "push_latency_ms_at_rate": {**ms(loaded), "samples": len(loaded)},
            "push_samples_expected": args.proxies * TOGGLES,
            "error_samples": capacity["errors"] + at_rate["errors"],
        }
        print(json.dumps(report))
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
        subprocess.run(["rm", "-rf", str(work)], check=False)



if __name__ == "__main__":
    sys.exit(main())
