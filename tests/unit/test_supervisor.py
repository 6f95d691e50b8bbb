"""Supervised background tasks (pilotpy/runtime/supervisor.py) on fake time, and the log
filter for repeated warnings (pilotpy/runtime/logfilter.py)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from pilotpy.runtime.backoff import Backoff
from pilotpy.runtime.lifecycle import cancel_and_wait
from pilotpy.runtime.logfilter import RepeatFilter
from pilotpy.runtime.metrics import Registry
from pilotpy.runtime.supervisor import Supervisor


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def supervisor(time: FakeTime) -> Supervisor:
    return Supervisor(Registry(), backoff=lambda: Backoff(jitter=0.0, rng=random.Random(0)),
                      sleep=time.sleep, clock=time.clock)


async def test_a_failing_task_is_restarted_with_backoff_counted_and_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    tasks = supervisor(time)
    runs: list[int] = []
    failures: list[str] = []

    async def watch() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise RecursionError("maximum recursion depth exceeded in comparison")

    with caplog.at_level(logging.ERROR, logger="pilotpy.tasks"):
        await tasks.supervise("files", watch, on_failure=lambda err: failures.append(str(err)))
    assert runs == [0, 1, 2, 3]
    assert time.sleeps == [0.5, 1.0, 2.0]
    assert len(failures) == 3
    assert tasks.failures.value(task="files") == 3
    assert tasks.failing == {}  # running again
    # The traceback once; the same failure again is counted, not logged each time.
    (record,) = caplog.records
    assert record.getMessage() == ("files failed (RecursionError: maximum recursion depth "
                                   "exceeded in comparison); restarting in 0.5 s")
    assert record.exc_info is not None


async def test_while_a_task_waits_to_restart_it_is_listed_as_failing() -> None:
    time = FakeTime()
    tasks = supervisor(time)
    seen: list[dict[str, str]] = []

    async def sleep(seconds: float) -> None:
        seen.append(dict(tasks.failing))
        await time.sleep(seconds)

    tasks._sleep = sleep
    attempts = iter([OSError("EMFILE"), None])

    async def push() -> None:
        error = next(attempts)
        if error is not None:
            raise error

    await tasks.supervise("push", push)
    assert seen == [{"push": "OSError: EMFILE"}]


async def test_a_failure_after_a_long_healthy_run_starts_the_backoff_over() -> None:
    time = FakeTime()
    tasks = supervisor(time)
    outcomes = iter([0.0, 0.0, 0.0, 120.0, None])

    async def flaky() -> None:
        ran = next(outcomes)
        if ran is None:
            return
        time.now += ran
        raise ValueError("broken")

    await tasks.supervise("analysis", flaky)
    assert time.sleeps == [0.5, 1.0, 2.0, 0.5]


def test_repeated_warnings_are_logged_once_per_window_with_the_count_dropped() -> None:
    now = [0.0]
    repeats = RepeatFilter(window=10.0, clock=lambda: now[0])

    def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("asyncio", level, __file__, 1, message, None, None)

    assert repeats.filter(record("accept failed: Too many open files"))
    assert not any(repeats.filter(record("accept failed: Too many open files"))
                   for _ in range(1000))
    assert repeats.filter(record("another error"))
    assert all(repeats.filter(record("push: cds", logging.INFO)) for _ in range(3))
    now[0] = 10.0
    passed = record("accept failed: Too many open files")
    assert repeats.filter(passed)
    assert passed.getMessage() == ("accept failed: Too many open files (1000 more like this in "
                                   "the last 10 s)")


def test_the_same_os_error_is_one_flood_whatever_its_text() -> None:
    repeats = RepeatFilter(window=10.0, clock=lambda: 0.0)

    def record(fd: int) -> logging.LogRecord:
        error = OSError(24, "Too many open files")
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1,
                                 f"socket.accept() out of system resource (fd {fd})", None,
                                 (OSError, error, None))

    assert repeats.filter(record(7))
    assert not repeats.filter(record(8))


async def test_shutting_down_goes_past_a_task_that_had_died(
        caplog: pytest.LogCaptureFixture) -> None:
    """Stopping cancels every task and waits for it; one that had died of an exception must
    not keep the stop from reaching the servers after it."""
    async def dies() -> None:
        raise RecursionError("maximum recursion depth exceeded in comparison")

    async def runs() -> None:
        await asyncio.Event().wait()

    dead, alive = asyncio.create_task(dies(), name="files"), asyncio.create_task(runs())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="pilotpy"):
        await cancel_and_wait([dead, alive])
    assert alive.cancelled()
    assert [r.getMessage() for r in caplog.records] == ["task files had failed"]
