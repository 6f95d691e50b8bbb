"""Validation results that name the object and the field, like `kubectl apply` does."""

from __future__ import annotations

from dataclasses import dataclass

from pilotpy.problems import ObjectRef, Problem, Reason, Severity

__all__ = ["InvalidObject", "Issue", "ObjectRef", "UnknownKind"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem at one field, e.g. path `spec.http[0].route[1].weight`. INVALID makes the
    object invalid; every other reason is a warning."""

    path: str
    message: str
    reason: Reason = Reason.INVALID

    @property
    def warning(self) -> bool:
        return self.reason is not Reason.INVALID

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def problem(self, ref: ObjectRef, source: str = "", note: str = "") -> Problem:
        """This issue of object `ref` as a Problem; `note` is appended to the message."""
        return Problem(self.reason, self.message + note, ref, self.path,
                       Severity.WARNING if self.warning else Severity.ERROR, source)


class InvalidObject(Exception):
    """An object that failed validation. It is skipped; the rest of the config is served."""

    def __init__(self, ref: ObjectRef, issues: list[Issue], origin: str = "") -> None:
        self.ref = ref
        self.issues = [i for i in issues if not i.warning]
        self.warnings = [i for i in issues if i.warning]
        self.origin = origin
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" ({self.origin})" if self.origin else ""
        details = "; ".join(str(i) for i in self.issues)
        return f"invalid {self.ref}{where}: {details}"


class UnknownKind(Exception):
    """A document whose apiVersion/kind pilotpy does not read. Reported, never fatal."""
