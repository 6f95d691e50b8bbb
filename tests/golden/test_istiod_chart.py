"""pilotpy's manifests and injector against what istiod's own chart installs, rendered by the
real `istioctl manifest generate` of the pinned commit (its default profile, offline):

- the MutatingWebhookConfiguration `istio-sidecar-injector`: the same four webhooks (names,
  rules, namespace and object selectors, failurePolicy, sideEffects, reinvocationPolicy,
  review versions, the Service `istiod` port 443 and path /inject), the labels the caBundle
  patcher and Istio's tools look for;
- the Service `istiod`: its ports, the webhook's 443 to :15017 among them;
- the chart's ConfigMaps `istio-sidecar-injector` (its `config` with every template, its
  `values`) and `istio` (`mesh`), as a user installing istiod's chart would leave them: read
  by pilotpy, they inject as `istioctl kube-inject` does with the same documents.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.inject.injector import InjectorConfig, inject
from pilotpy.mesh import parse_mesh_config
from pilotpy.server.injector_settings import InjectorSettings
from tests.golden.injection_cases import ROOT as CASES
from tests.golden.test_injection_istioctl import injected_by_istioctl, normalized
from tests.istio_bins import ISTIOCTL, UNREACHABLE_KUBECONFIG

MANIFESTS = Path(__file__).parents[2] / "manifests"
WEBHOOK_LABELS = ("istio.io/rev", "app", "app.kubernetes.io/name")


@dataclass(frozen=True)
class Generated:
    work: Path
    docs: list[dict[str, Any]]

    def find(self, kind: str, name: str) -> dict[str, Any]:
        return find(self.docs, kind, name)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pilotpy_manifest() -> list[dict[str, Any]]:
    text = (MANIFESTS / "pilotpy.yaml").read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    if not ISTIOCTL.exists():
        pytest.fail(f"{ISTIOCTL} missing: run `make istioctl`")
    work = tmp_path_factory.mktemp("istiod-chart")
    (work / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG, encoding="utf-8")
    result = subprocess.run(
        [str(ISTIOCTL), "--kubeconfig", str(work / "kubeconfig"), "manifest", "generate"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return Generated(work, [d for d in yaml.safe_load_all(result.stdout) if d])


def test_the_webhook_configuration_is_istiods(generated: Generated) -> None:
    """Same webhooks field by field (failurePolicy Fail among them), no caBundle in either
    (the control plane writes it), the labels pilotpy's patcher and istioctl select on."""
    theirs = generated.find("MutatingWebhookConfiguration", "istio-sidecar-injector")
    ours = find(pilotpy_manifest(), "MutatingWebhookConfiguration", "istio-sidecar-injector")
    assert ours["webhooks"] == theirs["webhooks"]
    assert {w["failurePolicy"] for w in ours["webhooks"]} == {"Fail"}
    labels = {k: theirs["metadata"]["labels"][k] for k in WEBHOOK_LABELS}
    assert {k: ours["metadata"]["labels"].get(k) for k in WEBHOOK_LABELS} == labels


def test_the_istiod_service_has_istiods_ports(generated: Generated) -> None:
    """Every port of istiod's Service, to the same container port (the webhook's 443 to
    :15017); pilotpy adds its debug port."""
    def ports(service: dict[str, Any]) -> dict[str, tuple[int, int]]:
        return {p["name"]: (p["port"], p.get("targetPort", p["port"]))
                for p in service["spec"]["ports"]}

    theirs = ports(generated.find("Service", "istiod"))
    ours = ports(find(pilotpy_manifest(), "Service", "istiod"))
    assert theirs["https-webhook"] == (443, 15017) == ours["https-webhook"]
    # istiod names 15012 https-dns, pilotpy tls-xds: the same port either way.
    assert set(theirs.values()) <= set(ours.values())
    assert set(ours.values()) - set(theirs.values()) == {(8080, 8080)}


def test_istiods_own_injector_config_map_is_read(generated: Generated) -> None:
    """The chart's ConfigMap parses; the templates pilotpy does not render are reported,
    not an error."""
    settings = InjectorSettings()
    assert settings.load(**chart_documents(generated), origin="chart")
    assert settings.errors == 0
    assert settings.policy.policy == "enabled"
    assert "grpc-agent" in settings.policy.ignored_templates
    assert "sidecar" not in settings.policy.ignored_templates
    chart_values = yaml.safe_load(chart_documents(generated)["values"])["global"]
    assert (settings.values.hub, settings.values.tag) == (chart_values["hub"],
                                                          chart_values["tag"])


def chart_documents(generated: Generated) -> dict[str, str]:
    data = generated.find("ConfigMap", "istio-sidecar-injector")["data"]
    return {"config": str(data["config"]), "values": str(data["values"])}


@pytest.mark.parametrize("case", ["plain", "gateway", "probes", "annotations"])
def test_with_the_charts_config_maps_pilotpy_injects_as_istioctl(generated: Generated,
                                                                 case: str) -> None:
    documents = chart_documents(generated)
    mesh_text = str(generated.find("ConfigMap", "istio")["data"]["mesh"])
    files = {"config": generated.work / "config.yaml", "values": generated.work / "values.json",
             "mesh": generated.work / "mesh.yaml"}
    for key, text in {**documents, "mesh": mesh_text}.items():
        files[key].write_text(text, encoding="utf-8")
    settings = InjectorSettings()
    assert settings.load(**documents, origin="chart")
    mesh, warnings = parse_mesh_config(yaml.safe_load(mesh_text))
    assert not warnings
    pod_file = CASES / case / "pod.yaml"
    pod = yaml.safe_load(pod_file.read_text(encoding="utf-8"))
    ours = inject(pod, InjectorConfig(settings.values, settings.policy, mesh), native=False)
    result = subprocess.run(
        [str(ISTIOCTL), "--kubeconfig", str(generated.work / "kubeconfig"), "kube-inject",
         "--revision", "default", "-f", str(pod_file),
         "--injectConfigFile", str(files["config"]), "--meshConfigFile", str(files["mesh"]),
         "--valuesFile", str(files["values"])],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "ENABLE_NATIVE_SIDECARS": "false"})
    assert ours.injected
    assert normalized(ours.pod) == normalized(injected_by_istioctl(result))
