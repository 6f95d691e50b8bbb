"""Golden tests: config in `testdata/<case>/input/`, the expected translation in one file per
part (`expected.problems.json`, `expected.listeners.json`, `expected.routes.json`,
`expected.clusters.json`, `expected.endpoints.json`), so a change shows which resource type
moved.

`make golden` (PILOTPY_UPDATE_GOLDEN=1) rewrites the expected files; review the diff.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pilotpy.cli.translate import translate
from tests.golden.cases import PROBLEMS, Case, all_cases

CASES = all_cases()
UPDATE = os.environ.get("PILOTPY_UPDATE_GOLDEN") == "1"
# Small cases named after the one feature they show; the rest are walkthrough-sized.
WALKTHROUGH_CASES = frozenset({
    "app-namespace", "destination-rule-policies", "destination-rule-tls", "endpoint-slices",
    "gateway-tcp-tls", "http-routes", "ingress", "invalid-objects", "merged-servers",
    "no-gateway", "observability", "service-entries", "sidecar-edge-cases",
    "sidecar-egress-scope", "sidecar-registry-only", "sidecar-tls-routes", "sidecar-w2",
    "w1-gateway-only", "w1-hosts-do-not-intersect", "w1-httpbin", "w3-bookinfo-gateway",
    "w3-bookinfo-productpage", "wildcard-hosts",
})


def render(case: Case) -> dict[str, list[Any]]:
    """Every part of the case's translation, as `pilotpy translate` prints it."""
    output, problems = translate([case.path / "input"], node_id=case.node_id,
                                 labels=case.labels, mesh_config=case.mesh_config,
                                 generator=case.generator, agent=case.agent,
                                 verified_identity=case.verified_identity)
    prefix = f"{case.path / 'input'}/"
    return {PROBLEMS: [str(p).replace(prefix, "") for p in problems], **output}


def text_of(value: list[Any]) -> str:
    return json.dumps(value, indent=2) + "\n"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden(case: Case) -> None:
    actual = render(case)
    assert set(actual) == set(case.parts)
    # A case may state istiod's behaviour before pilotpy has it: `knownBug` in case.yaml says
    # what is wrong; the case fails as expected until the fix, then asks for the note to go.
    known_bug = str(case.spec.get("knownBug", "")).strip()
    changed, written = [], []
    for part in case.parts:
        expected_file = case.expected_file(part)
        text = text_of(actual[part])
        if (UPDATE and not known_bug) or not expected_file.exists():
            expected_file.write_text(text, encoding="utf-8")
            written.append(expected_file.name)
        elif text != expected_file.read_text(encoding="utf-8"):
            changed.append(expected_file.name)
    if written and not UPDATE:
        pytest.fail(f"{case.name}: {written} did not exist; written, review them")
    if known_bug:
        if not changed:
            pytest.fail(f"{case.name} now translates as expected: remove its knownBug note")
        pytest.xfail(f"known bug ({', '.join(changed)}): {known_bug}")
    assert not changed, (f"translation of {case.name} changed in {changed}; if intended, run "
                         "`make golden` and review the diff")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_has_only_the_known_files(case: Case) -> None:
    """No stale expected file (e.g. the old single `expected.json`) lingers next to the parts."""
    expected = {case.expected_file(p).name for p in case.parts}
    present = {p.name for p in case.path.glob("expected*")}
    assert present == expected, f"unexpected: {sorted(present - expected)}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_says_what_it_shows(case: Case) -> None:
    assert str(case.spec.get("description", "")).strip(), "case.yaml needs a description"


def test_there_are_cases() -> None:
    assert len(CASES) >= 8



def test_small_feature_cases_besides_the_walkthroughs() -> None:
    """Each behaviour gets a small case of its own, named after it (issue 13); the proxyless
    gRPC generator's cases are counted apart."""
    names = {c.name for c in CASES}
    assert names >= WALKTHROUGH_CASES
    assert len({c.name for c in CASES if c.is_envoy} - WALKTHROUGH_CASES) >= 40
