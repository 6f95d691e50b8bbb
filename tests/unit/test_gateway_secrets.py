"""Gateway certificates from Kubernetes Secrets (`credentialName`) over SDS in the ADS stream
(pilotpy/translate/credentials.py): what each resource name reads, who gets it, and that a
Secret change touches only gateways and only their secrets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2

from pilotpy.discovery import Discovery, ProxyHandle
from pilotpy.mesh import MeshConfig
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import PushContext
from pilotpy.store import ChangeSet
from pilotpy.translate.credentials import build_secret, resource_name
from pilotpy.translate.generate import generate
from pilotpy.xds import types
from tests.tls_certs import TestCA
from tests.unit.support import context, objects_of

GATEWAY = "router~10.0.0.7~gw-1.istio-system~istio-system.svc.cluster.local"
SIDECAR = "sidecar~10.0.0.9~sleep-1.default~default.svc.cluster.local"
GATEWAY_IDENTITY = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
LABELS = {"LABELS": {"istio": "ingressgateway"}}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    ca = TestCA(tmp_path_factory.mktemp("ca"))
    pair = ca.issue("server", ["bookinfo.example.com"])
    return {"cert": pair.cert.read_bytes(), "key": pair.key.read_bytes(),
            "ca": ca.ca.read_bytes()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(name: str, namespace: str = "istio-system", **data: bytes) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k.replace("_", "."): b64(v) for k, v in data.items()}}


def gateway(*servers: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "istio-system"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}}


def https(name: str, host: str, port: int = 443, **tls: Any) -> dict[str, Any]:
    return {"port": {"number": port, "name": name, "protocol": "HTTPS"}, "hosts": [host],
            "tls": {"mode": "SIMPLE", **tls}}


def push_of(*docs: dict[str, Any]) -> PushContext:
    return context(*docs)


def gateway_config(push: PushContext, identity: str = GATEWAY_IDENTITY) -> Any:
    return generate(push, view_proxy(parse_proxy(GATEWAY, LABELS, verified_identity=identity),
                                     push))


# -- what a resource name reads --------------------------------------------------------------


def test_a_credential_name_becomes_a_kubernetes_resource_name() -> None:
    assert resource_name("bookinfo-credential") == "kubernetes://bookinfo-credential"
    assert resource_name("kubernetes://bookinfo-credential") == "kubernetes://bookinfo-credential"


def test_tls_keys_give_the_key_pair(pem: dict[str, bytes]) -> None:
    push = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"]))
    built = build_secret(push, "kubernetes://cred", "istio-system")
    assert not isinstance(built, str)
    assert built.tls_certificate.certificate_chain.inline_bytes == pem["cert"]
    assert built.tls_certificate.private_key.inline_bytes == pem["key"]


def test_generic_keys_come_before_the_tls_ones(pem: dict[str, bytes]) -> None:
    # istiod's ExtractCertInfo looks at cert/key first.
    push = push_of(secret("cred", cert=pem["cert"], key=pem["key"], tls_crt=b"other",
                          tls_key=b"other"))
    built = build_secret(push, "kubernetes://cred", "istio-system")
    assert not isinstance(built, str)
    assert built.tls_certificate.certificate_chain.inline_bytes == pem["cert"]


def test_a_ca_resource_reads_the_cacert_secret_else_the_secret_itself(
        pem: dict[str, bytes]) -> None:
    alone = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"], ca_crt=pem["ca"]))
    built = build_secret(alone, "kubernetes://cred-cacert", "istio-system")
    assert not isinstance(built, str)
    assert built.validation_context.trusted_ca.inline_bytes == pem["ca"]
    apart = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"], ca_crt=b"wrong"),
                    secret("cred-cacert", cacert=pem["ca"]))
    built = build_secret(apart, "kubernetes://cred-cacert", "istio-system")
    assert not isinstance(built, str)
    assert built.validation_context.trusted_ca.inline_bytes == pem["ca"]


def test_a_secret_without_the_keys_says_which_it_needs(pem: dict[str, bytes]) -> None:
    push = push_of(secret("cred", ca_crt=pem["ca"]))
    assert "tls.crt" in str(build_secret(push, "kubernetes://cred", "istio-system"))


def test_another_namespaces_secret_is_never_read(pem: dict[str, bytes]) -> None:
    push = push_of(secret("cred", "default", tls_crt=pem["cert"], tls_key=pem["key"]))
    found = build_secret(push, "kubernetes://default/cred", "istio-system")
    assert isinstance(found, str) and "another namespace" in found


# -- who gets it -----------------------------------------------------------------------------


def test_a_verified_gateway_gets_the_secrets_its_servers_name(pem: dict[str, bytes]) -> None:
    push = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"]),
                   secret("unused", tls_crt=pem["cert"], tls_key=pem["key"]),
                   gateway(https("https", "bookinfo.example.com", credentialName="cred")))
    config = gateway_config(push)
    assert [s.name for s in config.secrets] == ["kubernetes://cred"]
    chain = config.listeners[0].filter_chains[0]
    assert chain.filter_chain_match.server_names == ["bookinfo.example.com"]


@pytest.mark.parametrize("identity", [
    "", "spiffe://cluster.local/ns/default/sa/istio-ingressgateway"])
def test_a_stream_without_a_verified_identity_of_the_namespace_gets_no_secret(
        pem: dict[str, bytes], identity: str) -> None:
    push = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"]),
                   gateway(https("https", "bookinfo.example.com", credentialName="cred")))
    config = gateway_config(push, identity)
    assert config.secrets == []
    assert len(config.listeners) == 1  # the listener as istiod sends it; the key stays away


def test_a_missing_secret_skips_its_server_only(pem: dict[str, bytes]) -> None:
    push = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"]),
                   gateway(https("https", "bookinfo.example.com", credentialName="cred"),
                           https("https-missing", "missing.example.com",
                                 credentialName="missing")))
    config = gateway_config(push)
    (listener,) = config.listeners
    assert [list(c.filter_chain_match.server_names) for c in listener.filter_chains] == [
        ["bookinfo.example.com"]]
    assert [(p.reason, p.field) for p in config.problems] == [("NotFound", "spec.servers[1]")]


def test_mutual_needs_its_ca_secret_too(pem: dict[str, bytes]) -> None:
    push = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"]),
                   gateway(https("https", "bookinfo.example.com", mode="MUTUAL",
                                 credentialName="cred")))
    config = gateway_config(push)
    assert config.listeners == []
    assert "cred-cacert" in config.problems[0].message
    with_ca = push_of(secret("cred", tls_crt=pem["cert"], tls_key=pem["key"]),
                      secret("cred-cacert", ca_crt=pem["ca"]),
                      gateway(https("https", "bookinfo.example.com", mode="MUTUAL",
                                    credentialName="cred")))
    assert [s.name for s in gateway_config(with_ca).secrets] == [
        "kubernetes://cred", "kubernetes://cred-cacert"]


def test_istio_mutual_servers_need_pilot_agent() -> None:
    doc = gateway({"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                   "hosts": ["*.local"], "tls": {"mode": "ISTIO_MUTUAL"}})
    push = push_of(doc)
    stock = gateway_config(push)
    assert stock.listeners == [] and "pilot-agent" in stock.problems[0].message
    agent = generate(push, view_proxy(parse_proxy(GATEWAY, {**LABELS, "PROXY_CONFIG": {}}),
                                      push))
    assert len(agent.listeners) == 1 and not [p for p in agent.problems
                                              if "pilot-agent" in p.message]


# -- a Secret change -------------------------------------------------------------------------


def _change(version: int, docs: list[dict[str, Any]], changed: set[str]) -> ChangeSet:
    objects = objects_of(docs)
    keys = frozenset(k for kind, by_key in objects.items() for k in by_key if kind in changed)
    return ChangeSet(objects, keys, version)


def _connect(plane: Discovery, node_id: str, metadata: dict[str, Any],
             identity: str = "") -> ProxyHandle:
    node = base_pb2.Node(id=node_id)
    node.metadata.update(metadata)
    return plane.connect(node, identity)


def _versions(plane: Discovery, handle: ProxyHandle, type_url: str) -> dict[str, str]:
    return {n: r.version for n, r in plane.snapshot(handle).get(type_url).by_name.items()}


def test_a_secret_change_pushes_the_gateways_secrets_alone(pem: dict[str, bytes],
                                                           tmp_path: Path) -> None:
    plane = Discovery(MeshConfig())
    config = [gateway(https("https", "bookinfo.example.com", credentialName="cred"))]
    first = secret("cred", tls_crt=pem["cert"], tls_key=pem["key"])
    plane.update(_change(1, [*config, first], {"Gateway", "Secret"}))
    gw = _connect(plane, GATEWAY, LABELS, GATEWAY_IDENTITY)
    sleep = _connect(plane, SIDECAR, {})
    listeners = _versions(plane, gw, types.LISTENER)
    secrets = _versions(plane, gw, types.SECRET)
    sidecar_snapshot = plane.snapshot(sleep)
    rotated = TestCA(tmp_path).issue("rotated", ["bookinfo.example.com"])
    second = secret("cred", tls_crt=rotated.cert.read_bytes(),
                    tls_key=rotated.key.read_bytes())
    scope = plane.update(_change(2, [*config, second], {"Secret"}))
    assert scope.gateways_only
    assert _versions(plane, gw, types.LISTENER) == listeners  # nothing for Envoy to drain
    new_secrets = _versions(plane, gw, types.SECRET)
    assert new_secrets.keys() == secrets.keys() and new_secrets != secrets
    assert plane.snapshot(sleep).resources is sidecar_snapshot.resources


def test_a_secret_created_later_brings_its_server(pem: dict[str, bytes]) -> None:
    plane = Discovery(MeshConfig())
    config = [gateway(https("https", "bookinfo.example.com", credentialName="cred"))]
    plane.update(_change(1, config, {"Gateway"}))
    gw = _connect(plane, GATEWAY, LABELS, GATEWAY_IDENTITY)
    assert _versions(plane, gw, types.LISTENER) == {}
    plane.update(_change(2, [*config, secret("cred", tls_crt=pem["cert"],
                                             tls_key=pem["key"])], {"Secret"}))
    assert list(_versions(plane, gw, types.LISTENER)) == ["0.0.0.0_443"]
    assert list(_versions(plane, gw, types.SECRET)) == ["kubernetes://cred"]
