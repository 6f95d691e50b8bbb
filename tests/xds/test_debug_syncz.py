"""`istio.io/debug/syncz` over ADS, as istioctl proxy-status asks for it: one
envoy.service.status.v3.ClientConfig per connected proxy, SYNCED after ACKs, ERROR with the
NACK's message, and istiod's control_plane.identifier JSON."""

from __future__ import annotations

import json

from envoy.service.status.v3 import csds_pb2

from pilotpy import __version__
from pilotpy.xds.types import CLUSTER
from tests.xds.xds_harness import GATEWAY_NODE, Harness, eventually, sotw_converge

SYNCZ = "istio.io/debug/syncz"
CONFIG_DUMP = "istio.io/debug/config_dump"
# What istioctl's ADS client sends: a sidecar id with the `event` generator, no PROXY_CONFIG.
ISTIOCTL_NODE = "sidecar~10.0.0.9~test-1.istio-system~istio-system.svc.cluster.local"
ISTIOCTL_META = {"GENERATOR": "event", "NAMESPACE": "istio-system"}


def client_configs(response: object) -> dict[str, csds_pb2.ClientConfig]:
    out = {}
    for packed in response.resources:  # type: ignore[attr-defined]
        config = csds_pb2.ClientConfig()
        assert packed.Unpack(config)
        out[config.node.id] = config
    return out


def statuses(config: csds_pb2.ClientConfig) -> dict[str, str]:
    return {g.type_url: csds_pb2.ConfigStatus.Name(g.config_status)
            for g in config.generic_xds_configs}


async def syncz(xds: Harness) -> object:
    async with xds.sotw(ISTIOCTL_NODE, ISTIOCTL_META) as debug:
        await debug.request(SYNCZ)
        response = await debug.recv()
    assert response.type_url == SYNCZ
    return response


async def test_syncz_lists_each_proxy_synced_after_acks(xds: Harness) -> None:
    async with xds.sotw() as proxy:
        await sotw_converge(proxy)
        response = await syncz(xds)
        identity = json.loads(response.control_plane.identifier)  # type: ignore[attr-defined]
        assert identity["Component"] == "istiod"
        assert identity["ID"]
        assert identity["Info"]["version"] == __version__
        configs = client_configs(response)
        assert list(configs) == [GATEWAY_NODE]  # the istioctl client itself is not listed
        assert set(statuses(configs[GATEWAY_NODE]).values()) == {"SYNCED"}
        assert len(statuses(configs[GATEWAY_NODE])) == 4


async def test_syncz_shows_the_nack_error(xds: Harness) -> None:
    async with xds.sotw() as proxy:
        await proxy.request(CLUSTER)
        cds = await proxy.recv()
        await proxy.nack(cds, "cluster rejected by test")
        await eventually(lambda: xds.status().of(CLUSTER).nacks == 1, what="NACK recorded")
        config = client_configs(await syncz(xds))[GATEWAY_NODE]
        (cluster,) = [g for g in config.generic_xds_configs if g.type_url == CLUSTER]
        assert cluster.config_status == csds_pb2.ERROR
        assert cluster.error_state.details == "cluster rejected by test"


async def test_debug_clients_are_not_proxies(xds: Harness) -> None:
    async with xds.sotw(ISTIOCTL_NODE, ISTIOCTL_META) as debug:
        await debug.request(SYNCZ)
        await debug.recv()
        assert xds.plane.xds.proxies() == []


async def test_config_dump_over_ads_names_a_proxy_by_pod(xds: Harness) -> None:
    async with xds.sotw() as proxy:
        await sotw_converge(proxy)
        async with xds.sotw(ISTIOCTL_NODE, ISTIOCTL_META) as debug:
            await debug.request(CONFIG_DUMP, [GATEWAY_NODE.split("~")[2]])
            dump = await debug.recv()
            await debug.request(CONFIG_DUMP, ["nobody.default"])
            missing = await debug.recv()
    assert dump.type_url == CONFIG_DUMP
    sections = [r.type_url.rsplit(".", 1)[-1] for r in dump.resources]
    assert sections == ["ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump",
                        "EndpointsConfigDump"]
    assert list(missing.resources) == []
