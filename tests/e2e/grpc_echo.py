"""A proxyless gRPC echo server and client on grpcio's own xDS support, for the proxyless
tier (tests/e2e/test_proxyless_grpc.py). Each runs in its own process, since a process has
one xDS bootstrap (`GRPC_XDS_BOOTSTRAP`).

    python -m tests.e2e.grpc_echo server <version> <ip>:<port> [<ip>:<port> ...]
    python -m tests.e2e.grpc_echo client

The server answers `/echo.Echo/Call` and `/echo.Echo/Other` with its version; a request
`sleep:<seconds>` makes it wait first. It listens through an xDS-enabled grpc.server, so it
serves only once pilotpy sent its inbound listener. The client reads one JSON command per
line on stdin, `{"target": "xds:///echo:9080", "count": 10, "metadata": {"k": "v"},
"payload": "", "timeout": 10, "method": "/echo.Echo/Call"}`, makes that many calls on one
channel per target (kept across commands, so config changes reach a running client) and
writes one JSON line: the count of each answer, or of each status code for failed calls.
Both end when stdin closes, and after MAX_LIFETIME at the latest."""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc

METHOD = "/echo.Echo/Call"
MAX_LIFETIME = 600.0  # a process the test forgot still ends


def _exit_when_stdin_closes() -> None:
    sys.stdin.read()


def serve(version: str, addresses: list[str]) -> None:
    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        text = request.decode()
        if text.startswith("sleep:"):
            time.sleep(float(text.removeprefix("sleep:")))
        return version.encode()

    # Every method a test calls is implemented: grpcio 1.85's xDS-enabled server aborts the
    # process on a call to a method it does not know (a CHECK failure in C-core).
    handler = grpc.method_handlers_generic_handler("echo.Echo", {
        name: grpc.unary_unary_rpc_method_handler(call) for name in ("Call", "Other")})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), xds=True)
    server.add_generic_rpc_handlers((handler,))
    # Plaintext: mTLS for proxyless gRPC comes with the security work.
    for address in addresses:
        server.add_secure_port(address, grpc.xds_server_credentials(
            grpc.insecure_server_credentials()))
    server.start()
    print("started", flush=True)
    waiter = threading.Thread(target=_exit_when_stdin_closes, daemon=True)
    waiter.start()
    waiter.join(MAX_LIFETIME)
    server.stop(grace=None)


def _calls(channel: grpc.Channel, command: dict[str, Any]) -> dict[str, int]:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        str(command.get("method", METHOD)))
    metadata = tuple(command.get("metadata", {}).items())
    payload = str(command.get("payload", "")).encode()
    timeout = float(command.get("timeout", 10.0))
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(int(command.get("count", 1))):
        try:
            seen[call(payload, timeout=timeout, metadata=metadata).decode()] += 1
        except grpc.RpcError as err:
            seen[err.code().name] += 1
    return dict(seen)


def client() -> None:
    started = time.monotonic()
    channels: dict[str, grpc.Channel] = {}
    for line in sys.stdin:
        if time.monotonic() - started > MAX_LIFETIME:
            break
        command = json.loads(line)
        target = command["target"]
        if target not in channels:
            channels[target] = grpc.insecure_channel(target)
        print(json.dumps(_calls(channels[target], command)), flush=True)
    for channel in channels.values():
        channel.close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], sys.argv[3:])
    else:
        client()
