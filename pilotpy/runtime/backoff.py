"""Jittered exponential backoff, pure: the caller sleeps."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5  # each delay is scaled by a random factor in [1 - jitter, 1]
    rng: random.Random = field(default_factory=random.Random)
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.initial

    def delay(self) -> float:
        """The delay before the next attempt; each call doubles the following one."""
        base = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self._next = self.initial
