"""A log filter for floods: the same warning or error over and over (out of file descriptors
on every accept, every poll) is logged once per window, and the next one let through says how
many were dropped. Info and debug records pass untouched."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 10.0
# Distinct repeating messages remembered; the oldest are forgotten first.
MAX_TRACKED = 1000


@dataclass
class _Seen:
    since: float
    dropped: int = 0


class RepeatFilter(logging.Filter):
    def __init__(self, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._seen: OrderedDict[tuple[object, ...], _Seen] = OrderedDict()

    @staticmethod
    def _key(record: logging.LogRecord) -> tuple[object, ...]:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, OSError):
            # The same OS error, whatever the address or descriptor in its text.
            return (record.name, record.levelno, type(error).__name__, error.errno)
        return (record.name, record.levelno, record.getMessage())

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = self._key(record)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self._window:
            seen.dropped += 1
            return False
        self._seen[key] = _Seen(now)
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_TRACKED:
            self._seen.popitem(last=False)
        if seen is not None and seen.dropped:
            record.msg = (f"{record.getMessage()} ({seen.dropped} more like this in the "
                          f"last {self._window:.0f} s)")
            record.args = None
        return True
