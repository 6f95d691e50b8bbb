"""Problems in the input, and in what pilotpy could make of it, in one shape whoever finds
them (validation, translation, analysis): the object (kind, namespace, name), the field, a
reason from a closed set, a message and a severity.

A `ProblemLog` keeps them per origin (a file, a Kubernetes kind, a proxy class, the
analysis), so each is logged once when it appears, counted, and listed while it lasts
(`/debug/problems`); `pilotpy translate` and `pilotpy analyze` print them in the same
one-line form. This module imports nothing else of pilotpy: every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class ObjectRef(NamedTuple):
    """An object by kind (`VirtualService`, `Service`, ...), namespace and name; also the
    store's key."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else (
            f"{self.kind} {self.name}"
        )


class Severity(StrEnum):
    ERROR = "Error"  # the object, or the part of it named, is not served
    WARNING = "Warning"  # served, but not all as written


class Reason(StrEnum):
    """Why. A closed set, so tools can filter on it."""

    INVALID = "Invalid"  # fails validation: the object is skipped (its last valid version kept)
    UNKNOWN_FIELD = "UnknownField"  # a field no parser reads (a typo, or a newer Istio's)
    UNSUPPORTED = "Unsupported"  # a valid Istio field pilotpy does not translate yet
    DEPRECATED = "Deprecated"  # a field Istio deprecated; its replacement is named
    IGNORED = "Ignored"  # a field that has no effect where it is written
    NOT_ENFORCED = "NotEnforced"  # a kind pilotpy reads but does not enforce
    UNREADABLE = "Unreadable"  # a file, document, path or API version pilotpy cannot read
    DUPLICATE = "Duplicate"  # the same object defined twice
    CONFLICT = "Conflict"  # two objects claim the same host, port, address or filter chain
    NOT_FOUND = "NotFound"  # a reference to something that does not exist
    NOT_SERVED = "NotServed"  # valid config a proxy cannot be given (a reserved port, ...)


@dataclass(frozen=True, slots=True)
class Problem:
    reason: Reason
    message: str
    ref: ObjectRef | None = None  # the object that caused it
    field: str = ""  # where in the object, e.g. `spec.http[0].route[1].weight`
    severity: Severity = Severity.WARNING
    source: str = ""  # where the object was read: a file, `kube`
    code: str = ""  # istioctl analyze's code (IST0101) for its checks
    hint: str = ""  # how to fix it

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        """`Error [IST0101] (VirtualService default/reviews vs.yaml) spec.gateways[0]: ...`,
        istioctl analyze's form; the reason stands in for a code pilotpy's own problems
        do not have."""
        where = " ".join(str(p) for p in (self.ref, self.source) if p)
        text = f"{self.severity} [{self.code or self.reason}]"
        if where:
            text += f" ({where})"
        if self.field:
            text += f" {self.field}"
        text += f": {self.message}"
        return f"{text} Fix: {self.hint}" if self.hint else text

    def to_json(self) -> dict[str, Any]:
        ref = self.ref
        return {"severity": str(self.severity), "reason": str(self.reason), "code": self.code,
                "kind": ref.kind if ref else "", "namespace": ref.namespace if ref else "",
                "name": ref.name if ref else "", "field": self.field, "message": self.message,
                "source": self.source, "hint": self.hint}

    def concerns(self, kind: str = "", namespace: str = "", name: str = "") -> bool:
        """Whether the problem is about an object matching every filter given."""
        ref = self.ref
        if ref is None:
            return not (kind or namespace or name)
        return ((not kind or ref.kind == kind) and (not namespace or ref.namespace == namespace)
                and (not name or ref.name == name))


class ProblemLog:
    """The problems of each origin, replaced as a whole whenever that origin is looked at
    again: a fixed object's problems disappear with it. `report` is called once for each
    problem when it appears (the server logs it)."""

    def __init__(self, report: Callable[[Problem], None] | None = None) -> None:
        self._by_origin: dict[str, tuple[Problem, ...]] = {}
        # How many origins hold each problem: one several proxy classes find (a
        # VirtualService feature proxyless gRPC lacks) is reported once while any holds it.
        self._holders: dict[Problem, int] = {}
        self._report = report
        self.rejected_total = 0  # invalid objects seen (istiod's pilot_total_rejected_configs)

    def set(self, origin: str, problems: Iterable[Problem]) -> None:
        """Replace the problems of `origin`; report the ones no origin held."""
        new = tuple(dict.fromkeys(problems))
        old = set(self._by_origin.get(origin, ()))
        fresh = [p for p in new if p not in old]
        self.rejected_total += len(_rejected(new) - _rejected(old))
        self._release(old - set(new))
        for problem in fresh:
            held = self._holders.get(problem, 0)
            self._holders[problem] = held + 1
            if not held and self._report is not None:
                self._report(problem)
        if new:
            self._by_origin[origin] = new
        else:
            self._by_origin.pop(origin, None)

    def clear(self, origin: str) -> None:
        self._release(self._by_origin.pop(origin, ()))

    def _release(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            held = self._holders.get(problem, 0) - 1
            if held > 0:
                self._holders[problem] = held
            else:
                self._holders.pop(problem, None)

    def problems(self) -> list[Problem]:
        """Every current problem once, in origin order."""
        return list(dict.fromkeys(p for origin in sorted(self._by_origin)
                                  for p in self._by_origin[origin]))

    def errors(self) -> list[Problem]:
        return [p for p in self.problems() if p.is_error]


def _rejected(problems: Iterable[Problem]) -> set[ObjectRef | None]:
    return {p.ref for p in problems if p.is_error and p.reason is Reason.INVALID}
