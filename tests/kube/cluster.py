"""A real control plane for the kube tier: etcd and kube-apiserver as local processes
(envtest's convention: $KUBEBUILDER_ASSETS holds both binaries; `make kube-bins` builds them).

No controller-manager, scheduler or kubelet: tests create ServiceAccounts, patch pods/status
for pod IPs and write EndpointSlices themselves. The API server runs with its watch cache off
and no automatic compaction, so the tests decide when a resourceVersion expires (410 Gone)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pilotpy.local.envoy import free_port
from tests.kube.pki import Pki

ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding",
                            "CustomResourceDefinition", "IngressClass", "Node",
                            "MutatingWebhookConfiguration",
                            "ValidatingWebhookConfiguration"})


def kube_bins() -> Path:
    """The directory with kube-apiserver and etcd; fails with the make target to run."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    directory = Path(assets) if assets else cache / "pilotpy" / "kube-bins"
    missing = [b for b in ("kube-apiserver", "etcd") if not (directory / b).is_file()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found in {directory}: run `make kube-bins` "
                           "or point KUBEBUILDER_ASSETS at a directory holding both")
    return directory


def plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y") and lower[-2] not in "aeiou":
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


def object_path(doc: dict[str, Any], *, named: bool = True) -> str:
    api_version = doc["apiVersion"]
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    kind = doc["kind"]
    metadata = doc.get("metadata") or {}
    if kind not in CLUSTER_SCOPED:
        base += f"/namespaces/{metadata.get('namespace') or 'default'}"
    path = f"{base}/{plural(kind)}"
    return f"{path}/{metadata['name']}" if named else path


class ApiStatusError(Exception):
    def __init__(self, code: int, body: str) -> None:
        super().__init__(f"HTTP {code}: {body[:500]}")
        self.code = code
        self.body = body


class KubeClient:
    """A blocking client for the tests' own reads and writes (admin or a given identity)."""

    def __init__(self, server: str, ca: Path, cert: Path | None = None,
                 key: Path | None = None, token: str | None = None) -> None:
        self.server = server
        self._context = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            self._context.load_cert_chain(str(cert), str(key) if key else None)
        self._token = token

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json", timeout: float = 30) -> Any:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Content-Type", content_type)
        request.add_header("Accept", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, context=self._context,
                                        timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            raise ApiStatusError(err.code, err.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def ready(self) -> bool:
        request = urllib.request.Request(self.server + "/readyz")
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=5) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False

    def apply(self, doc: dict[str, Any], *, strict: bool = True) -> Any:
        """Server-side apply (kubectl apply --server-side --field-validation=Strict)."""
        query = urllib.parse.urlencode({"fieldManager": "pilotpy-tests", "force": "true",
                                        "fieldValidation": "Strict" if strict else "Warn"})
        return self.request("PATCH", f"{object_path(doc)}?{query}", doc,
                            "application/apply-patch+yaml")

    def apply_yaml(self, text: str, *, strict: bool = True) -> list[Any]:
        return [self.apply(doc, strict=strict) for doc in yaml.safe_load_all(text) if doc]

    def delete(self, doc: dict[str, Any]) -> None:
        try:
            self.request("DELETE", object_path(doc))
        except ApiStatusError as err:
            if err.code != 404:
                raise

    def pod_ip(self, namespace: str, name: str, ip: str) -> None:
        """What a kubelet would report: the pod running, ready, with its IP."""
        self.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                     {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                 "conditions": [{"type": "Ready", "status": "True"}]}},
                     "application/merge-patch+json")

    def ensure_namespace(self, name: str) -> None:
        """A namespace with the `default` ServiceAccount the admission plugin wants."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": name}})

    def token(self, namespace: str, service_account: str, seconds: int = 3600,
              audiences: tuple[str, ...] = ()) -> str:
        """A bound token from the TokenRequest API (the API server's own audience unless
        `audiences` names others, as a projected `istio-ca` token does)."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        answer = self.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        return str(answer["status"]["token"])


def _wait(check: Any, what: str, timeout: float, process: subprocess.Popen[bytes],
          log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            if check():
                return
        except (OSError, ApiStatusError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


class Cluster:
    """etcd + kube-apiserver on 127.0.0.1 ports picked at start."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.bins = kube_bins()
        self.pki = Pki(workdir / "pki")
        self.serving = self.pki.issue_api_server("apiserver", "kube-apiserver")
        self.admin_cert = self.pki.issue_client("admin", "pilotpy-admin",
                                                organizations=("system:masters",))
        self.sa_keys = self.pki.service_account_keys()
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = free_port()
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None
        self.admin = KubeClient(self.server, self.pki.ca, self.admin_cert.cert,
                                self.admin_cert.key)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        try:
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.workdir)
        finally:
            out.close()

    def start(self) -> None:
        try:
            self.start_etcd()
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise

    def start_etcd(self) -> None:
        log = self.workdir / "etcd.log"
        self.etcd = self._spawn([
            str(self.bins / "etcd"), "--name", "default",
            "--data-dir", str(self.workdir / "etcd-data"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ], log)
        _wait(lambda: self.etcd_revision() > 0, "etcd", 30, self.etcd, log)

    def start_apiserver(self) -> None:
        log = self.workdir / "kube-apiserver.log"
        self.apiserver = self._spawn([
            str(self.bins / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={self.serving.cert}",
            f"--tls-private-key-file={self.serving.key}",
            f"--client-ca-file={self.pki.ca}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={self.sa_keys.cert}",
            f"--service-account-signing-key-file={self.sa_keys.key}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            # The tests own expiry: no watch cache serving old versions, no compaction
            # behind their back.
            "--watch-cache=false",
            "--etcd-compaction-interval=0",
            "--enable-priority-and-fairness=false",
            "--v=1",
        ], log)
        _wait(self.admin.ready, "kube-apiserver", 90, self.apiserver, log)
        _wait(self._bootstrapped, "kube-apiserver RBAC bootstrap", 60, self.apiserver, log)

    def _bootstrapped(self) -> bool:
        self.admin.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin")
        self.admin.get("/api/v1/namespaces/default")
        return True

    def stop_apiserver(self) -> None:
        _stop(self.apiserver)
        self.apiserver = None

    def stop(self) -> None:
        _stop(self.apiserver)
        _stop(self.etcd)
        self.apiserver = self.etcd = None

    # -- etcd ------------------------------------------------------------------------------

    def _etcd_call(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.etcd_url + path, json.dumps(body).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def etcd_revision(self) -> int:
        answer = self._etcd_call("/v3/kv/range",
                                 {"key": base64.b64encode(b"/").decode(), "limit": 1})
        return int(answer["header"]["revision"])

    def compact(self) -> int:
        """Compact etcd at its current revision: every older resourceVersion is gone."""
        revision = self.etcd_revision()
        self._etcd_call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    # -- client configuration --------------------------------------------------------------

    def kubeconfig(self, path: Path, *, server: str | None = None, token: str | None = None,
                   ) -> Path:
        user: dict[str, Any] = ({"token": token} if token else
                                {"client-certificate": str(self.admin_cert.cert),
                                 "client-key": str(self.admin_cert.key)})
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": server or self.server, "certificate-authority": str(self.pki.ca)}}],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
