"""The injector's settings (istio-sidecar-injector's `config` and `values`), the native
sidecar decision, the webhook configuration's caBundle."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pilotpy.controllers.webhookca import patched
from pilotpy.inject.policy import PolicyError, parse_policy
from pilotpy.inject.proxyconfig import effective, proxy_config_json
from pilotpy.inject.values import ValuesError, parse_values
from pilotpy.server.injector_settings import InjectorSettings
from pilotpy.server.native_sidecars import NativeSidecars


def test_values_default_to_the_charts_with_a_released_image() -> None:
    values = parse_values({})
    assert (values.hub, values.proxy.image, values.proxy.status_port,
            values.proxy.include_ip_ranges, values.ca_addr) == (
        "docker.io/istio", "proxyv2", 15020, "*", "istiod.istio-system.svc:15012")
    revised = parse_values({"revision": "canary", "global": {"istioNamespace": "mesh"}})
    assert revised.ca_addr == "istiod-canary.mesh.svc:15012"


@pytest.mark.parametrize(("values", "reason"), [
    ({"global": {"proxy": {"statusPort": "x"}}}, "global.proxy.statusPort"),
    ({"global": {"hub": ["a"]}}, "global.hub"),
    ({"global": {"imagePullSecrets": [{"name": "a"}]}}, "global.imagePullSecrets"),
    ({"global": "x"}, "global"),
    ({"pilot": {"cni": {"enabled": True}}}, "CNI"),
])
def test_bad_values_are_refused_naming_the_value(values: object, reason: str) -> None:
    with pytest.raises(ValuesError, match=reason):
        parse_values(values)


@pytest.mark.parametrize(("config", "reason"), [
    ("policy: maybe", "config.policy"), ("defaultTemplates: sidecar", "defaultTemplates"),
    ("neverInjectSelector: [{matchExpressions: [{key: a, operator: Near}]}]", "operator"),
    ("alwaysInjectSelector: [{matchExpressions: [{key: a, operator: In}]}]", "needs values"),
    ("[x]", "expected a mapping"),
])
def test_bad_policies_are_refused_naming_the_field(config: str, reason: str) -> None:
    with pytest.raises(PolicyError, match=reason):
        parse_policy(config)


def test_bad_settings_keep_the_last_good_ones(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("policy: disabled\n")
    (tmp_path / "values").write_text('{"global": {"tag": "1.28.1"}}')
    settings = InjectorSettings(tmp_path)
    assert (settings.policy.policy, settings.values.tag) == ("disabled", "1.28.1")
    (tmp_path / "values").write_text('{"global": {"tag": ["bad"]}}')
    settings.refresh()
    assert settings.values.tag == "1.28.1" and settings.errors == 1


def test_the_charts_own_templates_are_reported_not_used() -> None:
    policy = parse_policy("templates: {sidecar: x, gateway: y, grpc-agent: z}")
    assert policy.ignored_templates == ("grpc-agent",)


def test_native_sidecars_follow_the_nodes_kubelets() -> None:
    auto = NativeSidecars("auto", watching=True)
    assert auto.decide("") is False  # nothing known yet
    auto.replace([])
    assert auto.decide("") is True  # istiod: no node is below 1.33
    auto.replace([{"metadata": {"name": "old"}, "status": {"nodeInfo": {
        "kubeletVersion": "v1.32.5"}}}, {"metadata": {"name": "new"}, "status": {
        "nodeInfo": {"kubeletVersion": "v1.33.1-kind"}}}])
    assert (auto.decide("new"), auto.decide("old"), auto.decide("")) == (True, False, False)
    assert NativeSidecars("true", watching=False).decide("old") is True
    assert NativeSidecars("auto", watching=False).decide("") is False


def test_the_webhook_configuration_gets_the_mesh_root() -> None:
    bundle = base64.b64encode(b"ROOT").decode()
    configuration = {"metadata": {"name": "istio-sidecar-injector",
                                  "labels": {"istio.io/rev": "default"}},
                     "webhooks": [{"name": "namespace.sidecar-injector.istio.io",
                                   "clientConfig": {"service": {"name": "istiod"}}},
                                  {"name": "other.example.com", "clientConfig": {}}]}
    updated = patched(configuration, bundle, "default")
    assert updated is not None
    assert [w["clientConfig"].get("caBundle") for w in updated["webhooks"]] == [bundle, None]
    assert patched(updated, bundle, "default") is None  # nothing left to change
    assert patched(configuration, bundle, "canary") is None  # another revision's


def test_proxy_config_merges_mesh_then_pod_and_prints_only_what_differs() -> None:
    config = effective({"concurrency": 2, "proxyMetadata": {"A": "1"},
                        "drainDuration": "45.0s"},
                       "proxyMetadata: {B: '2'}\nextraStatTags: [x]\nterminationDrainDuration: 1s")
    assert config["proxyMetadata"] == {"A": "1", "B": "2"}
    assert proxy_config_json(config) == (
        '{"concurrency":2,"proxyMetadata":{"A":"1","B":"2"},"extraStatTags":["x"],'
        '"terminationDrainDuration":"1s"}')
    assert proxy_config_json(effective({}, None)) == "{}"
