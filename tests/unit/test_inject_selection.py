"""Which pods get a proxy: istiod's injectRequired, rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from pilotpy.inject.pods import Workload, injection_required, workload
from pilotpy.inject.policy import InjectionPolicy, parse_policy


def pod(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app"}], **spec}}


ENABLED = InjectionPolicy()
DISABLED = InjectionPolicy(policy="disabled")


def test_host_network_pods_are_never_injected() -> None:
    decision = injection_required(pod({"sidecar.istio.io/inject": "true"}, hostNetwork=True),
                                  ENABLED)
    assert not decision.inject and "host's network" in decision.reason


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease",
                                       "local-path-storage"])
def test_system_namespaces_are_never_injected(namespace: str) -> None:
    assert not injection_required(pod({"sidecar.istio.io/inject": "true"},
                                      namespace=namespace), ENABLED).inject


def test_the_pods_label_wins_over_its_annotation() -> None:
    assert not injection_required(pod({"sidecar.istio.io/inject": "false"},
                                      {"sidecar.istio.io/inject": "true"}), ENABLED).inject
    assert injection_required(pod({"sidecar.istio.io/inject": "true"},
                                  {"sidecar.istio.io/inject": "false"}), DISABLED).inject


def test_the_annotation_decides_without_a_label() -> None:
    assert not injection_required(pod(annotations={"sidecar.istio.io/inject": "false"}),
                                  ENABLED).inject
    assert injection_required(pod(annotations={"sidecar.istio.io/inject": "true"}),
                              DISABLED).inject


def test_an_invalid_value_warns_and_the_policy_applies() -> None:
    decision = injection_required(pod({"sidecar.istio.io/inject": "yes"}), DISABLED)
    assert not decision.inject
    assert "invalid value 'yes'" in decision.warning and "sidecar.istio.io/inject" in \
        decision.warning


def test_never_then_always_inject_selectors_when_the_pod_says_nothing() -> None:
    policy = parse_policy("""
policy: disabled
neverInjectSelector: [{matchExpressions: [{key: openshift.io/build.name, operator: Exists}]}]
alwaysInjectSelector: [{matchLabels: {mesh: "yes"}}, {}]
""")
    assert injection_required(pod({"mesh": "yes"}), policy).inject
    assert not injection_required(pod({"mesh": "yes", "openshift.io/build.name": "b"}),
                                  policy).inject
    assert not injection_required(pod({"mesh": "no"}), policy).inject
    # The pod's own word still wins over the selectors.
    assert injection_required(pod({"openshift.io/build.name": "b",
                                   "sidecar.istio.io/inject": "true"}), policy).inject


def test_a_pod_injected_before_is_left_as_it_is() -> None:
    injected = pod(annotations={"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'})
    decision = injection_required(injected, ENABLED)
    assert not decision.inject and "injected already" in decision.reason
    # An unreadable status is no injection.
    assert injection_required(pod(annotations={"sidecar.istio.io/status": "{"}),
                              ENABLED).inject


def test_a_replicasets_pod_belongs_to_its_deployment() -> None:
    owned = {"metadata": {"generateName": "web-6b9f-", "namespace": "shop",
                          "labels": {"pod-template-hash": "6b9f"},
                          "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                               "name": "web-6b9f", "controller": True}]}}
    assert workload(owned) == Workload("web", "shop", "Deployment", "apps/v1")


def test_a_jobs_pod_belongs_to_its_cronjob() -> None:
    owned = {"metadata": {"generateName": "nightly-28900000-", "namespace": "ops",
                          "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                               "name": "nightly-28900000",
                                               "controller": True}]}}
    assert workload(owned) == Workload("nightly", "ops", "CronJob", "batch/v1")


def test_a_bare_pod_is_its_own_workload() -> None:
    assert workload(pod()) == Workload("p", "default", "Pod", "v1")
