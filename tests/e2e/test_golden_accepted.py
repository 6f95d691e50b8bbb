"""Every golden case, served over xDS to a real Envoy, is accepted: no NACK, every listener
bound, every route delivered. Gateway ports, and a sidecar's capture ports (15001, 15006), are
relocated to free ones so the test never collides with anything already listening on this
machine.

A case whose proxy runs under pilot-agent (`agent: true`) gets its config naming the agent's
SDS (`sds-grpc`): the Envoy here has that cluster, served by a stand-in for the agent's SDS
(tests/sds_server.py). A case with `verifiedIdentity` connects over pilotpy's TLS port with a
mesh certificate for it, as the agent's stream proves its identity, and must receive every
Secret the case expects over SDS in the ADS stream."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.cli.translate import node_metadata
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import LocalStack, eventually
from tests.golden.cases import SECRETS, Case, all_cases
from tests.sds_server import SdsServer, secrets_from_files
from tests.tls_certs import TestCA

pytestmark = pytest.mark.e2e
# Proxyless gRPC cases are for gRPC, not Envoy: tests/e2e/test_grpc_golden_accepted.py.
CASES = [c.path for c in all_cases() if c.is_envoy]
# Certificate paths in golden inputs are paths on the proxy, as users write them (Istio's
# legacy mount); Envoy reads them, so here they move to files generated for the run.
GOLDEN_CERT_DIR = "/etc/certs/"


def _relocated(case: Path, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The case's documents with the gateway Service's target ports moved to free ports, and a
    mapping added for Gateway server ports the Service does not list."""
    docs = [d for f in sorted((case / "input").glob("*.yaml"))
            for d in _load(f) if isinstance(d, dict)]
    # The gateway's Service: the one selecting the gateway's labels.
    service = next(d for d in docs if d.get("kind") == "Service"
                   and (d.get("spec") or {}).get("selector")
                   and d["spec"]["selector"].items() <= labels.items())
    ports = service["spec"]["ports"]
    moved: dict[Any, int] = {}  # ports sharing a target port keep sharing one
    for port in ports:
        original = port.get("targetPort", port["port"])
        port["targetPort"] = moved.setdefault(original, free_port())
    mapped = {p["port"] for p in ports}
    for doc in docs:
        if doc.get("kind") != "Gateway":
            continue
        for server in doc.get("spec", {}).get("servers", []):
            number = server.get("port", {}).get("number")
            if number not in mapped:
                ports.append({"name": f"relocated-{number}", "port": number,
                              "targetPort": free_port()})
                mapped.add(number)
    return docs


def _with_test_certificates(docs: list[dict[str, Any]], directory: Path) -> None:
    """Gateway servers name certificate files of a real cluster (`/etc/istio/...`): point them
    at files of a test CA, so Envoy can load what the golden case describes."""
    ca: TestCA | None = None
    for doc in docs:
        if doc.get("kind") != "Gateway":
            continue
        for server in doc.get("spec", {}).get("servers", []):
            tls = server.get("tls") or {}
            if not any(k in tls for k in ("serverCertificate", "privateKey", "caCertificates")):
                continue
            ca = ca or TestCA(directory)
            pair = ca.issue(f"server-{len(list(directory.glob('*.crt')))}", ["localhost"])
            if "serverCertificate" in tls:
                tls["serverCertificate"] = str(pair.cert)
            if "privateKey" in tls:
                tls["privateKey"] = str(pair.key)
            if "caCertificates" in tls:
                tls["caCertificates"] = str(ca.ca)


def _sidecar_mesh_config(case: Path, spec: dict[str, Any], out: Path) -> Path:
    """The case's meshConfig with the capture ports moved: the sidecar binds them here, in
    the test's own network namespace."""
    mesh: dict[str, Any] = {}
    if spec.get("meshConfig"):
        mesh = yaml.safe_load((case / spec["meshConfig"]).read_text(encoding="utf-8")) or {}
    mesh["proxyListenPort"] = free_port()
    mesh["proxyInboundListenPort"] = free_port()
    out.write_text(yaml.safe_dump(mesh), encoding="utf-8")
    return out


def _proxy_cert_files(directory: Path) -> dict[str, str]:
    """Files of a test CA standing in for Istio's legacy mounted certificates."""
    ca = TestCA(directory)
    client = ca.issue("client", ["client.example"], client=True)
    return {"root-cert.pem": str(ca.ca), "cert-chain.pem": str(client.cert),
            "key.pem": str(client.key), "root.crl": str(ca.crl())}


def _with_cert_files(value: Any, directory: Path, files: dict[str, str]) -> Any:
    """`value` with every GOLDEN_CERT_DIR path replaced by a test CA's file (written into
    `directory` on first use, remembered in `files`)."""
    if isinstance(value, dict):
        return {k: _with_cert_files(v, directory, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_cert_files(v, directory, files) for v in value]
    if isinstance(value, str) and value.startswith(GOLDEN_CERT_DIR):
        if not files:
            files.update(_proxy_cert_files(directory))
        return files[value.removeprefix(GOLDEN_CERT_DIR)]
    return value


def _load(path: Path) -> list[Any]:
    try:
        return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError:
        return []  # the broken-file case: nothing to serve from it


@contextlib.asynccontextmanager
async def agent_sds(case: Case, directory: Path) -> AsyncIterator[tuple[str, int] | None]:
    """pilot-agent's SDS for an agent case (a test CA's workload certificate), else None."""
    if not case.agent:
        yield None
        return
    ca = TestCA(directory)
    pair = ca.issue("workload", ["localhost"], client=True)
    async with SdsServer(secrets_from_files(pair.cert, pair.key, ca.ca)) as port:
        yield "127.0.0.1", port


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
async def test_golden_config_is_accepted_by_envoy(case: Path, tmp_path: Path) -> None:
    async with agent_sds(Case(case), tmp_path / "workload") as sds_address:
        await _accepted(case, tmp_path, sds_address)


def _node_metadata(golden: Case) -> dict[str, Any]:
    """The case's own metadata, and the static ports the golden translation saw in what
    pilot-agent sends (`node_metadata`): a sidecar gets no outbound listener on them, so the
    Envoy must claim the same ones to get the same listeners."""
    sent = node_metadata(golden.node_id, golden.labels, golden.generator)
    ports = {k: v for k, v in sent.items() if k in ("ENVOY_STATUS_PORT", "ENVOY_PROMETHEUS_PORT")}
    return {**ports, **{k: v for k, v in golden.metadata.items() if k != "LABELS"}}


async def _accepted(case: Path, tmp_path: Path, sds_address: tuple[str, int] | None) -> None:
    spec = yaml.safe_load((case / "case.yaml").read_text(encoding="utf-8"))
    golden = Case(case)
    expected = {part: golden.expected(part) for part in ("listeners", "routes", "clusters")}
    config = tmp_path / "config"
    config.mkdir()
    mesh_config = case / spec["meshConfig"] if spec.get("meshConfig") else None
    if spec["nodeId"].startswith("sidecar~"):
        docs = [d for f in sorted((case / "input").glob("*.yaml")) for d in _load(f)
                if isinstance(d, dict)]
        mesh_config = _sidecar_mesh_config(case, spec, tmp_path / "mesh.yaml")
    else:
        docs = _relocated(case, spec["labels"])
        _with_test_certificates(docs, tmp_path / "certs")
    docs = _with_cert_files(docs, tmp_path / "proxy-certs", {})
    (config / "config.yaml").write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    stack = LocalStack([config], tmp_path, node_id=spec["nodeId"], labels=spec["labels"],
                       start_backends=False, mesh_config=mesh_config,
                       metadata=_node_metadata(golden),
                       sds_address=sds_address, xds_identity=golden.verified_identity)
    await stack.start()
    try:
        await stack.wait_live()
        envoy = stack.envoy
        assert envoy is not None

        def delivered() -> bool:
            listeners = envoy.config_dump("dynamic_listeners").get("configs", [])
            routes = envoy.config_dump("dynamic_route_configs").get("configs", [])
            return (len(listeners) == len(expected["listeners"])
                    and len(routes) == len(expected["routes"]))

        await eventually(delivered, f"{case.name}: every listener and route delivered")
        if golden.verified_identity:
            secrets = {s["name"] for s in golden.expected(SECRETS)}

            def secrets_delivered() -> bool:
                dump = envoy.config_dump("dynamic_active_secrets").get("configs", [])
                return {s.get("name") for s in dump} == secrets

            await eventually(secrets_delivered, f"{case.name}: every Secret delivered over SDS")
        for listener in envoy.config_dump("dynamic_listeners").get("configs", []):
            assert "error_state" not in listener, listener["error_state"]
            assert "active_state" in listener, f"listener {listener.get('name')} not active"
        rejected = {k: v for k, v in envoy.stats().items()
                    if k.endswith("update_rejected") and v}
        assert not rejected, rejected
        assert not stack.plane.xds.stats.rejects, stack.plane.xds.stats.rejects
        clusters = envoy.admin_get("/clusters?format=json")
        names = {c["name"] for c in json.loads(clusters).get("cluster_statuses", [])}
        if not spec.get("knownBug"):  # such a case's expected files show the fixed translation
            assert {c["name"] for c in expected["clusters"]} <= names
    finally:
        await stack.stop()
