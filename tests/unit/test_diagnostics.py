"""Diagnostics: problems per origin, replaced as a whole, counted once when they appear."""

from __future__ import annotations

import logging

import pytest

from pilotpy.problems import Diagnostics, Problem


def error(origin: str, message: str) -> Problem:
    return Problem(origin, "VirtualService default/reviews", message)


def test_set_replaces_the_problems_of_an_origin() -> None:
    diagnostics = Diagnostics()
    diagnostics.set("a.yaml", [error("a.yaml", "one"), error("a.yaml", "two")])
    diagnostics.set("a.yaml", [error("a.yaml", "three")])
    assert [p.message for p in diagnostics.problems()] == ["three"]


def test_an_empty_set_clears_the_origin() -> None:
    diagnostics = Diagnostics()
    diagnostics.set("a.yaml", [error("a.yaml", "one")])
    diagnostics.set("a.yaml", [])
    assert diagnostics.problems() == []


def test_problems_are_listed_by_origin() -> None:
    diagnostics = Diagnostics()
    diagnostics.set("b.yaml", [error("b.yaml", "b")])
    diagnostics.set("a.yaml", [error("a.yaml", "a")])
    diagnostics.clear("missing.yaml")
    assert [p.origin for p in diagnostics.problems()] == ["a.yaml", "b.yaml"]
    diagnostics.clear("a.yaml")
    assert [p.origin for p in diagnostics.problems()] == ["b.yaml"]


def test_warnings_are_not_errors() -> None:
    diagnostics = Diagnostics()
    warning = Problem("a.yaml", "Service default/a", "spec.tpye: unknown field", error=False)
    diagnostics.set("a.yaml", [warning, error("a.yaml", "bad")])
    assert [p.message for p in diagnostics.errors()] == ["bad"]
    assert diagnostics.rejected_total == 1


def test_a_problem_is_counted_and_logged_once_while_it_lasts(
        caplog: pytest.LogCaptureFixture) -> None:
    diagnostics = Diagnostics()
    with caplog.at_level(logging.WARNING, logger="pilotpy.config"):
        diagnostics.set("a.yaml", [error("a.yaml", "bad")])
        diagnostics.set("a.yaml", [error("a.yaml", "bad")])  # rescanned, still broken
        diagnostics.set("a.yaml", [error("a.yaml", "bad"), error("a.yaml", "worse")])
    assert diagnostics.rejected_total == 2
    assert [r.getMessage() for r in caplog.records] == [
        "a.yaml: VirtualService default/reviews: bad",
        "a.yaml: VirtualService default/reviews: worse",
    ]


def test_a_problem_that_comes_back_is_counted_again() -> None:
    diagnostics = Diagnostics()
    diagnostics.set("a.yaml", [error("a.yaml", "bad")])
    diagnostics.set("a.yaml", [])
    diagnostics.set("a.yaml", [error("a.yaml", "bad")])
    assert diagnostics.rejected_total == 2
