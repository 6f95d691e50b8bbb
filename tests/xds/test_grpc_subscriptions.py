"""A proxyless gRPC client (`GENERATOR: grpc`) names what it wants: named-only resources (a
listener under a short name, an xDS server's inbound listener, every cluster, as istiod's
gRPC generator builds them only when asked) are served to a subscription naming them and
never to a wildcard (docs/proxyless-grpc.md)."""

from __future__ import annotations

from typing import Any

from pilotpy.xds.types import CLUSTER, LISTENER
from tests.xds.xds_harness import HTTPBIN, HTTPBIN_DEFAULT, Harness, decoded_delta, sotw_names

CLIENT = "sidecar~127.0.0.50~grpc-client.default~default.svc.cluster.local"
CLIENT_META: dict[str, Any] = {"GENERATOR": "grpc", "NAMESPACE": "default"}
# The httpbin "pod" v1 of the W1 config, as an xDS-enabled gRPC server.
SERVER = "sidecar~127.0.0.11~httpbin-v1.default~default.svc.cluster.local"
SERVER_META: dict[str, Any] = {**CLIENT_META, "INSTANCE_IPS": "127.0.0.11"}
FQDN_LISTENER = f"{HTTPBIN}:80"
SHORT_LISTENER = "httpbin-service:80"
INBOUND = "xds.istio.io/grpc/lds/inbound/127.0.0.11:8000"


async def test_grpc_wildcard_lds_gets_fqdn_listeners_and_no_short_names(xds: Harness) -> None:
    async with xds.sotw(CLIENT, CLIENT_META) as c:
        await c.request(LISTENER)
        names = sotw_names(await c.recv())
        assert FQDN_LISTENER in names
        assert SHORT_LISTENER not in names


async def test_grpc_short_name_listener_is_served_by_name(xds: Harness) -> None:
    async with xds.sotw(CLIENT, CLIENT_META) as c:
        await c.request(LISTENER, [SHORT_LISTENER])
        assert sotw_names(await c.recv()) == [SHORT_LISTENER]


async def test_grpc_wildcard_cds_gets_nothing_and_named_cds_the_cluster(xds: Harness) -> None:
    async with xds.sotw(CLIENT, CLIENT_META) as c:
        await c.request(CLUSTER)
        assert sotw_names(await c.recv()) == []
    async with xds.sotw(CLIENT, CLIENT_META) as c:
        await c.request(CLUSTER, [HTTPBIN_DEFAULT])
        assert sotw_names(await c.recv()) == [HTTPBIN_DEFAULT]


async def test_grpc_server_inbound_listener_is_served_by_name(xds: Harness) -> None:
    async with xds.sotw(SERVER, SERVER_META) as c:
        await c.request(LISTENER, [INBOUND])
        assert sotw_names(await c.recv()) == [INBOUND]


async def test_grpc_delta_short_name_is_removed_with_its_service(xds: Harness) -> None:
    async with xds.delta(CLIENT, CLIENT_META) as c:
        await c.subscribe(LISTENER, [SHORT_LISTENER])
        first = await c.recv()
        assert sorted(decoded_delta(first)) == [SHORT_LISTENER]
        await c.ack(first)
        wait = xds.pushed()
        xds.config.remove("Service", "httpbin-service")
        await wait()
        gone = await c.recv()
        assert list(gone.removed_resources) == [SHORT_LISTENER]
