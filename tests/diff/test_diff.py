"""Every case through istiod and pilotpy: no difference but the accepted ones
(tests/diff/accepted.yaml), and no accepted difference that no longer occurs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.diff import accepted
from tests.diff.cases import Case, all_cases
from tests.diff.harness import SideBySide
from tests.diff.planes import istio_source
from tests.diff.report import Report
from tests.diff.rules import RULES

CASES = all_cases(istio_source())
ENTRIES = accepted.load()


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    yield Report()


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_case(side_by_side: SideBySide, report: Report, case: Case) -> None:
    result = await side_by_side.run(case)
    explained = [(d, accepted.explain(ENTRIES, RULES, d, *result.trees(d)))
                 for d in result.differences]
    report.add(result, explained)
    assert case.may_be_refused or not result.refused, (
        f"the API server refused objects of {case}: {result.refused}")
    unexplained = [d.describe() for d, entry in explained if entry is None]
    assert not unexplained, (
        f"{len(unexplained)} differences from istiod that tests/diff/accepted.yaml does not "
        f"explain (report: {report.directory / 'report.txt'}):\n" + "\n".join(unexplained))


def test_every_accepted_difference_still_occurs(report: Report) -> None:
    """Runs last: an entry whose patterns matched nothing in a full run is stale."""
    if len(report.cases) != len(CASES):
        pytest.fail(f"only {len(report.cases)} of {len(CASES)} cases ran; run the whole tier "
                    "to check for stale entries")
    stale = [e.id for e in ENTRIES if e.matches_resources and e.used == 0]
    assert not stale, f"accepted differences that no case shows any more: {stale}"
