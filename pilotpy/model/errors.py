"""Validation results that name the object and the field, like `kubectl apply` does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pilotpy.problems import ObjectRef, Problem, Reason, Severity

__all__ = ["Fallback", "InvalidObject", "Issue", "ObjectRef", "UnknownKind", "is_stand_in"]


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


@dataclass(frozen=True, slots=True)
class Fallback:
    """What a source serves for an invalid security policy that has no last valid version,
    so that skipping it never opens access it meant to close: `obj` is a stand-in policy
    (marked `stand_in`), `note` says what it does."""

    obj: Any
    note: str


def is_stand_in(obj: Any) -> bool:
    """A Fallback's stand-in, never to be kept as an object's last valid version."""
    return bool(getattr(obj, "stand_in", False))


class InvalidObject(Exception):
    """An object that failed validation. It is skipped; the rest of the config is served."""

    def __init__(self, ref: ObjectRef, issues: list[Issue], origin: str = "",
                 fallback: Fallback | None = None) -> None:
        self.ref = ref
        self.issues = [i for i in issues if not i.warning]
        self.warnings = [i for i in issues if i.warning]
        self.origin = origin
        self.fallback = fallback
        super().__init__(str(self))

    def served(self, last_good: Any | None) -> tuple[Any | None, str]:
        """What a source serves in this object's place and the note its problems carry:
        its last valid version, else the stand-in of a security policy (fail closed), else
        nothing. A stand-in served earlier is not a valid version: it is made again."""
        if last_good is not None and not is_stand_in(last_good):
            return last_good, " (object skipped; keeping its last valid version)"
        if self.fallback is not None:
            return self.fallback.obj, f" (object skipped; {self.fallback.note})"
        return None, " (object skipped)"

    def __str__(self) -> str:
        where = f" ({self.origin})" if self.origin else ""
        details = "; ".join(str(i) for i in self.issues)
        return f"invalid {self.ref}{where}: {details}"


class UnknownKind(Exception):
    """A document whose apiVersion/kind pilotpy does not read. Reported, never fatal."""
