"""Injection goldens: each case's pod through pilotpy's injector, the JSON patch (and
whether it was injected, and the warnings) against `expected.json`; refusals against the
reason the case states; and an injected pod is left as it is."""

from __future__ import annotations

import json
import os

import pytest

from pilotpy.inject.injector import InjectionRefused, inject
from tests.golden.injection_cases import InjectionCase, injection_cases

CASES = injection_cases()
UPDATE = os.environ.get("PILOTPY_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_injection_golden(case: InjectionCase) -> None:
    if case.refused:
        with pytest.raises(InjectionRefused) as refused:
            inject(case.pod, case.config(), native=case.native)
        assert case.refused in str(refused.value)
        assert not case.expected_file.exists()
        return
    result = inject(case.pod, case.config(), native=case.native)
    text = json.dumps({"injected": result.injected, "warnings": result.warnings,
                       "patch": result.patch}, indent=2) + "\n"
    if UPDATE or not case.expected_file.exists():
        case.expected_file.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{case.expected_file} was missing and has been written: review it")
    assert text == case.expected_file.read_text(encoding="utf-8"), \
        f"{case.name}: the patch changed (make golden rewrites it; review the diff)"


@pytest.mark.parametrize("case", [c for c in CASES if not c.refused], ids=lambda c: c.name)
def test_an_injected_pod_is_left_as_it_is(case: InjectionCase) -> None:
    """Injection is idempotent: a pod with sidecar.istio.io/status is not injected again (its
    own istio-proxy fields kept, where istiod's re-rendering drops them: see
    test_injection_istioctl.py)."""
    first = inject(case.pod, case.config(), native=case.native)
    again = inject(first.pod, case.config(), native=case.native)
    assert (again.injected, again.patch, again.pod) == (False, [], first.pod)


def test_the_cases_cover_the_issues_table() -> None:
    names = {c.name for c in CASES}
    assert {"plain", "opt-out", "gateway", "custom-image", "probes", "annotations",
            "native"} <= names
