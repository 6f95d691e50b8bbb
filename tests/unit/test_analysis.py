"""`pilotpy analyze`: each of istioctl's codes pilotpy checks is found in its fixture (the
clean config plus the code's directory of one broken file), naming the object and the field;
clean config passes; only errors fail the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pilotpy.analysis.checks import _bindings
from pilotpy.cli.analyze import analyze_paths
from pilotpy.cli.main import main
from pilotpy.mesh import MeshConfig
from pilotpy.model import parse_object
from pilotpy.model.errors import InvalidObject
from pilotpy.model.virtualservice import VirtualService
from pilotpy.push.config import resolve_virtual_service

FIXTURES = Path(__file__).parent / "analysis"
CLEAN = FIXTURES / "clean"


def paths(code: str) -> list[Path]:
    return [CLEAN, FIXTURES / code]


def args(code: str) -> list[str]:
    return [str(p) for p in paths(code)]

EXPECTED = {
    "IST0101": ("Error", {
        ("VirtualService default/broken-refs", "spec.gateways[0]"),
        ("VirtualService default/broken-refs", "spec.http[0].route[0].destination.host"),
        ("VirtualService default/broken-refs", "spec.http[1].route[0].destination.subset"),
    }),
    "IST0106": ("Error", {("VirtualService default/bad-weight", "spec.http[0].route[0].weight")}),
    "IST0109": ("Error", {("VirtualService default/reviews-mesh", "spec.hosts[0]"),
                          ("VirtualService default/reviews-mesh-2", "spec.hosts[0]")}),
    "IST0132": ("Warning", {("VirtualService default/wrong-host", "spec.hosts")}),
    "IST0145": ("Error", {("Gateway default/public", "spec.servers[0]"),
                          ("Gateway default/public-copy", "spec.servers[0]")}),
}


def test_clean_config_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert analyze_paths([CLEAN]) == []
    assert main(["analyze", str(CLEAN)]) == 0
    assert "No validation issues found" in capsys.readouterr().out


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_each_code_is_found_with_object_and_field(code: str) -> None:
    level, where = EXPECTED[code]
    messages = analyze_paths(paths(code))
    assert {m.code for m in messages} == {code}, [str(m) for m in messages]
    assert {str(m.severity) for m in messages} == {level}
    assert {(str(m.ref), m.field) for m in messages} == where
    assert all(m.hint for m in messages)


def test_istioctls_message_texts() -> None:
    texts = {m.message for m in analyze_paths(paths("IST0101"))}
    assert 'Referenced gateway not found: "default/nonexistent"' in texts
    assert 'Referenced host not found: "ratings"' in texts
    (warning,) = analyze_paths(paths("IST0132"))
    assert warning.message == ("one or more host [ratings.example.com] defined in "
                               "VirtualService default/wrong-host not found in Gateway "
                               "default/public.")


def test_exit_code_is_nonzero_on_errors_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", *args("IST0132")]) == 0  # a warning
    assert "Warning [IST0132]" in capsys.readouterr().out
    assert main(["analyze", *args("IST0145")]) == 1
    assert "Error [IST0145] (Gateway default/public)" in capsys.readouterr().out


def test_json_output_for_ci(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--output", "json", *args("IST0106")]) == 1
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["code"] == "IST0106"
    assert entry["name"] == "SchemaValidationError"
    assert entry["level"] == "Error"
    assert entry["origin"] == "VirtualService default/bad-weight"
    assert entry["field"] == "spec.http[0].route[0].weight"
    assert entry["reference"].endswith("IST0106/broken.yaml")
    assert "ist0106" in entry["documentationUrl"]


# -- istioctl's own analyzer cases -----------------------------------------------------------
# Each of istioctl's own analyzer test cases for IST0109 and IST0145, named as there, with
# the (code, resource) set it expects. The fixtures reproduce its
# scenario; objects with no namespace there are in `default` here. A case expecting nothing
# here expects nothing from the whole `analyze`, not only from the one analyzer.

ISTIO = FIXTURES / "istio"
IST0106, IST0109, IST0145 = "IST0106", "IST0109", "IST0145"
ISTIO_CASES = {
    "virtualServiceConflictingMeshGatewayHosts": ("mesh-hosts", {
        (IST0109, "VirtualService team3/ratings"),
        (IST0109, "VirtualService team4/ratings"),
        (IST0109, "VirtualService foo/ratings"),
        (IST0109, "VirtualService bar/ratings"),
        (IST0109, "VirtualService foo/productpage"),
        (IST0109, "VirtualService foo/bogus-productpage"),
        (IST0109, "VirtualService team2/ratings"),
    }),
    "virtualServiceConflictingMeshGatewayHostsWithExportTo": ("mesh-hosts-export-to", {
        (IST0109, "VirtualService foo/productpage"),
        (IST0109, "VirtualService bar/productpage"),
        (IST0109, "VirtualService foo/productpage-c"),
        (IST0109, "VirtualService bar/productpage-c"),
        (IST0109, "VirtualService foo/productpage-d"),
        (IST0109, "VirtualService bar/productpage-d"),
    }),
    "conflicting gateways detect": ("gateways-same-port", {
        (IST0145, "Gateway default/alpha"), (IST0145, "Gateway default/beta")}),
    "gateways with different port are non-conflicting": ("gateways-different-port", set()),
    "conflicting gateways with multiple port declarations": ("gateways-multiple-ports", {
        (IST0145, "Gateway default/alpha"), (IST0145, "Gateway default/beta")}),
    "conflicting gateways detect by sub selector": ("gateways-sub-selector", {
        (IST0145, "Gateway default/alpha"), (IST0145, "Gateway default/beta")}),
    # istioctl's analyzer alone expects nothing; the whole istioctl analyze also reports the
    # schema error of each Gateway (a server needs a port), as pilotpy does.
    "conflicting gateways detect: no port": ("gateways-no-port", {
        (IST0106, "Gateway default/alpha"), (IST0106, "Gateway default/beta")}),
    "Analyze conflicting gateway with list type": ("gateways-list-type", {
        (IST0145, "Gateway default/alpha"), (IST0145, "Gateway default/alpha-l"),
        (IST0145, "Gateway default/beta-l")}),
}


@pytest.mark.parametrize("case", list(ISTIO_CASES))
def test_istioctl_analyzer_case(case: str) -> None:
    directory, expected = ISTIO_CASES[case]
    messages = analyze_paths([ISTIO / directory])
    assert {(m.code, str(m.ref)) for m in messages} == expected, [str(m) for m in messages]


def test_istioctls_conflict_texts() -> None:
    found = {str(m.ref): m for m in analyze_paths([ISTIO / "mesh-hosts"])}
    team2 = found["VirtualService team2/ratings"]
    # istioctl writes the host with the namespace it is exported to ("*": everywhere).
    assert team2.message == (
        "The VirtualServices bar/ratings,team2/ratings associated with mesh gateway define the "
        "same host team2/google.com which can lead to undefined behavior. This can be fixed by "
        "merging the conflicting VirtualServices into a single resource.")
    assert team2.field == "spec.hosts[1]"
    (alpha, _) = analyze_paths([ISTIO / "gateways-sub-selector"])
    assert str(alpha.ref) == "Gateway default/alpha"
    assert alpha.field == "spec.servers[0]"
    assert alpha.message == ("Conflict with gateways default/beta (workload selector "
                             "cusKey=cusValue,istio=ingressgateway, port 80, hosts foo.bar).")


GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {selector}
  servers:
  - {{port: {{number: 443, name: https, protocol: HTTPS}}, hosts: {hosts}, bind: {bind},
     tls: {{mode: PASSTHROUGH}}}}
---
"""
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: ingressgateway, namespace: istio-system, labels: {istio: ingressgateway}}
spec: {containers: [{name: istio-proxy}]}
"""


@pytest.mark.parametrize(("other", "conflict"), [
    ({"hosts": "[foo.bar, x.bar]"}, True),
    # istiod merges servers by host string: a wildcard beside a name it covers is no duplicate
    ({"hosts": '["*.bar"]'}, False),
    ({"bind": "10.0.0.2"}, False),
    # different selectors meet only on a Pod that both select (the Pod here has alpha's only)
    ({"selector": "{istio: ingressgateway, app: other}"}, False),
], ids=["shared-host", "wildcard-overlap", "other-bind", "selectors-without-common-pod"])
def test_what_makes_gateways_conflict(tmp_path: Path, other: dict[str, str],
                                      conflict: bool) -> None:
    base = {"selector": "{istio: ingressgateway}", "hosts": "[foo.bar]", "bind": "10.0.0.1"}
    (tmp_path / "gateways.yaml").write_text(
        GATEWAY.format(name="alpha", **base) + GATEWAY.format(name="beta", **base | other)
        + POD)
    found = {(m.code, str(m.ref)) for m in analyze_paths([tmp_path])}
    assert found == ({("IST0145", "Gateway default/alpha"), ("IST0145", "Gateway default/beta")}
                     if conflict else set())


def test_bindings_resolve_hosts_and_gateways_as_the_push_context_does() -> None:
    # The checks resolve only a VirtualService's hosts and gateways (checks._bindings); they
    # must agree with resolve_virtual_service on every VirtualService of the fixtures and
    # golden inputs.
    mesh = MeshConfig()
    roots = [FIXTURES, Path(__file__).parents[1] / "golden" / "testdata"]
    checked = 0
    for path in sorted(p for root in roots for p in root.rglob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            continue  # fixtures of unreadable input
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "VirtualService":
                continue
            try:
                parsed = parse_object(doc).obj
            except InvalidObject:
                continue
            assert isinstance(parsed, VirtualService)
            resolved = resolve_virtual_service(parsed, mesh.domain_suffix)
            assert _bindings(parsed, mesh) == (sorted(set(resolved.hosts)),
                                               sorted(set(resolved.gateways))), path
            checked += 1
    assert checked >= 100
