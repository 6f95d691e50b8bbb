"""Sidecar injection with the real kube-apiserver calling pilotpy's webhook over TLS: the
MutatingWebhookConfiguration of manifests/pilotpy.yaml (its selectors and failurePolicy; the
webhooks' address changed to pilotpy's loopback port, since this API server has no Service
routing), its caBundle written by pilotpy's leader, the injector's settings from the
ConfigMap, Pods created directly (no controller-manager here) and read back as stored."""

from __future__ import annotations

import base64
import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.server.controlplane import ControlPlane
from pilotpy.server.settings import Settings
from tests.kube.cluster import ApiStatusError, Cluster
from tests.kube.support import MANIFESTS
from tests.mesh.mesh import ControlPlaneThread

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
TAG = "1.28.0-kube-tier"  # the ConfigMap's values say so: proves they are read


def manifest(kind: str, name: str, path: str = "pilotpy.yaml") -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((MANIFESTS / path).read_text()) if d]
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def wait(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def webhook_configuration(url: str) -> dict[str, Any]:
    """The manifest's configuration, each webhook pointed at `url`."""
    configuration = copy.deepcopy(manifest("MutatingWebhookConfiguration",
                                           "istio-sidecar-injector"))
    for webhook in configuration["webhooks"]:
        webhook["clientConfig"] = {"url": url}
    return configuration


class Injecting:
    def __init__(self, cluster: Cluster, plane: ControlPlane) -> None:
        self.cluster = cluster
        self.plane = plane

    @property
    def root(self) -> bytes:
        assert self.plane.secure is not None
        return self.plane.secure.root_pem

    def namespace(self, labels: dict[str, str]) -> str:
        name = f"inject-{uuid.uuid4().hex[:6]}"
        self.cluster.admin.apply({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": name, "labels": labels}})
        for account in ("default", "httpbin"):
            self.cluster.admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                                      "metadata": {"name": account, "namespace": name}})
        return name

    def create(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        stored: dict[str, Any] = self.cluster.admin.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        return stored


@pytest.fixture(scope="module")
def injecting(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Injecting]:
    admin = cluster.admin
    for path in ("/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/"
                 "istio-namespace-controller-election",):
        try:
            admin.request("DELETE", path)
        except ApiStatusError as err:
            assert err.code == 404
    settings_map = manifest("ConfigMap", "istio-sidecar-injector")
    settings_map["data"]["values"] = settings_map["data"]["values"].replace(
        '"tag": "1.28.0"', f'"tag": "{TAG}"')
    admin.apply(settings_map)
    kubeconfig = cluster.kubeconfig(tmp_path_factory.mktemp("inject") / "kubeconfig")
    thread = ControlPlaneThread(Settings(
        grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0", grpc_tls_addr="127.0.0.1:0",
        monitoring_addr="", webhook_addr="127.0.0.1:0", serving_hosts=("127.0.0.1",),
        kube=True, kubeconfig=kubeconfig, instance_id="inject-test",
        lease_duration_seconds=2.0))
    plane = thread.start()
    configuration: dict[str, Any] | None = None
    try:
        assert plane.webhook is not None
        wait(plane.webhook.ready.is_set, "the webhook to open")
        wait(lambda: plane.injector_settings.values.tag == TAG, "the injector's ConfigMap")
        configuration = webhook_configuration(
            f"https://127.0.0.1:{plane.webhook.port}/inject")
        admin.apply(configuration)
        yield Injecting(cluster, plane)
    finally:
        if configuration is not None:
            admin.delete(configuration)
        admin.delete(settings_map)
        thread.stop()


def ca_bundles(cluster: Cluster) -> list[str]:
    stored = cluster.admin.get(f"{MWC_PATH}/istio-sidecar-injector")
    return [w["clientConfig"].get("caBundle", "") for w in stored["webhooks"]]


def test_pilotpy_writes_the_mesh_root_into_the_ca_bundle_and_keeps_it(
        injecting: Injecting) -> None:
    root = base64.b64encode(injecting.root).decode()
    wait(lambda: ca_bundles(injecting.cluster) == [root] * 4, "caBundle on all 4 webhooks")
    injecting.cluster.admin.request(
        "PATCH", f"{MWC_PATH}/istio-sidecar-injector",
        [{"op": "replace", "path": "/webhooks/2/clientConfig/caBundle",
          "value": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()}],
        "application/json-patch+json")
    wait(lambda: ca_bundles(injecting.cluster) == [root] * 4, "the edited caBundle corrected")


def test_only_the_leader_writes_the_ca_bundle(injecting: Injecting,
                                             tmp_path: Path) -> None:
    """A second replica with the webhook, a follower (the module's pilotpy holds the Lease),
    serves injection with the same root, so the one caBundle trusts both, and never touches
    the configuration: the leader alone corrects an edit."""
    leader = injecting.plane
    assert leader.webhook_ca is not None and leader.election is not None
    wait(leader.election.leading.is_set, "the module's pilotpy to lead")
    thread = ControlPlaneThread(Settings(
        grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0", grpc_tls_addr="127.0.0.1:0",
        monitoring_addr="", webhook_addr="127.0.0.1:0", serving_hosts=("127.0.0.1",),
        kube=True, kubeconfig=injecting.cluster.kubeconfig(tmp_path / "kubeconfig"),
        instance_id="inject-follower", lease_duration_seconds=2.0))
    follower = thread.start()
    try:
        assert follower.webhook is not None and follower.webhook_ca is not None
        assert follower.election is not None and follower.secure is not None
        wait(follower.webhook.ready.is_set, "the follower's webhook to open")
        assert follower.secure.root_pem == injecting.root
        # The follower has campaigned (it saw the leader's record) and lost.
        wait(lambda: follower.election is not None
             and follower.election.observed_holder == "inject-test", "the follower to campaign")
        root = base64.b64encode(injecting.root).decode()
        wait(lambda: ca_bundles(injecting.cluster) == [root] * 4, "the leader's caBundle")
        writes = leader.webhook_ca.writes
        injecting.cluster.admin.request(
            "PATCH", f"{MWC_PATH}/istio-sidecar-injector",
            [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle",
              "value": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()}],
            "application/json-patch+json")
        wait(lambda: ca_bundles(injecting.cluster) == [root] * 4, "the edit corrected")
        assert leader.webhook_ca.writes == writes + 1
        assert not follower.election.leading.is_set()
        # The follower's patcher never ran: it has not even read the configuration.
        assert (follower.webhook_ca.writes, follower.webhook_ca.current) == (0, None)
    finally:
        thread.stop()


def httpbin(name: str = "", labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment's pod, as its ReplicaSet creates it."""
    metadata: dict[str, Any] = {
        "labels": {"app": "httpbin", "version": "v1", "pod-template-hash": "7c4f9d8b6",
                   **(labels or {})},
        "annotations": annotations or {},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "httpbin-7c4f9d8b6", "uid": str(uuid.uuid4()),
                             "controller": True, "blockOwnerDeletion": True}]}
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = "httpbin-7c4f9d8b6-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"serviceAccountName": "httpbin", "containers": [{
                "name": "httpbin", "image": "docker.io/mccutchen/go-httpbin:v2.15.0",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/get", "port": "http"}}}]}}


def names(pod: dict[str, Any], key: str) -> list[str]:
    return [c["name"] for c in pod["spec"].get(key) or []]


def test_a_deployments_pod_in_a_labelled_namespace_is_stored_injected(
        injecting: Injecting) -> None:
    namespace = injecting.namespace({"istio-injection": "enabled"})
    stored = injecting.create(namespace, httpbin())
    # No node runs a kubelet older than 1.33 (there is no node): native sidecars.
    assert names(stored, "initContainers") == ["istio-init", "istio-proxy"]
    assert names(stored, "containers") == ["httpbin"]
    proxy = stored["spec"]["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert proxy["image"] == f"docker.io/istio/proxyv2:{TAG}"
    assert proxy["args"][:2] == ["proxy", "sidecar"]
    env = {e["name"]: e for e in proxy["env"]}
    assert env["ISTIO_META_OWNER"]["value"] == (
        f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/httpbin")
    assert env["CA_ADDR"]["value"] == "istiod.istio-system.svc:15012"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
    assert volumes["istio-token"]["projected"]["sources"][0]["serviceAccountToken"][
        "audience"] == "istio-ca"
    assert volumes["istiod-ca-cert"]["configMap"]["name"] == "istio-ca-root-cert"
    assert volumes["workload-socket"] == {"name": "workload-socket", "emptyDir": {}}
    probe = stored["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/app-health/httpbin/readyz", 15020)
    annotations = stored["metadata"]["annotations"]
    assert annotations["istio.io/rev"] == "default"
    assert "istio-proxy" in annotations["sidecar.istio.io/status"]


def test_opt_out_and_unlabelled_namespaces_are_left_alone(injecting: Injecting) -> None:
    enabled = injecting.namespace({"istio-injection": "enabled"})
    plain = injecting.namespace({})
    out = injecting.create(enabled, httpbin(labels={"sidecar.istio.io/inject": "false"}))
    assert names(out, "containers") == ["httpbin"] and not names(out, "initContainers")
    assert "sidecar.istio.io/status" not in (out["metadata"].get("annotations") or {})
    untouched = injecting.create(plain, httpbin())
    assert names(untouched, "containers") == ["httpbin"]
    assert not names(untouched, "initContainers")
    # In an unlabelled namespace a pod can still ask (istiod's "object" webhook); a namespace
    # of revision default is injected too.
    asked = injecting.create(plain, httpbin(labels={"sidecar.istio.io/inject": "true"}))
    assert "istio-proxy" in names(asked, "initContainers")
    revision = injecting.namespace({"istio.io/rev": "default"})
    assert "istio-proxy" in names(injecting.create(revision, httpbin()), "initContainers")


def test_an_injected_pod_created_again_is_stored_unchanged(injecting: Injecting) -> None:
    namespace = injecting.namespace({"istio-injection": "enabled"})
    first = injecting.create(namespace, httpbin())
    again = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "httpbin-again", "labels": first["metadata"]["labels"],
                          "annotations": first["metadata"]["annotations"]},
             "spec": first["spec"]}
    stored = injecting.create(namespace, again)
    assert stored["spec"] == first["spec"]
    assert stored["metadata"]["annotations"] == first["metadata"]["annotations"]


def test_a_bad_annotation_is_refused_naming_it(injecting: Injecting) -> None:
    namespace = injecting.namespace({"istio-injection": "enabled"})
    with pytest.raises(ApiStatusError) as refused:
        injecting.create(namespace, httpbin(
            annotations={"traffic.sidecar.istio.io/excludeOutboundPorts": "3306,mysql"}))
    assert refused.value.code == 400
    assert "denied the request" in refused.value.body
    assert "traffic.sidecar.istio.io/excludeOutboundPorts" in refused.value.body
    with pytest.raises(ApiStatusError) as unknown:
        injecting.create(namespace, httpbin(
            annotations={"inject.istio.io/templates": "grpc-agent"}))
    assert "inject.istio.io/templates" in unknown.value.body


def test_the_gateway_charts_pod_gets_the_gateway_proxy(injecting: Injecting) -> None:
    """manifests/ingressgateway.yaml's pod (istio/gateway chart): unlabelled istio-system, the
    pod asks for injection with the gateway template."""
    admin = injecting.cluster.admin
    admin.apply(manifest("ServiceAccount", "istio-ingressgateway", "ingressgateway.yaml"))
    template = manifest("Deployment", "istio-ingressgateway", "ingressgateway.yaml")[
        "spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {**template["metadata"], "name": f"gw-{uuid.uuid4().hex[:6]}"},
           "spec": template["spec"]}
    stored = injecting.create("istio-system", pod)
    try:
        assert names(stored, "containers") == ["istio-proxy"]
        assert not names(stored, "initContainers")
        proxy = stored["spec"]["containers"][0]
        assert proxy["image"] == f"docker.io/istio/proxyv2:{TAG}"
        assert proxy["args"][:2] == ["proxy", "router"]
        assert proxy["securityContext"]["runAsUser"] == 1337
        assert proxy["securityContext"]["readOnlyRootFilesystem"] is True  # the chart's
        assert proxy["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    finally:
        admin.request("DELETE", f"/api/v1/namespaces/istio-system/pods/"
                                f"{stored['metadata']['name']}")


def test_pods_are_refused_while_the_webhook_cannot_be_reached(injecting: Injecting,
                                                              tmp_path: Path) -> None:
    """failurePolicy Fail (istiod's): with pilotpy away, a pod the webhook selects is not
    created; the error names the webhook."""
    admin = injecting.cluster.admin
    down = webhook_configuration("https://127.0.0.1:1/inject")
    down["metadata"]["name"] = "pilotpy-down"
    down["metadata"]["labels"]["istio.io/rev"] = "canary"  # not pilotpy's to patch
    down["webhooks"] = [dict(down["webhooks"][3], objectSelector={
        "matchLabels": {"pilotpy-test": "webhook-down"}})]
    admin.apply(down)
    try:
        plain = injecting.namespace({})
        with pytest.raises(ApiStatusError) as refused:
            injecting.create(plain, httpbin(labels={"pilotpy-test": "webhook-down"}))
        assert "failed calling webhook" in refused.value.body
        assert "object.sidecar-injector.istio.io" in refused.value.body
    finally:
        admin.delete(down)
