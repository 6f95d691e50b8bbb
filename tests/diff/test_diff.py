"""Every case through istiod and pilotpy: no difference but the accepted ones
(tests/diff/accepted.yaml), and no accepted difference that no longer occurs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.diff import accepted
from tests.diff.cases import Case, golden_cases, walkthrough_cases
from tests.diff.harness import SideBySide
from tests.diff.report import Report
from tests.diff.rules import RULES

CASES = golden_cases() + walkthrough_cases()
ENTRIES = accepted.load()


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    yield Report()


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_case(side_by_side: SideBySide, report: Report, case: Case) -> None:
    result = await side_by_side.run(case)
    explained = []
    for difference in result.differences:
        theirs, ours = result.resources[difference.proxy]
        type_url = next(t for t in theirs.keys() | ours.keys()
                        if t.endswith(_TYPE_SUFFIX[difference.type]))
        entry = accepted.explain(ENTRIES, RULES, difference,
                                 theirs.get(type_url, {}).get(difference.resource),
                                 ours.get(type_url, {}).get(difference.resource))
        explained.append((difference, entry))
    report.add(result, explained)
    unexplained = [d.describe() for d, e in explained if e is None]
    assert not unexplained, (
        f"{len(unexplained)} differences from istiod that tests/diff/accepted.yaml does not "
        f"explain (report: {report.directory / 'report.txt'}):\n" + "\n".join(unexplained))


_TYPE_SUFFIX = {"cds": ".Cluster", "eds": ".ClusterLoadAssignment", "lds": ".Listener",
                "rds": ".RouteConfiguration"}
