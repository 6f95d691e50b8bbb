"""Problems found in the input (invalid objects, broken files), kept per origin so they are
logged once when they appear, counted, and listed while they last."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger("pilotpy.config")


@dataclass(frozen=True, slots=True)
class Problem:
    origin: str  # where it was read: a file, "kube", ...
    subject: str  # the object, e.g. "VirtualService default/reviews", or the document
    message: str
    error: bool = True

    def __str__(self) -> str:
        where = f"{self.origin}: " if self.origin else ""
        return f"{where}{self.subject}: {self.message}"


class Diagnostics:
    def __init__(self) -> None:
        self._by_origin: dict[str, tuple[Problem, ...]] = {}
        self.rejected_total = 0  # invalid objects seen (istiod's pilot_total_rejected_configs)

    def set(self, origin: str, problems: Iterable[Problem]) -> None:
        """Replace the problems of `origin`; log the new ones."""
        new = tuple(problems)
        old = set(self._by_origin.get(origin, ()))
        for problem in new:
            if problem in old:
                continue
            if problem.error:
                self.rejected_total += 1
                log.error("%s", problem)
            else:
                log.warning("%s", problem)
        if new:
            self._by_origin[origin] = new
        else:
            self._by_origin.pop(origin, None)

    def clear(self, origin: str) -> None:
        self._by_origin.pop(origin, None)

    def problems(self) -> list[Problem]:
        return [p for origin in sorted(self._by_origin) for p in self._by_origin[origin]]

    def errors(self) -> list[Problem]:
        return [p for p in self.problems() if p.error]
