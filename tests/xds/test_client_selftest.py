"""Self-test of the scripted ADS client and the fake-proxy load generator against a stub
ADS server that lives in this file (pilotpy's own server is tested elsewhere)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import pytest_asyncio
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotpy.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds_client import (
    DeltaClient,
    SotwClient,
    StreamClosedError,
    channel_options,
    message_class,
    unpack_any,
)


def _load_fakeproxies() -> Any:
    # bench/ is a directory of scripts, not a package: load the script by path so mypy and
    # pytest do not see it under two module names.
    path = Path(__file__).resolve().parents[2] / "bench" / "fakeproxies.py"
    spec = importlib.util.spec_from_file_location("fakeproxies", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve their module through sys.modules while the class is created.
    sys.modules.setdefault("fakeproxies", module)
    spec.loader.exec_module(module)
    return module


fakeproxies = _load_fakeproxies()
ABORT = "type.googleapis.com/test.Abort"
_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _pack(msg: Any) -> Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def _resources(type_url: str, names: Sequence[str]) -> list[tuple[str, Any]]:
    """(name, resource) pairs the stub serves for a request; wildcard types ignore names."""
    if type_url == CLUSTER:
        cluster = cluster_pb2.Cluster(name="c1", type=cluster_pb2.Cluster.EDS)
        cluster.eds_cluster_config.service_name = "c1"
        return [("c1", cluster)]
    if type_url == LISTENER:
        hcm = http_connection_manager_pb2.HttpConnectionManager(stat_prefix="l1")
        hcm.rds.route_config_name = "r1"
        chain = listener_components_pb2.FilterChain(
            filters=[
                listener_components_pb2.Filter(
                    name="envoy.filters.network.http_connection_manager",
                    typed_config=_pack(hcm),
                )
            ]
        )
        return [("l1", listener_pb2.Listener(name="l1", filter_chains=[chain]))]
    if type_url == ENDPOINT:
        return [(n, endpoint_pb2.ClusterLoadAssignment(cluster_name=n)) for n in names]
    if type_url == ROUTE:
        return [(n, route_pb2.RouteConfiguration(name=n)) for n in names]
    return []


class StubAds:
    """Answers every SotW request without a nonce, and every delta request that subscribes
    (or opens a type), with a fresh version and nonce; ignores ACKs and NACKs; aborts with
    INVALID_ARGUMENT on the ABORT type."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.delta_requests: list[Any] = []
        self._counter = 0

    def _next(self) -> tuple[str, str]:
        self._counter += 1
        return f"v{self._counter}", f"n{self._counter}"

    async def sotw(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            self.requests.append(request)
            if request.type_url == ABORT:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "stub: bad request")
            if request.response_nonce:
                continue
            version, nonce = self._next()
            yield discovery_pb2.DiscoveryResponse(
                type_url=request.type_url,
                version_info=version,
                nonce=nonce,
                resources=[
                    _pack(r) for _, r in _resources(request.type_url, request.resource_names)
                ],
            )

    async def delta(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        opened: set[str] = set()
        async for request in requests:
            self.delta_requests.append(request)
            if request.type_url == ABORT:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "stub: bad request")
            first = request.type_url not in opened
            opened.add(request.type_url)
            names = list(request.resource_names_subscribe)
            if not names and not first:
                continue
            version, nonce = self._next()
            yield discovery_pb2.DeltaDiscoveryResponse(
                type_url=request.type_url,
                system_version_info=version,
                nonce=nonce,
                resources=[
                    discovery_pb2.Resource(name=name, version=version, resource=_pack(r))
                    for name, r in _resources(request.type_url, names)
                ],
            )

    def handler(self) -> grpc.GenericRpcHandler:
        def stream(behaviour: Callable[..., Any], req: Any, resp: Any) -> Any:
            return grpc.stream_stream_rpc_method_handler(
                behaviour,
                request_deserializer=req.FromString,
                response_serializer=resp.SerializeToString,
            )

        return grpc.method_handlers_generic_handler(
            _SERVICE,
            {
                "StreamAggregatedResources": stream(
                    self.sotw, discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse
                ),
                "DeltaAggregatedResources": stream(
                    self.delta,
                    discovery_pb2.DeltaDiscoveryRequest,
                    discovery_pb2.DeltaDiscoveryResponse,
                ),
            },
        )


class Stub:
    def __init__(self, ads: StubAds, target: str) -> None:
        self.ads = ads
        self.target = target


@pytest_asyncio.fixture
async def stub() -> AsyncIterator[Stub]:
    ads = StubAds()
    server = grpc.aio.server(
        options=[
            # Let keepalive-pinging clients in without a GOAWAY for too many pings.
            ("grpc.http2.min_ping_interval_without_data_ms", 50),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    server.add_generic_rpc_handlers([ads.handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Stub(ads, f"127.0.0.1:{port}")
    finally:
        await server.stop(None)


async def _eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_sotw_request_recv_ack(stub: Stub) -> None:
    meta = {"LABELS": {"app": "a"}, "NAMESPACE": "ns"}
    async with SotwClient(stub.target, "sidecar~1.2.3.4~a.ns~ns.svc", metadata=meta) as c:
        await c.request(CLUSTER)
        response = await c.recv()
        assert response.type_url == CLUSTER
        (cluster,) = c.resources(response)
        assert isinstance(cluster, cluster_pb2.Cluster)
        assert cluster.name == "c1"

        await c.ack(response)
        await _eventually(lambda: len(stub.ads.requests) == 2)
        first, ack = stub.ads.requests
        assert first.node.id == "sidecar~1.2.3.4~a.ns~ns.svc"
        assert first.node.metadata["NAMESPACE"] == "ns"
        assert first.node.user_agent_build_version.version.minor_number == 40
        assert not ack.HasField("node"), "node goes on the first request only"
        assert ack.response_nonce == response.nonce
        assert ack.version_info == response.version_info
        assert not ack.HasField("error_detail")
        assert c.acked_version(CLUSTER) == response.version_info
        await c.expect_silence(0.3)


@pytest.mark.asyncio
async def test_sotw_ack_keeps_names_and_send_node(stub: Stub) -> None:
    async with SotwClient(stub.target, "n1") as c:
        await c.request(ENDPOINT, ["a", "b"])
        response = await c.recv()
        assignments: list[Any] = c.resources(response)
        assert [m.cluster_name for m in assignments] == ["a", "b"]
        await c.ack(response)
        await c.request(ENDPOINT, ["a"], send_node=True)
        await _eventually(lambda: len(stub.ads.requests) == 3)
        _, ack, again = stub.ads.requests
        assert list(ack.resource_names) == ["a", "b"]
        assert again.node.id == "n1"


@pytest.mark.asyncio
async def test_sotw_nack_carries_error_and_previous_version(stub: Stub) -> None:
    async with SotwClient(stub.target, "n1") as c:
        await c.request(CLUSTER)
        first = await c.recv()
        await c.ack(first)
        await c.request(CLUSTER)  # no nonce: the stub answers again with a new version
        second = await c.recv()
        assert second.version_info != first.version_info
        await c.nack(second, "bad cluster")
        await _eventually(lambda: len(stub.ads.requests) == 4)
        nack = stub.ads.requests[-1]
        assert nack.version_info == first.version_info
        assert nack.response_nonce == second.nonce
        assert nack.error_detail.message == "bad cluster"
        assert nack.error_detail.code == grpc.StatusCode.INTERNAL.value[0]


@pytest.mark.asyncio
async def test_expect_silence_fails_when_a_response_arrives(stub: Stub) -> None:
    async with SotwClient(stub.target, "n1") as c:
        await c.request(LISTENER)
        with pytest.raises(AssertionError, match=r"nonce='n1'"):
            await c.expect_silence(3.0)


@pytest.mark.asyncio
async def test_recv_times_out(stub: Stub) -> None:
    async with SotwClient(stub.target, "n1") as c:
        with pytest.raises(TimeoutError):
            await c.recv(timeout=0.2)


@pytest.mark.asyncio
async def test_wait_closed_reports_abort_status(stub: Stub) -> None:
    async with SotwClient(stub.target, "n1") as c:
        assert await c.wait_closed(0.2) is None
        await c.request(ABORT)
        assert await c.wait_closed(5.0) == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(StreamClosedError) as err:
            await c.recv(timeout=1.0)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "bad request" in (err.value.details or "")
        with pytest.raises(AssertionError, match="closed"):
            await c.expect_silence(0.1)


@pytest.mark.asyncio
async def test_delta_subscribe_recv_ack(stub: Stub) -> None:
    async with DeltaClient(stub.target, "n1", metadata={"NAMESPACE": "ns"}) as c:
        await c.subscribe(CLUSTER)
        response = await c.recv()
        clusters = c.resources(response)
        assert list(clusters) == ["c1"]
        assert isinstance(clusters["c1"], cluster_pb2.Cluster)
        await c.ack(response)
        assert c.known_versions(CLUSTER) == {"c1": response.system_version_info}

        await c.subscribe(ENDPOINT, ["c1"], initial_versions={"c1": "old"})
        eds = await c.recv()
        assert set(c.resources(eds)) == {"c1"}
        await c.nack(eds, "nope")
        await c.expect_silence(0.3)
        await c.unsubscribe(ENDPOINT, ["c1"])
        assert c.subscriptions(ENDPOINT) == frozenset()

        await _eventually(lambda: len(stub.ads.delta_requests) == 5)
        opened, ack, subscribe, nack, unsubscribe = stub.ads.delta_requests
        assert opened.node.id == "n1"
        assert not ack.HasField("node")
        assert ack.response_nonce == response.nonce
        assert not ack.HasField("error_detail")
        assert dict(subscribe.initial_resource_versions) == {"c1": "old"}
        assert nack.response_nonce == eds.nonce
        assert nack.error_detail.message == "nope"
        assert list(unsubscribe.resource_names_unsubscribe) == ["c1"]


@pytest.mark.asyncio
async def test_delta_wait_closed(stub: Stub) -> None:
    async with DeltaClient(stub.target, "n1") as c:
        await c.subscribe(ABORT, ["x"])
        assert await c.wait_closed(5.0) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.asyncio
async def test_keepalive_client_survives(stub: Stub) -> None:
    assert ("grpc.keepalive_time_ms", 100) in channel_options(100)
    assert ("grpc.http2.max_pings_without_data", 0) in channel_options(100)
    async with SotwClient(stub.target, "n1", keepalive_ms=100) as c:
        await c.request(CLUSTER)
        await c.ack(await c.recv())
        await c.expect_silence(0.8)
        await c.request(CLUSTER)
        assert (await c.recv()).type_url == CLUSTER


@pytest.mark.asyncio
async def test_unreachable_server_closes_stream() -> None:
    async with SotwClient("127.0.0.1:1", "n1") as c:
        await c.request(CLUSTER)
        assert await c.wait_closed(5.0) == grpc.StatusCode.UNAVAILABLE


def test_unpack_any_imports_unknown_packages() -> None:
    cls: Any = message_class("envoy.extensions.filters.http.router.v3.Router")
    packed = any_pb2.Any(
        type_url="type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        value=cls(suppress_envoy_headers=True).SerializeToString(),
    )
    router: Any = unpack_any(packed)
    assert router.suppress_envoy_headers
    with pytest.raises(KeyError):
        message_class("no.such.v3.Message")


def test_fakeproxies_helpers() -> None:
    config = fakeproxies.parse_args(
        [
            "--target=127.0.0.1:1",
            "--node-template=router~{ip}~gw-{i}.istio-system~istio-system.svc.cluster.local",
            "--labels=istio=ingressgateway,app=gw-{i}",
            '--meta=CLUSTER_ID="Kubernetes"',
        ]
    )
    node_id, meta = fakeproxies.node_identity(config, 258)
    assert node_id == "router~127.0.1.2~gw-258.istio-system~istio-system.svc.cluster.local"
    # What pilot-agent sends (istiod reads more than LABELS and NAMESPACE), --meta on top.
    assert {k: meta[k] for k in ("LABELS", "NAMESPACE", "CLUSTER_ID", "INSTANCE_IPS",
                                 "ENVOY_STATUS_PORT", "WORKLOAD_NAME")} == {
        "LABELS": {"istio": "ingressgateway", "app": "gw-258"},
        "NAMESPACE": "istio-system",
        "CLUSTER_ID": "Kubernetes",
        "INSTANCE_IPS": "127.0.1.2",
        "ENVOY_STATUS_PORT": 15021,
        "WORKLOAD_NAME": "gw-258",
    }
    assert fakeproxies.percentiles([float(i) for i in range(1, 101)]) == {
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "max": 100.0,
    }


async def _await_file(path: Path, timeout: float = 5.0) -> dict[str, Any]:
    await _eventually(path.exists, timeout)
    report: dict[str, Any] = json.loads(path.read_text())
    return report


@pytest.mark.parametrize("mode", ["sotw", "delta"])
@pytest.mark.asyncio
async def test_fakeproxies_smoke(stub: Stub, tmp_path: Path, mode: str) -> None:
    control = tmp_path / "control"
    config = fakeproxies.parse_args(
        [
            f"--target={stub.target}",
            "--count=5",
            "--streams-per-channel=2",
            "--labels=istio=ingressgateway",
            f"--mode={mode}",
            "--duration=10",
            f"--report={tmp_path / 'final.json'}",
            f"--control={control}",
        ]
    )
    config.install_signals = False
    run = asyncio.create_task(fakeproxies.run(config))
    try:
        # Poll through the control file until every proxy has converged, then stop the run.
        deadline = time.monotonic() + 5.0
        while True:
            snapshot = tmp_path / f"snap-{time.monotonic_ns()}.json"
            control.write_text(f"dump {snapshot}")
            report = await _await_file(snapshot)
            if report["converged"] == 5 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        control.write_text("stop")
        final = await asyncio.wait_for(run, 5.0)
    finally:
        run.cancel()

    assert report["converged"] == 5, report
    assert final == {**final, "count": 5, "connected": 5, "converged": 5, "error_count": 0}
    on_disk = json.loads((tmp_path / "final.json").read_text())
    assert on_disk["connected"] == 5
    assert final["elapsed"] < 9, "the stop command ends the run before --duration"
    # Each proxy: one response per type; the stub ignores ACKs.
    assert final["responses"] == {"cds": 5, "eds": 5, "lds": 5, "rds": 5}
    assert final["bytes"] > 0
    assert final["convergence_seconds"]["max"] is not None
    assert set(final["last_ack"]) == {"cds", "eds", "lds", "rds"}
    assert all(final["last_ack"].values())
    assert sum(v["streams"] for v in final["versions"]["cds"].values()) == 5
