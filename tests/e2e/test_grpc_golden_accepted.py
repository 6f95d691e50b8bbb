"""Every proxyless gRPC golden case (`generator: grpc` in its case.yaml), served by
`pilotpy serve` to grpcio's own xDS client and servers, is accepted: the client dials every
listener of the case by name (which makes it fetch each route, cluster and assignment), a
server of the case serves on each inbound listener, and pilotpy sees no NACK. Envoy takes no
part (tests/e2e/test_golden_accepted.py loads the other cases into Envoy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.e2e.grpc_support import Pilotpy, accepts, call, eventually, spawn, stop
from tests.golden.cases import Case, all_cases

pytestmark = pytest.mark.e2e
GRPC_CASES = [c.path for c in all_cases() if c.generator == "grpc"]
INBOUND = "xds.istio.io/grpc/lds/inbound/"


def test_there_are_grpc_cases() -> None:
    assert len(GRPC_CASES) >= 3


@pytest.mark.parametrize("case", GRPC_CASES, ids=lambda p: p.name)
def test_grpc_golden_config_is_accepted_by_grpc(case: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load((case / "case.yaml").read_text(encoding="utf-8"))
    expected = {"listeners": Case(case).expected("listeners")}
    node_id, labels = spec["nodeId"], spec.get("labels") or {}
    shutil.copytree(case / "input", tmp_path / "config")
    names = [li["name"] for li in expected["listeners"]]
    # Where the server of the case listens: its own address's inbound listeners.
    own = [n.removeprefix(INBOUND) for n in names
           if n.startswith(INBOUND + node_id.split("~")[1] + ":")]
    pilot = Pilotpy(tmp_path / "config", tmp_path)
    processes = []
    try:
        if own:
            processes.append(spawn(tmp_path, ["server", "golden", *own], node_id,
                                   pilot.xds_port, labels))
            addresses = [(host, int(port)) for host, port in (a.rsplit(":", 1) for a in own)]
            eventually(lambda: all(accepts(host, port) for host, port in addresses),
                       "the server to serve every inbound listener")
        client = spawn(tmp_path, ["client"], node_id, pilot.xds_port, labels)
        processes.append(client)
        for name in names:
            if not name.startswith(INBOUND):
                # The calls fail (nothing listens behind the case's endpoints); what counts
                # is that gRPC fetched and accepted everything the call needed.
                call(client, f"xds:///{name}", timeout=2.0)
        acked = {t for p in pilot.syncz() if p["proxy"] == node_id
                 for t, r in p["resources"].items()  # type: ignore[attr-defined]
                 if r.get("acked") and r["acked"] == r.get("sent")}
        assert {t.rsplit(".", 1)[1] for t in acked} >= {
            "Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"}
        assert pilot.rejects() == []
    finally:
        for process in processes:
            stop(process)
        pilot.stop()
