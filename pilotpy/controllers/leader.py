"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection (which
istiod uses): acquire when the Lease is free or expired, renew every retry period, step down
when renewing fails for the renew deadline, release on a clean stop so a successor does not
wait out the lease.

Expiry is judged on this process's clock, from when it last saw the record change (as
client-go does), never from the holder's timestamps, so skewed clocks cannot steal a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

log = logging.getLogger("pilotpy.leader")
# istiod's elections: a 30 s lease, renewed within 15 s, retried every 7.5 s.
LEASE_DURATION = 30.0


class LeaseApi(Protocol):
    async def get(self, path: str, params: Any = ..., timeout: float = ...) -> Any: ...
    async def post(self, path: str, body: Any, timeout: float = ...) -> Any: ...
    async def send(self, method: str, path: str, body: Any, content_type: str = ...,
                   timeout: float = ...) -> Any: ...


def _micro_time(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _code(err: Exception) -> int:
    code = getattr(err, "code", 0)
    return code if isinstance(code, int) else 0


class LeaseElection:
    def __init__(self, api: LeaseApi, namespace: str, name: str, identity: str,
                 lead: Callable[[], Coroutine[Any, Any, None]], *,
                 lease_duration: float = LEASE_DURATION,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`lead` runs while this process leads; it is cancelled when leadership is lost."""
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._lead = lead
        self.lease_duration = lease_duration
        self.renew_deadline = lease_duration / 2
        self.retry_period = lease_duration / 4
        self._clock = clock
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._record: dict[str, Any] | None = None
        self.leading = asyncio.Event()
        self.transitions = 0  # times this process became leader

    @property
    def observed_holder(self) -> str:
        """Who held the Lease when this process last read it ("" before the first read)."""
        return self._observed[0] if self._observed is not None else ""

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro_time(datetime.datetime.now(datetime.UTC))
        old = (previous or {}).get("spec") or {}
        held = old.get("holderIdentity") == self.identity
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": old.get("acquireTime") if held else now, "renewTime": now,
                "leaseTransitions": int(old.get("leaseTransitions") or 0) + (0 if held else 1)}

    async def try_acquire_or_renew(self) -> bool:
        """One round; True when this process holds the Lease afterwards."""
        try:
            current = await self._api.get(f"{self._path}/{self.name}")
        except Exception as err:
            if _code(err) != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(None)}
            try:
                self._record = await self._api.post(self._path, body)
            except Exception as err2:
                if _code(err2) == 409:
                    return False  # someone created it first
                raise
            return True
        spec = current.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        seen = (holder, str(spec.get("renewTime") or ""))
        now = self._clock()
        if seen != self._observed:
            self._observed, self._observed_at = seen, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # another live holder
        body = {**current, "spec": self._spec(current)}
        try:
            self._record = await self._api.send("PUT", f"{self._path}/{self.name}", body)
        except Exception as err:
            if _code(err) == 409:
                return False  # changed under us: someone else renewed or took it
            raise
        return True

    async def run(self) -> None:
        """Campaign, lead, campaign again when leadership is lost; until cancelled, when a
        held Lease is released so a successor need not wait it out."""
        try:
            while True:
                await self._acquire()
                task = asyncio.create_task(self._lead(), name=f"leading {self.name}")
                try:
                    await self._renew_until_lost(task)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                self.leading.clear()
        except asyncio.CancelledError:
            await self._release()
            raise

    async def _acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire_or_renew():
                    self.transitions += 1
                    self.leading.set()
                    log.info("leader election: %s leads %s/%s", self.identity, self.namespace,
                             self.name)
                    return
            except Exception as err:
                log.warning("leader election %s: %s", self.name, err)
            await asyncio.sleep(self.retry_period)

    async def _renew_until_lost(self, task: asyncio.Task[None]) -> None:
        last_renewed = self._clock()
        while True:
            await asyncio.sleep(self.retry_period)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("leader election %s: the leader's work failed: %s", self.name,
                          task.exception())
            try:
                if await self.try_acquire_or_renew():
                    last_renewed = self._clock()
                    continue
                log.warning("leader election: %s lost %s to another holder", self.identity,
                            self.name)
                return
            except Exception as err:
                if self._clock() - last_renewed >= self.renew_deadline:
                    log.warning("leader election: %s could not renew %s for %.0fs (%s); "
                                "stepping down", self.identity, self.name,
                                self.renew_deadline, err)
                    return

    async def _release(self) -> None:
        """On a clean stop: hand the Lease back so a successor takes over at once."""
        if not self.leading.is_set() or self._record is None:
            return
        body = dict(self._record)
        body["spec"] = {**(body.get("spec") or {}), "holderIdentity": "",
                        "leaseDurationSeconds": 1}
        with contextlib.suppress(Exception):
            await self._api.send("PUT", f"{self._path}/{self.name}", body, timeout=5.0)
        self.leading.clear()
