"""Problems: one shape for validation, translation and analysis; the log keeps them per
origin, replaced as a whole, reported once when they appear."""

from __future__ import annotations

from pilotpy.problems import ObjectRef, Problem, ProblemLog, Reason, Severity

REVIEWS = ObjectRef("VirtualService", "default", "reviews")


def error(message: str, ref: ObjectRef = REVIEWS) -> Problem:
    return Problem(Reason.INVALID, message, ref, "spec.http[0]", Severity.ERROR, "a.yaml")


def test_one_line_names_severity_reason_object_source_and_field() -> None:
    assert str(error("bad")) == ("Error [Invalid] (VirtualService default/reviews a.yaml) "
                                 "spec.http[0]: bad")
    analysis = Problem(Reason.NOT_FOUND, 'Referenced host not found: "x"', REVIEWS,
                       "spec.http[0].route[0].destination.host", Severity.ERROR,
                       code="IST0101", hint="create a Service")
    assert str(analysis) == ('Error [IST0101] (VirtualService default/reviews) '
                             'spec.http[0].route[0].destination.host: Referenced host not '
                             'found: "x" Fix: create a Service')
    assert str(Problem(Reason.UNREADABLE, "cannot read", source="b.yaml")) == (
        "Warning [Unreadable] (b.yaml): cannot read")


def test_json_carries_every_field() -> None:
    assert error("bad").to_json() == {
        "severity": "Error", "reason": "Invalid", "code": "", "kind": "VirtualService",
        "namespace": "default", "name": "reviews", "field": "spec.http[0]", "message": "bad",
        "source": "a.yaml", "hint": ""}


def test_filters_by_object() -> None:
    problem = error("bad")
    assert problem.concerns() and problem.concerns(kind="VirtualService")
    assert problem.concerns("VirtualService", "default", "reviews")
    assert not problem.concerns(name="ratings") and not problem.concerns(namespace="other")
    assert not Problem(Reason.UNREADABLE, "x").concerns(kind="VirtualService")


def test_set_replaces_the_problems_of_an_origin() -> None:
    log = ProblemLog()
    log.set("a.yaml", [error("one"), error("two")])
    log.set("a.yaml", [error("three")])
    assert [p.message for p in log.problems()] == ["three"]


def test_an_empty_set_clears_the_origin() -> None:
    log = ProblemLog()
    log.set("a.yaml", [error("one")])
    log.set("a.yaml", [])
    assert log.problems() == []


def test_problems_are_listed_by_origin_and_once() -> None:
    log = ProblemLog()
    log.set("b.yaml", [error("b")])
    log.set("a.yaml", [error("a"), error("a")])
    log.set("c", [error("b")])  # the same problem from two origins (two proxy classes)
    log.clear("missing.yaml")
    assert [p.message for p in log.problems()] == ["a", "b"]
    log.clear("a.yaml")
    assert [p.message for p in log.problems()] == ["b"]


def test_warnings_are_not_errors() -> None:
    log = ProblemLog()
    warning = Problem(Reason.UNKNOWN_FIELD, "unknown field, ignored", REVIEWS, "spec.tpye")
    log.set("a.yaml", [warning, error("bad")])
    assert [p.message for p in log.errors()] == ["bad"]
    assert log.rejected_total == 1


def test_a_problem_is_reported_once_while_it_lasts_and_objects_counted_once() -> None:
    reported: list[str] = []
    log = ProblemLog(report=lambda p: reported.append(p.message))
    log.set("a.yaml", [error("bad")])
    log.set("a.yaml", [error("bad")])  # rescanned, still broken
    log.set("a.yaml", [error("bad"), error("worse")])  # the same object, one more field
    log.set("a.yaml", [error("bad"), error("other", ObjectRef("Service", "default", "a"))])
    assert reported == ["bad", "worse", "other"]
    assert log.rejected_total == 2  # VirtualService default/reviews, Service default/a


def test_a_problem_two_proxy_classes_find_is_reported_once_while_either_holds_it() -> None:
    reported: list[str] = []
    log = ProblemLog(report=lambda p: reported.append(p.message))
    log.set("translate grpc class-a", [error("no CORS for gRPC")])
    log.set("translate grpc class-b", [error("no CORS for gRPC")])
    log.clear("translate grpc class-a")
    log.set("translate grpc class-c", [error("no CORS for gRPC")])
    assert reported == ["no CORS for gRPC"]
    log.clear("translate grpc class-b")
    log.clear("translate grpc class-c")
    log.set("translate grpc class-a", [error("no CORS for gRPC")])  # back after a fix undone
    assert reported == ["no CORS for gRPC", "no CORS for gRPC"]


def test_a_problem_that_comes_back_is_counted_again() -> None:
    log = ProblemLog()
    log.set("a.yaml", [error("bad")])
    log.set("a.yaml", [])
    log.set("a.yaml", [error("bad")])
    assert log.rejected_total == 2
