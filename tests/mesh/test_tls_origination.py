"""DestinationRule TLS origination from a sidecar, as in Istio's "Egress TLS origination"
task: the application speaks plain HTTP to port 80 of an external host, the sidecar opens TLS
to the host's HTTPS port (ServiceEntry targetPort) with certificate files read by Envoy. The
HTTPS servers on `external` check SNI and, for MUTUAL, require a client certificate from the
test CA (tests/mesh/egress.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.mesh.egress import (
    CLIENT_CERT,
    CLIENT_KEY,
    CRL,
    MUTUAL_HOST,
    MUTUAL_PORT,
    ROOT_CERT,
    SIMPLE_HOST,
    SIMPLE_PORT,
    certificates,
    other_ca,
)
from tests.mesh.mesh import Mesh
from tests.mesh.netns import wait_until

CONFIG_FILE = "tls-origination.yaml"


def service_entry(name: str, host: str, https_port: int) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                     "ports": [{"number": 80, "name": "http-port", "protocol": "HTTP",
                                "targetPort": https_port},
                               {"number": https_port, "name": "https-port",
                                "protocol": "HTTPS"}]}}


def destination_rule(name: str, host: str, tls: dict[str, Any]) -> dict[str, Any]:
    """TLS on port 80 only, as the task writes it: port 443 stays the application's own TLS."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"host": host, "trafficPolicy": {"portLevelSettings": [
                {"port": {"number": 80}, "tls": tls}]}}}


def cluster_tls(mesh: Mesh, name: str) -> dict[str, Any] | None:
    """The UpstreamTlsContext the client's sidecar holds for cluster `name`."""
    dump = json.loads(mesh.pods["sleep"].admin_get(
        "/config_dump?resource=dynamic_active_clusters"))
    for entry in dump.get("configs", []):
        cluster = entry.get("cluster", {})
        if cluster.get("name") == name:
            context: dict[str, Any] | None = cluster.get("transport_socket", {}).get(
                "typed_config")
            return context
    return None


def apply(mesh: Mesh, docs: list[dict[str, Any]], cluster: str, ca: str) -> None:
    """Write `docs`; wait until `cluster` trusts `ca` and has a resolved host."""
    mesh.write(CONFIG_FILE, docs)

    def ready() -> bool:
        context = cluster_tls(mesh, cluster) or {}
        trusted = (context.get("common_tls_context", {}).get("validation_context", {})
                   .get("trusted_ca", {}).get("filename"))
        return trusted == ca and mesh.pods["sleep"].healthy_hosts(cluster) > 0

    wait_until(ready, f"{cluster} originating TLS with {ca}")


@pytest.fixture
def clean(egress_mesh: Mesh) -> Iterator[Mesh]:
    yield egress_mesh
    egress_mesh.remove(CONFIG_FILE)
    wait_until(lambda: cluster_tls(egress_mesh, f"outbound|80||{SIMPLE_HOST}") is None
               and cluster_tls(egress_mesh, f"outbound|80||{MUTUAL_HOST}") is None,
               "TLS origination config gone")


def test_simple_tls_origination_with_a_ca_file(clean: Mesh) -> None:
    """Istio's task as written: no `sni`, so Envoy takes SNI (and the SAN it verifies) from
    the request's host (auto_sni, auto_san_validation)."""
    client, external = clean.pods["sleep"], clean.pods["external"]
    cluster = f"outbound|80||{SIMPLE_HOST}"
    ca = str(certificates(clean) / ROOT_CERT)
    apply(clean, [service_entry("secure", SIMPLE_HOST, SIMPLE_PORT),
                  destination_rule("secure", SIMPLE_HOST,
                                   {"mode": "SIMPLE", "caCertificates": ca})], cluster, ca)
    handshakes = client.stat(f"cluster.{cluster};.ssl.handshake")
    (answer,) = client.get(f"http://{SIMPLE_HOST}/get")
    assert answer["status"] == 200, answer
    seen = json.loads(answer["body"])
    assert seen["tls"] is True
    assert seen["sni"] == SIMPLE_HOST
    assert seen["client_subject"] == ""
    assert seen["host"] == SIMPLE_HOST
    assert client.stat(f"cluster.{cluster};.ssl.handshake") == handshakes + 1
    assert f"{external.ip}:{SIMPLE_PORT}" in client.admin_get("/clusters")


def test_mutual_tls_origination_presents_the_client_certificate(clean: Mesh) -> None:
    client = clean.pods["sleep"]
    cluster = f"outbound|80||{MUTUAL_HOST}"
    certs = certificates(clean)
    ca = str(certs / ROOT_CERT)
    tls = {"mode": "MUTUAL", "clientCertificate": str(certs / CLIENT_CERT),
           "privateKey": str(certs / CLIENT_KEY), "caCertificates": ca,
           "caCrl": str(certs / CRL), "sni": MUTUAL_HOST, "subjectAltNames": [MUTUAL_HOST]}
    apply(clean, [service_entry("mutual", MUTUAL_HOST, MUTUAL_PORT),
                  destination_rule("mutual", MUTUAL_HOST, tls)], cluster, ca)
    (answer,) = client.get(f"http://{MUTUAL_HOST}/get")
    assert answer["status"] == 200, answer
    seen = json.loads(answer["body"])
    assert (seen["tls"], seen["sni"], seen["client_subject"]) == (
        True, MUTUAL_HOST, "sleep.default")

    # The same server refuses a sidecar that has no client certificate to show.
    simple = {"mode": "SIMPLE", "caCertificates": ca, "sni": MUTUAL_HOST}
    clean.write(CONFIG_FILE, [service_entry("mutual", MUTUAL_HOST, MUTUAL_PORT),
                              destination_rule("mutual", MUTUAL_HOST, simple)])
    wait_until(lambda: not (cluster_tls(clean, cluster) or {}).get(
        "common_tls_context", {}).get("tls_certificates"), "MUTUAL replaced by SIMPLE")
    (refused,) = client.get(f"http://{MUTUAL_HOST}/get")
    assert refused["status"] == 503, refused
    # TLS 1.3: the client's handshake is done before the server checks for a certificate,
    # so the server's refusal arrives as the connection's termination.
    assert refused["body"].startswith("upstream connect error or disconnect/reset"), refused


def test_a_wrong_ca_fails_the_upstream_handshake(clean: Mesh) -> None:
    client = clean.pods["sleep"]
    cluster = f"outbound|80||{SIMPLE_HOST}"
    wrong = str(other_ca(clean) / ROOT_CERT)
    apply(clean, [service_entry("secure", SIMPLE_HOST, SIMPLE_PORT),
                  destination_rule("secure", SIMPLE_HOST,
                                   {"mode": "SIMPLE", "caCertificates": wrong})],
          cluster, wrong)
    failures = client.stat(f"cluster.{cluster};.ssl.fail_verify_error")
    (answer,) = client.get(f"http://{SIMPLE_HOST}/get")
    assert answer["status"] == 503, answer
    # Retried (connect-failure is in the default retry policy), so the body names the reset
    # reason only; the TLS stats name the cause: the server's chain did not verify.
    assert "remote connection failure" in answer["body"], answer["body"]
    assert client.stat(f"cluster.{cluster};.ssl.fail_verify_error") > failures
    # The access log line names the upstream transport failure.
    log = client.workdir / "envoy.log"
    wait_until(lambda: any("CERTIFICATE_VERIFY_FAILED" in line and cluster in line
                           for line in log.read_text(errors="replace").splitlines()),
               "an access log line with the TLS verification failure", timeout=15)
