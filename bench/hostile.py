"""S13's hostile neighbour: one attack against a running pilotpy, until SIGTERM or --duration.

    python bench/hostile.py --attack flood --grpc 127.0.0.1:15010 --duration 30

Attacks (docs/benchmarks.md, S13), each bounded in count and time, loopback only:

- flood: streams that send large requests without reading the answers, reconnecting;
- names: 30 SotW streams each opening a subscription to 100,000 unknown EDS names, and a
  Delta stream adding one name per request;
- nack: streams NACKing every response with a 64 KiB message, as fast as they can;
- http: 1000 connections to each HTTP port, half of them with half a request, reopened as
  the server closes them;
- config: an AuthorizationPolicy file holding an alias bomb, and one nested 1000 levels,
  rewritten every half second in the watched config directory;
- corrupt: streams that connect, take an answer and send bytes that do not decode;
- labels: 100 gateways differing only in a label no selector reads;
- debug: 50 concurrent /debug/configz readers;
- typeurls: streams each asking for 30 made-up type URLs (never the same twice), reconnecting.

Prints one JSON line when it stops: what the attack did (connections, requests, refusals).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import grpc.aio
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from tests.xds_client import DELTA_METHOD, SOTW_METHOD, build_node, channel_options

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
NODE = "router~127.0.0.{i}~attacker-{i}.istio-system~istio-system.svc.cluster.local"
LABELS = {"istio": "ingressgateway"}
GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"

counts: Counter[str] = Counter()


def _identity(data: bytes) -> bytes:
    return data


def sotw(type_url: str, names: list[str] | None = None, *, node: int | None = None,
         nonce: str = "", error: str | None = None, labels: dict[str, str] | None = None
         ) -> bytes:
    request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names or [],
                                             response_nonce=nonce)
    if node is not None:
        request.node.CopyFrom(build_node(NODE.format(i=node % 250 + 2), {
            "LABELS": labels or LABELS, "NAMESPACE": "istio-system"}))
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return bytes(request.SerializeToString())


class Stream:
    """One raw ADS stream: bytes out through a queue, responses read on demand."""

    def __init__(self, target: str, *, delta: bool = False) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=channel_options())
        method = self._channel.stream_stream(DELTA_METHOD if delta else SOTW_METHOD,
                                             request_serializer=_identity,
                                             response_deserializer=_identity)
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.call = method(self._requests())
        counts["streams"] += 1

    async def _requests(self) -> AsyncIterator[bytes]:
        while (data := await self._out.get()) is not None:
            yield data
            counts["requests"] += 1

    def send(self, data: bytes) -> None:
        self._out.put_nowait(data)

    async def recv(self, timeout: float = 30.0) -> bytes | None:
        try:
            async with asyncio.timeout(timeout):
                data: Any = await self.call.read()
        except grpc.aio.AioRpcError as err:
            counts[f"ended {err.code().name}"] += 1
            return None
        except (TimeoutError, asyncio.InvalidStateError) as err:
            counts[f"ended {type(err).__name__}"] += 1
            return None
        return None if data is grpc.aio.EOF else bytes(data)

    async def close(self) -> None:
        self._out.put_nowait(None)
        self.call.cancel()
        await self._channel.close(grace=None)


def response_nonce(data: bytes) -> str:
    return str(discovery_pb2.DiscoveryResponse.FromString(data).nonce)



async def in_four_workers(one: Callable[[int], Awaitable[None]], until: float) -> None:
    """Run `one(index)` again and again in four concurrent workers until `until`, each worker
    taking every fourth index (so no two streams share a node id)."""
    async def loop(worker: int) -> None:
        index = worker
        while time.monotonic() < until:
            await one(index)
            index += 4

    await asyncio.gather(*(loop(i) for i in range(4)))

async def repeat(until: float, attack: Callable[[], Awaitable[None]]) -> None:
    while time.monotonic() < until:
        try:
            await attack()
        except (grpc.aio.AioRpcError, OSError, asyncio.InvalidStateError):
            counts["errors"] += 1
            await asyncio.sleep(0.1)


# -- attacks ------------------------------------------------------------------------------------

async def flood(target: str, until: float) -> None:
    big = sotw(ENDPOINT, [f"outbound|80||flood-{i}.example" for i in range(20_000)])

    async def one() -> None:
        stream = Stream(target)
        try:
            stream.send(sotw(CLUSTER, node=1))
            for _ in range(200):
                if stream.call.done() or time.monotonic() > until:
                    break
                stream.send(big)
                await asyncio.sleep(0.01)
            if stream.call.done():
                counts["cut off"] += 1
        finally:
            await stream.close()

    await asyncio.gather(*(repeat(until, one) for _ in range(3)))


async def names(target: str, until: float) -> None:
    held = []
    for index in range(30):
        if time.monotonic() > until:
            break
        stream = Stream(target)
        held.append(stream)
        stream.send(sotw(CLUSTER, node=index))
        await stream.recv()
        stream.send(sotw(ENDPOINT, [f"s{index}-unknown-{i}" for i in range(100_000)]))
        if await stream.recv() is not None:
            counts["answered 100k"] += 1
    delta = Stream(target, delta=True)
    first = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER)
    first.node.CopyFrom(build_node(NODE.format(i=200), {"LABELS": LABELS}))
    delta.send(first.SerializeToString())
    await delta.recv()
    delta.send(discovery_pb2.DeltaDiscoveryRequest(
        type_url=ENDPOINT, resource_names_subscribe=[f"d-{i}" for i in range(99_000)]
    ).SerializeToString())
    await delta.recv()
    grown = 0
    while time.monotonic() < until and grown < 900:
        delta.send(discovery_pb2.DeltaDiscoveryRequest(
            type_url=ENDPOINT, resource_names_subscribe=[f"more-{grown}"]).SerializeToString())
        if await delta.recv() is None:
            break
        grown += 1
    counts["delta names added one at a time"] = grown
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    for stream in [*held, delta]:
        await stream.close()


async def nack(target: str, until: float) -> None:
    message = "x" * 65536

    async def one(index: int) -> None:
        stream = Stream(target)
        try:
            stream.send(sotw(CLUSTER, node=index))
            answer = await stream.recv()
            if answer is None:
                return
            nonce = response_nonce(answer)
            while time.monotonic() < until and not stream.call.done():
                stream.send(sotw(CLUSTER, nonce=nonce, error=message))
                counts["nacks"] += 1
                await asyncio.sleep(0)
        finally:
            await stream.close()

    def attacker(index: int) -> Callable[[], Awaitable[None]]:
        return lambda: one(index)

    await asyncio.gather(*(repeat(until, attacker(i)) for i in range(4)))


async def http(ports: list[int], until: float) -> None:
    async def hold(port: int, index: int) -> None:
        while time.monotonic() < until:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                counts["connect failed"] += 1
                await asyncio.sleep(0.1)
                continue
            counts["connections"] += 1
            if index % 2:
                writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(max(0.01, until - time.monotonic())):
                    await reader.read()  # until the server closes it
            writer.close()

    await asyncio.gather(*(hold(port, i) for port in ports for i in range(1000)))


ALIAS_BOMB = "\n".join(
    ["apiVersion: security.istio.io/v1", "kind: AuthorizationPolicy",
     "metadata: {{name: bomb-{n}, namespace: default}}", "spec:",
     "  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"  {name}: &{name} [{', '.join(['*' + previous] * 9)}]"
       for previous, name in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"


def deep_policy(n: int, levels: int = 1000) -> str:
    nested = "".join(f"{'  ' * (i + 2)}a:\n" for i in range(levels))
    return ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: deep-{n}, namespace: default}}\nspec:\n  rules:\n"
            + nested + "  " * (levels + 2) + "x\n")


async def config(directory: Path, until: float) -> None:
    n = 0
    try:
        while time.monotonic() < until:
            for name, text in (("bomb.yaml", ALIAS_BOMB.format(n=n % 2)),
                               ("deep.yaml", deep_policy(n % 2))):
                temp = directory / f".{name}.tmp"
                temp.write_text(text, encoding="utf-8")
                temp.replace(directory / name)
            counts["writes"] += 1
            n += 1
            await asyncio.sleep(0.5)
    finally:
        for name in ("bomb.yaml", "deep.yaml"):
            (directory / name).unlink(missing_ok=True)


async def corrupt(target: str, until: float) -> None:
    async def one(index: int) -> None:
        stream = Stream(target, delta=bool(index % 2))
        try:
            if index % 2:
                first = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER)
                first.node.CopyFrom(build_node(NODE.format(i=index % 250 + 2), {"LABELS": LABELS}))
                stream.send(first.SerializeToString())
            else:
                stream.send(sotw(CLUSTER, node=index))
            await stream.recv()
            stream.send(GARBAGE)
            await stream.recv()
            counts["corrupt sent"] += 1
        finally:
            await stream.close()

    await in_four_workers(one, until)


async def labels(target: str, until: float) -> None:
    held = []
    for index in range(100):
        stream = Stream(target)
        held.append(stream)
        stream.send(sotw(CLUSTER, node=index, labels={**LABELS, "run": str(index)}))
    for stream in held:
        if await stream.recv() is not None:
            counts["connected"] += 1
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    for stream in held:
        await stream.close()


async def debug(port: int, until: float) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def read() -> None:
        with contextlib.suppress(OSError), opener.open(
                f"http://127.0.0.1:{port}/debug/configz", timeout=30) as response:
            response.read()
            counts["reads"] += 1

    async def reader() -> None:
        while time.monotonic() < until:
            await asyncio.to_thread(read)

    await asyncio.gather(*(reader() for _ in range(50)))


async def typeurls(target: str, until: float) -> None:
    made_up = iter(range(10**9))

    async def one(index: int) -> None:
        stream = Stream(target)
        try:
            stream.send(sotw(CLUSTER, node=index))
            if await stream.recv() is None:
                return
            for _ in range(30):
                stream.send(sotw(f"type.googleapis.com/made.up.Type{next(made_up)}", ["x"]))
                if await stream.recv() is None:
                    return
                counts["type urls asked"] += 1
        finally:
            await stream.close()

    await in_four_workers(one, until)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attack", required=True, choices=(
        "flood", "names", "nack", "http", "config", "corrupt", "labels", "debug",
        "typeurls"))
    parser.add_argument("--grpc", default="127.0.0.1:15010")
    parser.add_argument("--http-ports", default="8080,15014")
    parser.add_argument("--config-dir", type=Path)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    until = time.monotonic() + args.duration
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    ports = [int(p) for p in args.http_ports.split(",")]
    attacks: dict[str, Callable[[], Awaitable[None]]] = {
        "flood": lambda: flood(args.grpc, until),
        "names": lambda: names(args.grpc, until),
        "nack": lambda: nack(args.grpc, until),
        "http": lambda: http(ports, until),
        "config": lambda: config(args.config_dir, until),
        "corrupt": lambda: corrupt(args.grpc, until),
        "labels": lambda: labels(args.grpc, until),
        "debug": lambda: debug(ports[0], until),
        "typeurls": lambda: typeurls(args.grpc, until),
    }
    with contextlib.suppress(asyncio.CancelledError):
        await attacks[args.attack]()
    print(json.dumps({"attack": args.attack, **counts}), flush=True)
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(asyncio.run(main()))
