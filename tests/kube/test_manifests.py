"""manifests/ against the real API server: strict server-side apply, and RBAC that is exactly
enough for pilotpy's informers (checked with the ServiceAccount's own token)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.local.envoy import validate_bootstrap
from pilotpy.problems import ProblemLog
from pilotpy.sources.kube import KubeApi, KubeSource, load_connection
from pilotpy.store import Store
from tests.kube.cluster import Cluster
from tests.kube.support import MANIFESTS

READ_VERBS = {"get", "list", "watch"}
EXAMPLES = MANIFESTS.parent / "examples"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifest(kind: str, name: str, path: str = "pilotpy.yaml") -> dict[str, Any]:
    return next(d for d in docs(MANIFESTS / path)
                if d["kind"] == kind and d["metadata"]["name"] == name)


KEPT_KINDS = ("Namespace", "CustomResourceDefinition")  # shared with the other kube tests


@pytest.fixture(scope="module")
def applied(cluster: Cluster) -> Iterator[list[dict[str, Any]]]:
    """Objects the module's tests apply; deleted at the end so later tests start clean."""
    objects: list[dict[str, Any]] = []
    yield objects
    for doc in reversed(objects):
        if doc["kind"] not in KEPT_KINDS:
            cluster.admin.delete(doc)


@pytest.fixture(scope="module")
def deployed(cluster: Cluster, applied: list[dict[str, Any]]) -> Cluster:
    for path in ("pilotpy.yaml", "ingressgateway.yaml"):
        for doc in docs(MANIFESTS / path):
            cluster.admin.apply(doc)
            applied.append(doc)
    return cluster


def test_every_manifest_and_sample_is_accepted_strictly(
        deployed: Cluster, applied: list[dict[str, Any]]) -> None:
    """Server-side apply with fieldValidation=Strict: an unknown or duplicated field fails."""
    paths = [MANIFESTS / "crds.yaml", MANIFESTS / "pilotpy.yaml",
             MANIFESTS / "ingressgateway-envoy.yaml", MANIFESTS / "ingressgateway.yaml",
             *sorted((MANIFESTS / "samples").glob("*.yaml")),
             *sorted(EXAMPLES.glob("*.yaml"))]
    names = []
    found = [(path, doc) for path in paths for doc in docs(path)
             if not (path.parent == EXAMPLES and doc["kind"] in ("Pod", "EndpointSlice"))]
    # The laptop registry's loopback "pods" the file source serves (and the API server
    # rightly refuses) are left out; namespaces go first (bookinfo-gateway.yaml sorts before
    # bookinfo.yaml, which makes its namespace; hack/kind-bookinfo.sh applies them in turn).
    found.sort(key=lambda item: item[1]["kind"] != "Namespace")
    for path, doc in found:
        deployed.admin.apply(doc)
        applied.append(doc)
        names.append(f"{path.name}:{doc['kind']}/{doc['metadata']['name']}")
    assert len(names) > 20, names


def test_istio_config_round_trips_through_the_crds(deployed: Cluster) -> None:
    """The schemas generated from the model keep every field, typed and untyped."""
    vs = yaml.safe_load("""\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: roundtrip, namespace: default}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http:
  - match: [{headers: {end-user: {exact: jason}}, uri: {prefix: /r}}]
    fault: {delay: {percentage: {value: 50.0}, fixedDelay: 2s}}
    corsPolicy: {allowOrigins: [{exact: "https://x"}]}
    route: [{destination: {host: reviews, subset: v2, port: {number: 9080}}, weight: 100}]
    timeout: 0.5s
""")
    deployed.admin.apply(vs)
    stored = deployed.admin.get(
        "/apis/networking.istio.io/v1/namespaces/default/virtualservices/roundtrip")
    assert stored["spec"] == vs["spec"]
    vs["spec"]["http"][0]["route"][0]["weight"] = "heavy"
    with pytest.raises(Exception, match="weight"):
        deployed.admin.apply(vs)
    deployed.admin.delete(vs)


def test_gateway_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    config_map = manifest("ConfigMap", "istio-ingressgateway-bootstrap",
                          "ingressgateway-envoy.yaml")
    bootstrap = json.loads(config_map["data"]["envoy.json"])
    xds = bootstrap["static_resources"]["clusters"][0]
    address = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"protocol": "TCP", "address": "istiod.istio-system.svc",
                                         "port_value": 15010}
    assert bootstrap["node"]["metadata"]["LABELS"]["istio"] == "ingressgateway"
    validate_bootstrap(bootstrap, tmp_path)


def test_kind_config_maps_the_gateway_node_ports() -> None:
    [kind_config] = docs(MANIFESTS / "kind-config.yaml")
    assert (kind_config["kind"], kind_config["apiVersion"]) == ("Cluster",
                                                                "kind.x-k8s.io/v1alpha4")
    mapped = {m["containerPort"]: m["hostPort"]
              for m in kind_config["nodes"][0]["extraPortMappings"]}
    # The injected gateway binds 80 (the chart's targetPort); the stock Envoy one 8080.
    for path, target in (("ingressgateway.yaml", 80), ("ingressgateway-envoy.yaml", 8080)):
        service = manifest("Service", "istio-ingressgateway", path)
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["http2"]["port"] == 80 and ports["http2"]["targetPort"] == target, path
        assert mapped[ports["http2"]["nodePort"]] == 8080
        assert mapped[ports["status-port"]["nodePort"]] == 15021
    istiod = manifest("Service", "istiod")
    assert {p["name"]: p["port"] for p in istiod["spec"]["ports"]} == {
        "grpc-xds": 15010, "tls-xds": 15012, "http-debug": 8080, "http-monitoring": 15014,
        "https-webhook": 443}
    assert {p["name"]: p["targetPort"] for p in istiod["spec"]["ports"]}["https-webhook"] == \
        15017
    deployment = manifest("Deployment", "istiod")
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "istiod"


def test_roles_grant_only_reads_except_the_cas_and_the_injectors_own() -> None:
    """pilotpy's informers only read; the writes (TokenReview, the root ConfigMaps, the CA
    Secret, the Lease) are all in the pilotpy-ca roles, the webhook configuration's caBundle in
    pilotpy-injector's."""
    for kind, name in (("ClusterRole", "pilotpy"), ("Role", "pilotpy"),
                       ("Role", "pilotpy-injector")):
        for rule in manifest(kind, name)["rules"]:
            assert set(rule["verbs"]) <= READ_VERBS, (kind, rule)
    writes = {(r["resources"][0], v) for kind in ("ClusterRole", "Role")
              for r in manifest(kind, "pilotpy-ca")["rules"] for v in r["verbs"]
              if v not in READ_VERBS}
    assert writes == {("tokenreviews", "create"), ("configmaps", "create"),
                      ("configmaps", "update"), ("secrets", "create"), ("leases", "create"),
                      ("leases", "update")}
    injector = {(r["resources"][0], tuple(r.get("resourceNames", ())), v)
                for r in manifest("ClusterRole", "pilotpy-injector")["rules"]
                for v in r["verbs"] if v not in READ_VERBS}
    assert injector == {("mutatingwebhookconfigurations", ("istio-sidecar-injector",),
                         "update")}


def test_the_status_roles_write_only_status_and_their_lease() -> None:
    """The Reconciled status's writes: the status subresource of Istio's networking kinds
    (nothing else of them) and the istio-status-leader Lease, in roles of their own."""
    (status,) = manifest("ClusterRole", "pilotpy-status")["rules"]
    assert status["apiGroups"] == ["networking.istio.io"] and status["verbs"] == ["update"]
    assert all(r.endswith("/status") for r in status["resources"])
    lease, create = manifest("Role", "pilotpy-status")["rules"]
    assert lease["resourceNames"] == ["istio-status-leader"]
    assert lease["verbs"] == ["get", "update"] and create["verbs"] == ["create"]


# -- the ServiceAccount's own token ----------------------------------------------------------

def _bind(cluster: Cluster, cluster_rules: list[dict[str, Any]],
          role_rules: list[dict[str, Any]], applied: list[dict[str, Any]]) -> str:
    """A fresh ServiceAccount bound to the given rules; returns its TokenRequest token."""
    name = f"pilotpy-rbac-{uuid.uuid4().hex[:8]}"
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": "istio-system"}]
    rbac = "rbac.authorization.k8s.io/v1"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": "istio-system"}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": name},
         "rules": cluster_rules},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": name}},
        {"apiVersion": rbac, "kind": "Role",
         "metadata": {"name": name, "namespace": "istio-system"}, "rules": role_rules},
        {"apiVersion": rbac, "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": "istio-system"}, "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}},
    ]
    for doc in objects:
        cluster.admin.apply(doc)
        applied.append(doc)
    return cluster.admin.token("istio-system", name)


async def _informers_with(cluster: Cluster, tmp_path: Path, token: str,
                          settle: float = 3.0) -> tuple[set[str], dict[str, str]]:
    """Run pilotpy's informers with `token`: (kinds synced, kind -> error of the others)."""
    kubeconfig = cluster.kubeconfig(tmp_path / f"kubeconfig-{uuid.uuid4().hex[:6]}",
                                    token=token)
    source = KubeSource(KubeApi(load_connection(kubeconfig)), Store(), ProblemLog())
    source.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(source.wait_synced(), settle)
        synced = {i.kind.kind for i in source.informers if i.synced.is_set()}
        failing = {i.kind.kind: i.status.last_error for i in source.informers
                   if not i.synced.is_set()}
        return synced, failing
    finally:
        await source.stop()


async def test_informers_sync_with_the_service_account_token(deployed: Cluster,
                                                             tmp_path: Path) -> None:
    token = deployed.admin.token("istio-system", "istiod")
    synced, failing = await _informers_with(deployed, tmp_path, token, settle=20)
    assert failing == {}
    assert "VirtualService" in synced and "ConfigMap" in synced


async def test_every_rbac_rule_is_needed(deployed: Cluster, tmp_path: Path,
                                         applied: list[dict[str, Any]]) -> None:
    cluster_rules = manifest("ClusterRole", "pilotpy")["rules"]
    role_rules = manifest("Role", "pilotpy")["rules"]
    cases = [(f"ClusterRole rule {i}: {r['resources']}",
              [x for j, x in enumerate(cluster_rules) if j != i], role_rules)
             for i, r in enumerate(cluster_rules)]
    cases += [(f"Role rule {i}: {r['resources']}", copy.deepcopy(cluster_rules),
               [x for j, x in enumerate(role_rules) if j != i])
              for i, r in enumerate(role_rules)]
    for what, without_cluster, without_role in cases:
        token = _bind(deployed, without_cluster, without_role, applied)
        synced, failing = await _informers_with(deployed, tmp_path, token)
        assert failing, f"without {what} every informer still synced"
        assert all("403" in error for error in failing.values()), (what, failing)
        assert synced, what


# -- the Reconciled status's roles, rule by rule ---------------------------------------------

STATUS_TIMEOUT = 8.0
STATUS_LEASE = ("/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/"
                "istio-status-leader")


async def _writes_status(cluster: Cluster, tmp_path: Path, token: str, path: str) -> bool:
    """Whether pilotpy serving with --enable-status and `token` writes the Reconciled
    condition onto the VirtualService at `path` (it has no proxies: "0/0 proxies up to
    date."). The status and the Lease are cleared first, so each run starts afresh."""
    from pilotpy.server.controlplane import ControlPlane
    from pilotpy.server.settings import Settings

    admin = cluster.admin
    with contextlib.suppress(Exception):
        admin.request("DELETE", STATUS_LEASE)
    current = admin.get(path)
    admin.request("PUT", f"{path}/status", {**current, "status": {}})
    name = f"status-{uuid.uuid4().hex[:6]}"
    kubeconfig = cluster.kubeconfig(tmp_path / f"kubeconfig-{name}", token=token)
    plane = ControlPlane(Settings(
        grpc_addr="127.0.0.1:0", grpc_tls_addr="", http_addr="127.0.0.1:0",
        monitoring_addr="127.0.0.1:0", kube=True, kubeconfig=kubeconfig, instance_id=name,
        enable_status=True,
        lease_duration_seconds=2.0))
    await plane.start()
    try:
        deadline = asyncio.get_running_loop().time() + STATUS_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            stored = await asyncio.to_thread(admin.get, path)
            conditions = (stored.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Reconciled" for c in conditions):
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await plane.stop()


async def test_every_status_rule_is_needed(deployed: Cluster, tmp_path: Path,
                                           applied: list[dict[str, Any]]) -> None:
    """Status is written with the pilotpy and pilotpy-status roles (the ServiceAccount's
    token, the real election and writer), and no longer without any one status rule: the
    status subresource, the Lease by name, the Lease's create."""
    vs = yaml.safe_load("""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: status-rbac, namespace: default}
spec: {hosts: [status-rbac.local], http: [{route: [{destination: {host: status-rbac}}]}]}
""")
    deployed.admin.apply(vs)
    applied.append(vs)
    path = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/status-rbac"
    cluster_rules = manifest("ClusterRole", "pilotpy")["rules"]
    role_rules = manifest("Role", "pilotpy")["rules"]
    status_cluster = manifest("ClusterRole", "pilotpy-status")["rules"]
    status_role = manifest("Role", "pilotpy-status")["rules"]
    token = _bind(deployed, cluster_rules + status_cluster, role_rules + status_role, applied)
    assert await _writes_status(deployed, tmp_path, token, path), "no status with every rule"
    cases = [(f"ClusterRole pilotpy-status rule {i}: {r}",
              cluster_rules + [x for j, x in enumerate(status_cluster) if j != i],
              role_rules + status_role) for i, r in enumerate(status_cluster)]
    cases += [(f"Role pilotpy-status rule {i}: {r}", cluster_rules + status_cluster,
               role_rules + [x for j, x in enumerate(status_role) if j != i])
              for i, r in enumerate(status_role)]
    for what, without_cluster, without_role in cases:
        token = _bind(deployed, without_cluster, without_role, applied)
        assert not await _writes_status(deployed, tmp_path, token, path), \
            f"without {what} status is still written"


# -- the mesh CA's roles, rule by rule -------------------------------------------------------

CA_FEATURE_TIMEOUT = 8.0


async def _ca_features(cluster: Cluster, tmp_path: Path, token: str, wanted: str) -> bool:
    """Whether the mesh CA's `wanted` use works for pilotpy running with `token`: "ca" (key
    material loaded: istio-ca-secret created), "tokenreview" (a CSR with an istio-ca token
    signed), "lease" (the election won), "rootcert" (the root published in a new namespace
    and corrected after an edit)."""
    from pilotpy.server.controlplane import ControlPlane
    from pilotpy.server.settings import Settings
    from tests.kube.test_istio_ca_kube import create_certificate, root_config_map

    admin = cluster.admin
    for path in ("/api/v1/namespaces/istio-system/secrets/istio-ca-secret",
                 "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/"
                 "istio-namespace-controller-election"):
        with contextlib.suppress(Exception):
            admin.request("DELETE", path)
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    kubeconfig = cluster.kubeconfig(tmp_path / f"kubeconfig-{name}", token=token)
    plane = ControlPlane(Settings(
        grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0", grpc_tls_addr="127.0.0.1:0",
        monitoring_addr="127.0.0.1:0", kube=True, kubeconfig=kubeconfig, instance_id=name,
        lease_duration_seconds=2.0))
    await plane.start()
    deadline = asyncio.get_running_loop().time() + CA_FEATURE_TIMEOUT
    try:
        assert plane.secure is not None
        try:
            await asyncio.wait_for(plane.secure.ready.wait(), CA_FEATURE_TIMEOUT)
        except TimeoutError:
            return False
        if wanted == "ca":
            return True
        if wanted == "tokenreview":
            admin.ensure_namespace("default")
            admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "sleep", "namespace": "default"}})
            istio_ca = admin.token("default", "sleep", 600, ("istio-ca",))
            try:
                await create_certificate(plane, istio_ca,
                                         "spiffe://cluster.local/ns/default/sa/sleep")
            except Exception:
                return False
            return True
        if wanted == "lease":
            assert plane.election is not None
            try:
                await asyncio.wait_for(plane.election.leading.wait(), CA_FEATURE_TIMEOUT)
            except TimeoutError:
                return False
            return True
        admin.ensure_namespace(name)
        path = f"/api/v1/namespaces/{name}/configmaps/istio-ca-root-cert"
        edited = False
        while asyncio.get_running_loop().time() < deadline + CA_FEATURE_TIMEOUT:
            found = await asyncio.to_thread(root_config_map, cluster, name)
            if found is not None and found["data"]["root-cert.pem"] != "edited":
                if edited:
                    return True
                admin.request("PATCH", path, {"data": {"root-cert.pem": "edited"}},
                              "application/merge-patch+json")
                edited = True
            await asyncio.sleep(0.2)
        return False
    finally:
        await plane.stop()


CA_RULE_USES = {"tokenreviews": "tokenreview", "configmaps": "rootcert", "secrets": "ca",
                "leases": "lease"}


async def test_every_ca_rule_is_needed(deployed: Cluster, tmp_path: Path,
                                       applied: list[dict[str, Any]]) -> None:
    cluster_rules = manifest("ClusterRole", "pilotpy")["rules"]
    role_rules = manifest("Role", "pilotpy")["rules"]
    ca_cluster = manifest("ClusterRole", "pilotpy-ca")["rules"]
    ca_role = manifest("Role", "pilotpy-ca")["rules"]
    token = _bind(deployed, cluster_rules + ca_cluster, role_rules + ca_role, applied)
    for use in ("ca", "tokenreview", "lease", "rootcert"):
        assert await _ca_features(deployed, tmp_path, token, use), f"{use} fails with every rule"
    cases = [(f"ClusterRole pilotpy-ca rule {i}", r, cluster_rules + [
        x for j, x in enumerate(ca_cluster) if j != i], role_rules + ca_role)
        for i, r in enumerate(ca_cluster)]
    cases += [(f"Role pilotpy-ca rule {i}", r, cluster_rules + ca_cluster,
               role_rules + [x for j, x in enumerate(ca_role) if j != i])
              for i, r in enumerate(ca_role)]
    for what, rule, without_cluster, without_role in cases:
        use = CA_RULE_USES[rule["resources"][0]]
        token = _bind(deployed, without_cluster, without_role, applied)
        assert not await _ca_features(deployed, tmp_path, token, use), \
            f"without {what} ({rule}) {use} still works"


# -- the injector's roles, rule by rule ------------------------------------------------------

INJECTOR_TIMEOUT = 8.0


async def _injector_features(cluster: Cluster, tmp_path: Path, token: str) -> set[str]:
    """Which of the injector's uses work for pilotpy running with `token`: "cabundle" (the
    leader wrote the mesh root into the webhook configuration), "nodes" (the kubelets read
    for native sidecars), "settings" (the istio-sidecar-injector ConfigMap read)."""
    from pilotpy.server.controlplane import ControlPlane
    from pilotpy.server.settings import Settings

    admin = cluster.admin
    for path in ("/api/v1/namespaces/istio-system/secrets/istio-ca-secret",
                 "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/"
                 "istio-namespace-controller-election"):
        with contextlib.suppress(Exception):
            admin.request("DELETE", path)
    configuration = manifest("MutatingWebhookConfiguration", "istio-sidecar-injector")
    admin.request("PUT", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                  "istio-sidecar-injector", {**admin.get(
                      "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                      "istio-sidecar-injector"), "webhooks": configuration["webhooks"]})
    settings_map = manifest("ConfigMap", "istio-sidecar-injector")
    marker = f"rbac-{uuid.uuid4().hex[:6]}"
    settings_map["data"]["values"] = json.dumps({"global": {"tag": marker}})
    admin.apply(settings_map)
    kubeconfig = cluster.kubeconfig(tmp_path / f"kubeconfig-{marker}", token=token)
    plane = ControlPlane(Settings(
        grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0", grpc_tls_addr="127.0.0.1:0",
        monitoring_addr="", webhook_addr="127.0.0.1:0", kube=True, kubeconfig=kubeconfig,
        instance_id=marker, lease_duration_seconds=2.0))
    await plane.start()
    working: set[str] = set()
    try:
        deadline = asyncio.get_running_loop().time() + INJECTOR_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            stored = await asyncio.to_thread(
                admin.get, "/apis/admissionregistration.k8s.io/v1/"
                "mutatingwebhookconfigurations/istio-sidecar-injector")
            if plane.secure is not None and plane.secure.ready.is_set() and all(
                    w["clientConfig"].get("caBundle") for w in stored["webhooks"]):
                working.add("cabundle")
            if plane.native_sidecars.synced:
                working.add("nodes")
            if plane.injector_settings.values.tag == marker:
                working.add("settings")
            if working == {"cabundle", "nodes", "settings"}:
                break
            await asyncio.sleep(0.2)
        return working
    finally:
        await plane.stop()


INJECTOR_RULE_USES = {"mutatingwebhookconfigurations": "cabundle", "nodes": "nodes",
                      "configmaps": "settings"}


async def test_every_injector_rule_is_needed(deployed: Cluster, tmp_path: Path,
                                             applied: list[dict[str, Any]]) -> None:
    base_cluster = manifest("ClusterRole", "pilotpy")["rules"] + \
        manifest("ClusterRole", "pilotpy-ca")["rules"]
    base_role = manifest("Role", "pilotpy")["rules"] + manifest("Role", "pilotpy-ca")["rules"]
    injector_cluster = manifest("ClusterRole", "pilotpy-injector")["rules"]
    injector_role = manifest("Role", "pilotpy-injector")["rules"]
    token = _bind(deployed, base_cluster + injector_cluster, base_role + injector_role,
                  applied)
    assert await _injector_features(deployed, tmp_path, token) == set(
        INJECTOR_RULE_USES.values())
    cases = [(f"ClusterRole pilotpy-injector rule {i}", r,
              base_cluster + [x for j, x in enumerate(injector_cluster) if j != i],
              base_role + injector_role) for i, r in enumerate(injector_cluster)]
    cases += [(f"Role pilotpy-injector rule {i}", r, base_cluster + injector_cluster,
               base_role + [x for j, x in enumerate(injector_role) if j != i])
              for i, r in enumerate(injector_role)]
    for what, rule, without_cluster, without_role in cases:
        use = INJECTOR_RULE_USES[rule["resources"][0]]
        token = _bind(deployed, without_cluster, without_role, applied)
        assert use not in await _injector_features(deployed, tmp_path, token), \
            f"without {what} ({rule}) {use} still works"
