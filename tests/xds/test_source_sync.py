"""A source that has not synced yet (the kube informers' initial list) holds back /ready and
ADS streams; once it reports synced, streams get a config built from what it listed."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from pilotpy.model import Key
from pilotpy.server.controlplane import ControlPlane
from pilotpy.xds.types import CLUSTER
from tests.xds.xds_harness import GATEWAY_META, GATEWAY_NODE, ConfigDir, decoded, settings_for
from tests.xds_client import SotwClient


async def test_streams_and_readiness_wait_for_every_source(config_dir: ConfigDir) -> None:
    plane = ControlPlane(settings_for(config_dir.root))
    plane.metrics.sources.set_synced("kube", False)  # registered before start, as a source does
    await plane.start()
    try:
        async with SotwClient(f"127.0.0.1:{plane.grpc_port}", GATEWAY_NODE,
                              metadata=GATEWAY_META) as client:
            assert not plane.ready
            await client.request(CLUSTER)
            await asyncio.sleep(0.3)
            assert not plane.xds.ready.is_set()  # the stream is held, not answered

            # The source lists a Service, then reports synced: the first answer has it.
            key, service = next(iter(plane.store_objects()["Service"].items()))
            renamed = replace(service, meta=replace(service.meta, name="listed-by-kube"))
            plane.store.upsert("kube", Key("Service", key.namespace, "listed-by-kube"), renamed)
            plane.metrics.sources.set_synced("kube", True)
            cds = await client.recv()
            assert any("listed-by-kube" in c.name for c in decoded(cds))
            assert plane.ready
    finally:
        await plane.stop()
