"""`pilotpy analyze`: each of istioctl's codes pilotpy checks is found in its fixture (the
clean config plus the code's directory of one broken file), naming the object and the field;
clean config passes; only errors fail the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotpy.analyze_cli import analyze_paths
from pilotpy.cli import main

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
    assert {m.level for m in messages} == {level}
    assert {(m.resource, m.field) for m in messages} == where
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
IST0109 = "IST0109"
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
}


@pytest.mark.parametrize("case", list(ISTIO_CASES))
def test_istioctl_analyzer_case(case: str) -> None:
    directory, expected = ISTIO_CASES[case]
    messages = analyze_paths([ISTIO / directory])
    assert {(m.code, m.resource) for m in messages} == expected, [str(m) for m in messages]


def test_istioctls_conflict_texts() -> None:
    found = {m.resource: m for m in analyze_paths([ISTIO / "mesh-hosts"])}
    team2 = found["VirtualService team2/ratings"]
    # istioctl writes the host with the namespace it is exported to ("*": everywhere).
    assert team2.message == (
        "The VirtualServices bar/ratings,team2/ratings associated with mesh gateway define the "
        "same host team2/google.com which can lead to undefined behavior. This can be fixed by "
        "merging the conflicting VirtualServices into a single resource.")
    assert team2.field == "spec.hosts[1]"
