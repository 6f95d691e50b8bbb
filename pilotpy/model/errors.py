"""Validation results that name the object and the field, like `kubectl apply` does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem at one field, e.g. path `spec.http[0].route[1].weight`."""

    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else (
            f"{self.kind} {self.name}"
        )


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
