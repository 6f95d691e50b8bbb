"""What the `sidecar` and `gateway` templates share: the istio-proxy container's arguments,
environment (how pilot-agent finds istiod, the CA, its pod and its mesh), readiness probe,
volumes and their mounts (the istio-ca token, the mesh root from `istio-ca-root-cert`, the
pod's labels, Envoy's working directory), and the pod's canonical labels and annotations."""

from __future__ import annotations

import json
from typing import Any

from pilotpy.inject import annotations as names
from pilotpy.inject import pods
from pilotpy.inject.inputs import TemplateInput
from pilotpy.inject.proxyconfig import interception_mode, proxy_config_json, proxy_metadata

Json = dict[str, Any]
# Go's JSON of a corev1.ContainerPort: these keys in this order, zero values left out
# (containerPort is always there).
_PORT_FIELDS = ("name", "hostPort", "containerPort", "protocol", "hostIP")


def field_env(name: str, path: str) -> Json:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def resource_env(name: str, resource: str) -> Json:
    return {"name": name,
            "valueFrom": {"resourceFieldRef": {"resource": resource, "divisor": "1"}}}


def pod_ports(pod: pods.Pod) -> str:
    """ISTIO_META_POD_PORTS, byte for byte as the template writes it."""
    lines = []
    for container in pods.containers(pod):
        for port in container.get("ports") or []:
            fields = {k: port[k] for k in _PORT_FIELDS
                      if k == "containerPort" or port.get(k) not in (None, "", 0)}
            lines.append(json.dumps(fields, separators=(",", ":")))
    body = "".join(f"\n    {',' if i else ''}{line}" for i, line in enumerate(lines))
    return f"[{body}\n]"


def proxy_args(inp: TemplateInput, kind: str) -> list[str]:
    values = inp.values
    proxy = values.proxy
    args = ["proxy", kind, "--domain", f"$(POD_NAMESPACE).svc.{proxy.cluster_domain}",
            f"--proxyLogLevel={inp.annotation(names.LOG_LEVEL, proxy.log_level)}",
            "--proxyComponentLogLevel="
            + inp.annotation(names.COMPONENT_LOG_LEVEL, proxy.component_log_level),
            f"--log_output_level={inp.annotation(names.AGENT_LOG_LEVEL, values.logging_level)}"]
    if values.sts_port:
        args.append(f"--stsPort={values.sts_port}")
    if values.log_as_json:
        args.append("--log_as_json")
    if kind == "sidecar" and proxy.outlier_log_path:
        args.append(f"--outlierLogPath={proxy.outlier_log_path}")
    return args


def proxy_env(inp: TemplateInput, *, gateway: bool) -> list[Json]:
    values = inp.values
    workload = inp.workload
    env: list[Json] = []
    if not gateway and inp.mesh.inbound_traffic_policy == "LOCALHOST":
        env.append({"name": "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", "value": "true"})
    env += [
        {"name": "PILOT_CERT_PROVIDER", "value": values.pilot_cert_provider},
        {"name": "CA_ADDR", "value": values.ca_addr},
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("HOST_IP", "status.hostIP"),
        resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        {"name": "PROXY_CONFIG", "value": proxy_config_json(inp.proxy_config) + "\n"},
        {"name": "ISTIO_META_POD_PORTS", "value": pod_ports(inp.pod)},
    ]
    app_containers = {"name": "ISTIO_META_APP_CONTAINERS",
                      "value": ",".join(inp.app_containers)}
    if not gateway:
        env.append(app_containers)
    env += [resource_env("GOMEMLIMIT", "limits.memory"),
            resource_env("GOMAXPROCS", "limits.cpu")]
    if gateway:
        env.append(app_containers)
    mode = interception_mode(inp.proxy_config)
    if not gateway:
        mode = inp.annotations.get(names.INTERCEPTION_MODE) or mode
    env += [{"name": "ISTIO_META_CLUSTER_ID", "value": values.cluster_name or "Kubernetes"},
            field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
            {"name": "ISTIO_META_INTERCEPTION_MODE", "value": mode}]
    if values.network:
        env.append({"name": "ISTIO_META_NETWORK", "value": values.network})
    workload_name = workload.name
    if not gateway:
        workload_name = inp.labels.get("service.istio.io/workload-name") or workload_name
    if workload_name:
        env.append({"name": "ISTIO_META_WORKLOAD_NAME", "value": workload_name})
    if workload.api_version and workload.name:
        env.append({"name": "ISTIO_META_OWNER",
                    "value": f"kubernetes://apis/{workload.api_version}/namespaces/"
                             f"{workload.namespace or 'default'}/{workload.kind.lower()}s/"
                             f"{workload.name}"})
    if names.BOOTSTRAP_OVERRIDE in inp.annotations:
        env.append({"name": "ISTIO_BOOTSTRAP_OVERRIDE",
                    "value": "/etc/istio/custom-bootstrap/custom_bootstrap.json"})
    trust_domain = inp.mesh.trust_domain or values.trust_domain
    if values.mesh_id or trust_domain:
        env.append({"name": "ISTIO_META_MESH_ID", "value": values.mesh_id or trust_domain})
    if trust_domain:
        env.append({"name": "TRUST_DOMAIN", "value": trust_domain})
    env += [{"name": k, "value": v} for k, v in proxy_metadata(inp.proxy_config).items()]
    # An empty value is no value in Go's EnvVar (omitempty), nor for the API server.
    return [{k: v for k, v in e.items() if not (k == "value" and v == "")} for e in env]


def readiness_probe(inp: TemplateInput, *, gateway: bool) -> Json:
    proxy = inp.values.proxy

    def setting(annotation: str, default: int) -> int:
        return default if gateway else int(inp.annotation(annotation, default))

    probe: Json = {"httpGet": {"path": "/healthz/ready", "port": 15021}}
    delay = setting(names.READINESS_INITIAL_DELAY, proxy.readiness_initial_delay_seconds)
    if delay:  # Go leaves a zero out (omitempty), and so does the API server
        probe["initialDelaySeconds"] = delay
    probe.update(periodSeconds=setting(names.READINESS_PERIOD, proxy.readiness_period_seconds),
                 timeoutSeconds=3,
                 failureThreshold=setting(names.READINESS_FAILURE_THRESHOLD,
                                          proxy.readiness_failure_threshold))
    return probe


def volume_mounts(inp: TemplateInput, *, gateway: bool) -> list[Json]:
    values = inp.values
    mounts: list[Json] = [
        {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
        {"name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds"}]
    if values.ca_name == "GkeWorkloadCertificate":
        mounts.append({"name": "gke-workload-certificate",
                       "mountPath": "/var/run/secrets/workload-spiffe-credentials",
                       "readOnly": True})
    else:
        mounts.append({"name": "workload-certs",
                       "mountPath": "/var/run/secrets/workload-spiffe-credentials"})
    if values.pilot_cert_provider == "istiod":
        mounts.append({"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"})
        if not gateway:
            mounts.append({"mountPath": "/var/run/secrets/istio/crl", "name": "istio-ca-crl"})
    mounts.append({"mountPath": "/var/lib/istio/data", "name": "istio-data"})
    if names.BOOTSTRAP_OVERRIDE in inp.annotations:
        mounts.append({"mountPath": "/etc/istio/custom-bootstrap",
                       "name": "custom-bootstrap-volume"})
    mounts += [{"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
               {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"}]
    if values.mount_mtls_certs:
        mounts.append({"mountPath": "/etc/certs/", "name": "istio-certs", "readOnly": True})
    mounts.append({"name": "istio-podinfo", "mountPath": "/etc/istio/pod"})
    return mounts


def volumes(inp: TemplateInput, *, gateway: bool) -> list[Json]:
    """The pod's volumes; an emptyDir written `emptyDir:` (null) in the template is left
    without a source, which the API server defaults to an emptyDir."""
    values = inp.values
    empty: Json | None = {} if gateway else None
    found: list[Json] = [{"emptyDir": None, "name": "workload-socket"},
                         {"emptyDir": empty, "name": "credential-socket"}]
    if values.ca_name == "GkeWorkloadCertificate":
        found.append({"name": "gke-workload-certificate",
                      "csi": {"driver": "workloadcertificates.security.cloud.google.com"}})
    else:
        found.append({"emptyDir": empty, "name": "workload-certs"})
    if names.BOOTSTRAP_OVERRIDE in inp.annotations:
        found.append({"name": "custom-bootstrap-volume",
                      "configMap": {"name": inp.annotations[names.BOOTSTRAP_OVERRIDE]}})
    found += [
        {"emptyDir": {"medium": "Memory"}, "name": "istio-envoy"},
        {"name": "istio-data", "emptyDir": {}},
        {"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
        {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "istio-token", "expirationSeconds": 43200,
            "audience": values.token_audience}}]}},
    ]
    if values.pilot_cert_provider == "istiod":
        found.append({"name": "istiod-ca-cert",
                      "configMap": {"name": values.trust_bundle_name or "istio-ca-root-cert"}})
    if not gateway:
        found.append({"name": "istio-ca-crl",
                      "configMap": {"name": "istio-ca-crl", "optional": True}})
    if values.mount_mtls_certs:
        account = str(pods.spec(inp.pod).get("serviceAccountName") or "")
        found.append({"name": "istio-certs", "secret": {
            "optional": True, "secretName": f"istio.{account}" if account else "istio.default"}})
    return found


def image_pull_secrets(inp: TemplateInput) -> list[Json]:
    return [{"name": s} for s in inp.values.image_pull_secrets]


def canonical_labels(inp: TemplateInput, *, gateway: bool) -> dict[str, str]:
    own = inp.labels
    name = (own.get("service.istio.io/canonical-name") or own.get("app.kubernetes.io/name")
            or own.get("app") or inp.workload.name)
    if not gateway:
        name = name[:63].strip("-_.")
    revision = (own.get("service.istio.io/canonical-revision")
                or own.get("app.kubernetes.io/version") or own.get("version") or "latest")
    return {"service.istio.io/canonical-name": name,
            "service.istio.io/canonical-revision": revision}


def pod_annotations(inp: TemplateInput) -> dict[str, str]:
    """istio.io/rev and, when the pod has an application container, the container kubectl
    logs and exec pick by default."""
    out = {names.REVISION: inp.values.effective_revision}
    apps = inp.app_containers
    if apps:
        for key in ("kubectl.kubernetes.io/default-logs-container",
                    "kubectl.kubernetes.io/default-container"):
            if key not in inp.annotations:
                out[key] = apps[0]
    return out


def with_pull_policy(container: Json, inp: TemplateInput) -> Json:
    if inp.values.image_pull_policy:
        container["imagePullPolicy"] = inp.values.image_pull_policy
    return container

