"""Stream events are logged at info with the proxy id and type as structured fields, which
`--log-format json` prints as one JSON object per line."""

from __future__ import annotations

import json
import logging

import pytest

from pilotpy.cli.main import JsonFormatter
from pilotpy.xds.types import CLUSTER
from tests.xds.xds_harness import GATEWAY_NODE, Harness, eventually, round_robin, sotw_converge


async def test_connect_push_nack_disconnect_carry_proxy_id_and_type(
        xds: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pilotpy.xds")
    async with xds.sotw() as c:
        await sotw_converge(c)
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        cds = await c.recv()
        assert cds.type_url == CLUSTER
        await c.nack(cds, "rejected by test")
        await eventually(lambda: xds.status().of(CLUSTER).nacks == 1, what="NACK recorded")
    await eventually(lambda: any(r.getMessage().startswith("disconnected")
                                 for r in caplog.records), what="disconnect logged")

    events = {}
    for record in caplog.records:
        fields = getattr(record, "fields", None)
        if fields and fields.get("proxy") == GATEWAY_NODE:
            events[record.getMessage().split()[0]] = record
    assert {"connected", "push", "NACK", "disconnected"} <= set(events)
    for record in events.values():
        assert record.levelno == logging.INFO
        line = JsonFormatter().format(record)
        assert "\n" not in line
        decoded = json.loads(line)
        assert decoded["proxy"] == GATEWAY_NODE
        assert decoded["proxy_type"] == "router"
        assert decoded["level"] == "info"
    assert json.loads(JsonFormatter().format(events["NACK"]))["type"] == "cds"
