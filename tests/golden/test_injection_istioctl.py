"""pilotpy's injector against the real `istioctl kube-inject` of the pinned istio commit, on
every injection case: same pod out (containers, images, arguments, environment, ports,
probes, volumes, labels, annotations), given the same mesh config and the same Istio values
(the istio-discovery chart's defaults with pilotpy's image, then the case's), and refused
for the same annotation. istioctl, its templates and the chart's values come from `make
istioctl` (hack/istio-bins.sh), a dependency of this tier.

Listed differences (docs/istio-proxy.md#differences-from-istiod), and only those, are left
out of the comparison:
- `proxy.istio.io/overrides` holds the same JSON with its keys in another order (Go prints a
  container's fields in struct order);
- a pod injected before: istiod renders it again (dropping what the pod's own istio-proxy
  set), pilotpy leaves it as it is.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.inject.injector import inject
from pilotpy.inject.values import DEFAULT_HUB, DEFAULT_TAG
from tests.golden.injection_cases import InjectionCase, injection_cases
from tests.istio_bins import ISTIO_INJECTION, ISTIOCTL, UNREACHABLE_KUBECONFIG

CASES = injection_cases()
JSON_ANNOTATIONS = ("proxy.istio.io/overrides",)


@pytest.fixture(scope="module")
def istio_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kubeconfig that keeps istioctl off any cluster and the injection config built
    from the pinned chart's templates; missing binaries fail (the tier builds them)."""
    missing = [str(p) for p in (ISTIOCTL, ISTIO_INJECTION / "injection-template.yaml")
               if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make istioctl`")
    work = tmp_path_factory.mktemp("istioctl")
    (work / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG, encoding="utf-8")
    templates = {"sidecar": "injection-template.yaml",
                 "gateway": "gateway-injection-template.yaml"}
    config = {"templates": {name: (ISTIO_INJECTION / file).read_text(encoding="utf-8")
                            for name, file in templates.items()}}
    (work / "inject.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return work


def chart_values(case: InjectionCase) -> dict[str, Any]:
    """What istio-discovery puts in the istio-sidecar-injector ConfigMap's `values`, with
    pilotpy's default image (a release, where the chart's development defaults name a testing
    registry), then the case's values."""
    chart = yaml.safe_load((ISTIO_INJECTION / "istio-discovery-values.yaml")
                           .read_text(encoding="utf-8"))["_internal_defaults_do_not_set"]
    values: dict[str, Any] = {k: copy.deepcopy(chart[k])
                              for k in ("global", "sidecarInjectorWebhook", "revision")}
    values["pilot"] = {k: copy.deepcopy(chart[k]) for k in ("cni", "env")}
    values["gateways"] = {k: copy.deepcopy(chart["gateways"][k])
                          for k in ("securityContext", "seccompProfile")}
    values["global"].update(hub=DEFAULT_HUB, tag=DEFAULT_TAG)
    return deep_merge(values, case.values)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def kube_inject(work: Path, case: InjectionCase, pod: dict[str, Any]
                ) -> subprocess.CompletedProcess[str]:
    directory = work / case.name
    directory.mkdir(exist_ok=True)
    (directory / "pod.yaml").write_text(yaml.safe_dump(pod), encoding="utf-8")
    (directory / "values.json").write_text(json.dumps(chart_values(case)), encoding="utf-8")
    (directory / "mesh.yaml").write_text(yaml.safe_dump(case.mesh_config), encoding="utf-8")
    env = {**os.environ, "ENABLE_NATIVE_SIDECARS": "true" if case.native else "false"}
    return subprocess.run(
        [str(ISTIOCTL), "--kubeconfig", str(work / "kubeconfig"), "kube-inject",
         "--revision", "default", "-f", str(directory / "pod.yaml"),
         "--injectConfigFile", str(work / "inject.yaml"),
         "--meshConfigFile", str(directory / "mesh.yaml"),
         "--valuesFile", str(directory / "values.json")],
        capture_output=True, text=True, timeout=60, check=False, env=env)


def normalized(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod without what only Go's printing adds (`status: {}`, a null creationTimestamp,
    `resources: {}` on every container), JSON annotations parsed."""
    out = copy.deepcopy(pod)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    meta.pop("creationTimestamp", None)
    containers = [c for key in ("containers", "initContainers")
                  for c in out.get("spec", {}).get(key) or []]
    for key in JSON_ANNOTATIONS:
        if key in meta.get("annotations", {}):
            meta["annotations"][key] = json.loads(meta["annotations"][key])
            containers += [c for k in ("containers", "initContainers")
                           for c in meta["annotations"][key].get(k) or []]
    for container in containers:
        if container.get("resources") == {}:
            del container["resources"]
    return out


def injected_by_istioctl(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(docs) == 1, result.stdout
    return dict(docs[0])


@pytest.mark.parametrize("case", [c for c in CASES if not c.refused], ids=lambda c: c.name)
def test_pilotpy_injects_as_istioctl_kube_inject(case: InjectionCase,
                                                 istio_files: Path) -> None:
    ours = inject(case.pod, case.config(), native=case.native).pod
    theirs = injected_by_istioctl(kube_inject(istio_files, case, case.pod))
    assert normalized(ours) == normalized(theirs)


@pytest.mark.parametrize("case", [c for c in CASES if c.refused], ids=lambda c: c.name)
def test_pilotpy_refuses_what_istioctl_kube_inject_refuses(case: InjectionCase,
                                                           istio_files: Path) -> None:
    """Both refuse, naming the value refused (pilotpy names the annotation too)."""
    result = kube_inject(istio_files, case, case.pod)
    assert result.returncode != 0, result.stdout
    named = [v for k, v in case.pod["metadata"]["annotations"].items() if k in case.refused]
    assert named, case.refused
    for value in named:
        assert value in result.stderr, result.stderr


def test_istiod_renders_an_injected_pod_again_where_pilotpy_leaves_it(
        istio_files: Path) -> None:
    """Why pilotpy leaves a pod carrying sidecar.istio.io/status as it is: istiod's second
    injection drops what the pod's own istio-proxy set (here resources and runAsUser)."""
    case = next(c for c in CASES if c.name == "user-proxy-container")
    once = injected_by_istioctl(kube_inject(istio_files, case, case.pod))
    twice = injected_by_istioctl(kube_inject(istio_files, case, once))
    proxy = next(c for c in twice["spec"]["containers"] if c["name"] == "istio-proxy")
    assert proxy["securityContext"]["runAsUser"] == 1337  # 1500 before
    ours = inject(case.pod, case.config(), native=False).pod
    again = inject(ours, case.config(), native=False)
    assert not again.injected and again.pod == ours
    kept = next(c for c in ours["spec"]["containers"] if c["name"] == "istio-proxy")
    assert kept["securityContext"]["runAsUser"] == 1500
