"""Running until asked to stop: SIGINT (Ctrl-C) and SIGTERM (Kubernetes) both end the main
coroutine through cancellation, so every `finally` runs and the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger("pilotpy")


def run_until_stopped(main: Callable[[], Awaitable[None]]) -> None:
    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await main()

    asyncio.run(guarded())


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has finished unwinding. A task that had already
    died of an exception is logged, not raised: shutting down must still reach the servers
    behind it (a task that died of a bug once left gRPC and HTTP open at SIGTERM)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("task %s had failed", task.get_name())
