"""Golden tests: config in `testdata/<case>/input/`, expected translation in `expected.json`.

`make golden` (PILOTPY_UPDATE_GOLDEN=1) rewrites the expected files; review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.cli.translate import translate

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if (p / "case.yaml").exists())
UPDATE = os.environ.get("PILOTPY_UPDATE_GOLDEN") == "1"


def render(case: Path) -> dict[str, Any]:
    spec = yaml.safe_load((case / "case.yaml").read_text(encoding="utf-8"))
    mesh = case / spec["meshConfig"] if spec.get("meshConfig") else None
    output, problems = translate([case / "input"], node_id=spec["nodeId"],
                                 labels=spec.get("labels", {}), mesh_config=mesh,
                                 generator=spec.get("generator", ""))
    prefix = f"{case / 'input'}/"
    return {"problems": [str(p).replace(prefix, "") for p in problems], **output}


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    actual = render(case)
    expected_file = case / "expected.json"
    text = json.dumps(actual, indent=2) + "\n"
    if UPDATE or not expected_file.exists():
        expected_file.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{expected_file} did not exist; written, review it")
    assert text == expected_file.read_text(encoding="utf-8"), (
        f"translation of {case.name} changed; if intended, run `make golden` and review")


def test_there_are_cases() -> None:
    assert len(CASES) >= 8
