"""The injection webhook over a real TLS socket, as the API server calls it: one pilotpy for
the module (the file source, the mesh CA in memory, settings from --inject-dir, a mesh config
with a defaultConfig), AdmissionReviews posted to /inject."""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from pilotpy.inject.jsonpatch import apply
from pilotpy.server.controlplane import ControlPlane
from tests.mesh.mesh import ControlPlaneThread
from tests.xds.xds_harness import ConfigDir, settings_for

ISTIOD = "istiod.istio-system.svc"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass
class Webhook:
    plane: ControlPlane
    root: bytes

    @property
    def url(self) -> str:
        assert self.plane.webhook is not None
        return f"https://127.0.0.1:{self.plane.webhook.port}"

    def post(self, body: bytes, path: str = "/inject",
             content_type: str = "application/json") -> tuple[int, bytes]:
        context = ssl.create_default_context(cadata=self.root.decode())
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": content_type})
        handler = urllib.request.HTTPSHandler(context=context)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), handler)
        try:
            with opener.open(request, timeout=10) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    def review(self, pod: dict[str, Any], path: str = "/inject") -> dict[str, Any]:
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "request": {"uid": "u-7", "kind": {"kind": "Pod"},
                                       "namespace": "default", "operation": "CREATE",
                                       "object": pod}}).encode()
        status, answer = self.post(body, path)
        assert status == 200, answer
        response: dict[str, Any] = json.loads(answer)["response"]
        return response


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    config = ConfigDir(tmp_path_factory.mktemp("config"))
    root = tmp_path_factory.mktemp("webhook")
    inject_dir = root / "inject"
    inject_dir.mkdir()
    (inject_dir / "config").write_text("policy: enabled\n")
    (inject_dir / "values").write_text(json.dumps(
        {"global": {"hub": "registry.example.com/istio", "tag": "9.9.9"}}))
    mesh = root / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({"defaultConfig": {"concurrency": 2}}))
    settings = dataclasses.replace(
        settings_for(config.root), webhook_addr="127.0.0.1:0", inject_dir=inject_dir,
        mesh_config=mesh, serving_hosts=("127.0.0.1",), serving_cert_ttl_seconds=2.0)
    thread = ControlPlaneThread(settings)
    plane = thread.start()
    try:
        assert plane.webhook is not None and plane.secure is not None
        deadline = time.monotonic() + 20
        while not plane.webhook.ready.is_set():
            assert time.monotonic() < deadline, "the webhook did not open"
            time.sleep(0.05)
        yield Webhook(plane, plane.secure.root_pem)
    finally:
        thread.stop()


def pod(**annotations: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": annotations},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                                     "ports": [{"containerPort": 80}]}]}}


def injected(response: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    patch = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = apply(original, patch)
    return result


def proxy_env(result: dict[str, Any]) -> dict[str, str]:
    proxy = next(c for c in result["spec"]["containers"] if c["name"] == "istio-proxy")
    return {e["name"]: e.get("value", "") for e in proxy["env"]}


def test_a_pod_gets_the_proxy_from_the_settings_and_the_mesh_config(webhook: Webhook) -> None:
    original = pod()
    response = webhook.review(original)
    assert response["allowed"] is True and response["uid"] == "u-7"
    assert response["patchType"] == "JSONPatch"
    result = injected(response, original)
    proxy = next(c for c in result["spec"]["containers"] if c["name"] == "istio-proxy")
    assert proxy["image"] == "registry.example.com/istio/proxyv2:9.9.9"
    assert json.loads(proxy_env(result)["PROXY_CONFIG"]) == {"concurrency": 2}
    # The namespace comes from the request; the patch leaves it to the API server.
    assert "namespace" not in result["metadata"]
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["istio-init"]


def test_a_bad_annotation_refuses_the_pod_naming_it(webhook: Webhook) -> None:
    response = webhook.review(pod(**{"sidecar.istio.io/interceptionMode": "MAGIC"}))
    assert response["allowed"] is False
    assert "'sidecar.istio.io/interceptionMode'" in response["status"]["message"]
    assert "patch" not in response


def test_an_invalid_inject_value_is_a_warning_shown_to_the_user(webhook: Webhook) -> None:
    original = pod()
    original["metadata"]["labels"]["sidecar.istio.io/inject"] = "yes"
    response = webhook.review(original)
    assert response["allowed"] is True and "patch" in response
    assert any("sidecar.istio.io/inject" in w and "'yes'" in w for w in response["warnings"])


def test_the_cluster_and_network_of_the_inject_path(webhook: Webhook) -> None:
    original = pod()
    result = injected(webhook.review(original, "/inject/cluster/east/net/network-2"), original)
    env = proxy_env(result)
    assert (env["ISTIO_META_CLUSTER_ID"], env["ISTIO_META_NETWORK"]) == ("east", "network-2")
    assert result["metadata"]["labels"]["topology.istio.io/network"] == "network-2"


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    (b"{not json", "application/json", 400, "not JSON"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "application/json",
     400, "no request"),
    (b"", "application/json", 400, "no body"),
    (b"{}", "text/plain", 415, "application/json"),
])
def test_malformed_requests_get_an_http_error_with_the_reason(
        webhook: Webhook, body: bytes, content_type: str, status: int, message: str) -> None:
    got, text = webhook.post(body, content_type=content_type)
    assert (got, message in text.decode()) == (status, True), text


def test_metrics_count_every_outcome(webhook: Webhook) -> None:
    before = webhook.plane.metrics.render()
    webhook.review(pod())
    webhook.review(pod(**{"sidecar.istio.io/proxyCPU": "lots"}))
    after = webhook.plane.metrics.render()

    def value(text: str, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + " "))

    for name, grew in (("sidecar_injection_requests_total", 2),
                       ("sidecar_injection_success_total", 1),
                       ("sidecar_injection_failure_total", 1)):
        assert value(after, name) - value(before, name) == grew, name


def presented(webhook: Webhook, name: str) -> x509.Certificate:
    context = ssl.create_default_context(cadata=webhook.root.decode())
    context.check_hostname = False
    assert webhook.plane.webhook is not None
    with socket.create_connection(("127.0.0.1", webhook.plane.webhook.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_webhook_presents_istiods_name_from_the_mesh_ca_renewed(webhook: Webhook) -> None:
    """The certificate the API server checks against the caBundle: istiod.<ns>.svc (and the
    --serving-host names), under the mesh root, renewed with the TLS port's."""
    first = presented(webhook, ISTIOD)
    names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ISTIOD in names.get_values_for_type(x509.DNSName)
    first.verify_directly_issued_by(x509.load_pem_x509_certificate(webhook.root))
    deadline = time.monotonic() + 10  # the 2 s certificate is renewed every second
    while presented(webhook, ISTIOD).serial_number == first.serial_number:
        assert time.monotonic() < deadline, "the webhook kept its first certificate"
        time.sleep(0.2)
    strict = ssl.create_default_context(cadata=webhook.root.decode())
    assert webhook.plane.webhook is not None
    with socket.create_connection(("127.0.0.1", webhook.plane.webhook.port), timeout=5) as raw, \
            strict.wrap_socket(raw, server_hostname=ISTIOD):
        pass  # verified: name and chain


def test_the_webhook_needs_the_tls_port(tmp_path: Path) -> None:
    settings = dataclasses.replace(settings_for(tmp_path), webhook_addr="127.0.0.1:0",
                                   grpc_tls_addr="")
    with pytest.raises(ValueError, match="--grpc-tls-addr"):
        ControlPlane(settings)


def test_a_client_silent_in_the_tls_handshake_holds_up_no_one(webhook: Webhook) -> None:
    """The handshake waits for the client (at most the header timeout) in a task of its own:
    an API server's request is answered meanwhile."""
    assert webhook.plane.webhook is not None
    with socket.create_connection(("127.0.0.1", webhook.plane.webhook.port), timeout=5):
        time.sleep(0.2)  # accepted, nothing sent
        started = time.monotonic()
        response = webhook.review(pod())
        assert response["allowed"] is True
        assert time.monotonic() - started < 3.0
