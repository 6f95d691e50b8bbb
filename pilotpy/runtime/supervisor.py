"""Background tasks that must not end quietly.

A config source's watch or the push loop that dies on an exception would leave the proxies
with stale config while everything looks fine. A supervised task that raises is logged with
its name and the exception (the traceback once; the same failure again is counted and
logged at most once a minute), counted in `pilotpy_task_failures_total{task}`, reported to
`on_failure` (a config source turns unhealthy, which /ready reports), and started again
after a jittered exponential backoff; whatever it delivered before keeps being served. A task
that returns is done; cancelling it stops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pilotpy.runtime.backoff import Backoff
from pilotpy.runtime.logtext import clip
from pilotpy.runtime.metrics import Registry

log = logging.getLogger("pilotpy.tasks")

# A run this long is taken as recovered: the next failure starts the backoff over.
STABLE_SECONDS = 60.0
REPEAT_LOG_SECONDS = 60.0

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Failure:
    message: str
    logged_at: float
    repeats: int = 0  # since it was last logged


class Supervisor:
    def __init__(self, registry: Registry, *, backoff: Callable[[], Backoff] = Backoff,
                 sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = registry.counter(
            "pilotpy_task_failures_total",
            "Failures of a background task (a config source's watch, the push loop); each "
            "is restarted with backoff.", ("task",))
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        # Tasks waiting to be started again, and the failure that stopped them.
        self.failing: dict[str, str] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]], *,
              on_failure: Callable[[Exception], None] | None = None) -> asyncio.Task[None]:
        return asyncio.create_task(self.supervise(name, run, on_failure), name=name)

    async def supervise(self, name: str, run: Callable[[], Awaitable[None]],
                        on_failure: Callable[[Exception], None] | None = None) -> None:
        backoff = self._backoff()
        last: _Failure | None = None
        while True:
            started = self._clock()
            self.failing.pop(name, None)
            try:
                await run()
                return
            except Exception as err:
                now = self._clock()
                self.failures.inc(task=name)
                if now - started >= STABLE_SECONDS:
                    backoff.reset()
                delay = backoff.delay()
                message = f"{type(err).__name__}: {clip(str(err), 300)}"
                self.failing[name] = message
                last = self._report(name, message, err, delay, last=last, now=now)
                if on_failure is not None:
                    on_failure(err)
                await self._sleep(delay)

    @staticmethod
    def _report(name: str, message: str, err: Exception, delay: float, *,
                last: _Failure | None, now: float) -> _Failure:
        if last is None or last.message != message:
            log.error("%s failed (%s); restarting in %.1f s", name, message, delay,
                      exc_info=err)
            return _Failure(message, now)
        last.repeats += 1
        if now - last.logged_at >= REPEAT_LOG_SECONDS:
            log.error("%s failed again (%s), %d times since the last report; restarting in "
                      "%.1f s", name, message, last.repeats, delay)
            last.logged_at, last.repeats = now, 0
        return last
