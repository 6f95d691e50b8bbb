"""The scenarios of `make bench-compare`, each run against one control plane at a time (a fresh
start on a loaded API server) and returning its figures by name. bench/compare.py runs them
for istiod and pilotpy alternately and reports medians and ratios. Each fills the figures it
is given as it goes, so a run that fails half way still reports its first half."""

from __future__ import annotations

import functools
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare_env import (
    Api,
    Fleet,
    cpu_seconds,
    fresh_sidecar,
    peak_rss_mb,
    plane,
    routers,
    rss_mb,
    running,
)
from compare_meshes import (
    ReferenceMesh,
    changed_endpoints,
    changed_gateway_route,
    virtual_service,
)
from fakeproxies import percentiles

from tests.diff.planes import ControlPlane

Figures = dict[str, float]
# Every measured change sets a value never set before: the API server keeps what earlier runs
# wrote, and writing it again would change nothing.
_GENERATIONS = itertools.count(1)
CONVERGE_TIMEOUT = 900.0
DEBOUNCE_MAX = 10.0  # istiod's PILOT_DEBOUNCE_MAX, and pilotpy's
# S7 times one VirtualService change in this many namespaces.
S7_PUSHES = 3


@dataclass(frozen=True)
class Sizes:
    """How big the fleets are: the issue's figures, or smaller for a quick check."""

    s3: tuple[int, ...] = (100, 1000)
    s5: tuple[int, int] = (1000, 5000)
    s6: int = 5000
    churn_seconds: float = 20.0
    s7_seconds: float = 120.0
    fresh_proxies: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(s3=(100, 500), s5=(500, 2000), s6=2000, churn_seconds=10.0,
                   s7_seconds=30.0, fresh_proxies=2)


Streams = Callable[[], list[dict[str, Any]]]


def _rds_acks(streams: Streams) -> dict[str, tuple[str, float]]:
    return {s["node"]: (s["types"]["rds"]["acked_version"], s["types"]["rds"]["acked_at"])
            for s in streams()}


def _timed_change(control: ControlPlane, streams: Streams, change: Callable[[], None],
                  timeout: float = 120.0) -> tuple[list[float], float]:
    """Apply one change; per proxy of `streams` (the fleet's per-stream reports), the
    seconds until it ACKed a new route configuration, and the control plane's CPU seconds
    until the last one (half a second of quiet after)."""
    before = _rds_acks(streams)
    cpu = cpu_seconds(control.pid)
    started = time.time()
    change()
    deadline = time.monotonic() + timeout
    while True:
        now = _rds_acks(streams)
        done = {node: at for node, (version, at) in now.items()
                if version != before.get(node, ("", 0.0))[0] and at >= started}
        if len(done) >= len(before):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)} of {len(before)} proxies ACKed the change")
        time.sleep(0.1)
    time.sleep(0.5)
    return [at - started for at in done.values()], cpu_seconds(control.pid) - cpu


def _streams_with(fleet: Fleet, marker: str) -> list[dict[str, Any]]:
    """The fleet's per-stream reports of the proxies whose node id holds `marker`."""
    return [s for s in fleet.streams() if marker in s["node"]]


def _latency_figures(prefix: str, latencies: list[float], cpu: float) -> Figures:
    spread = percentiles(latencies)
    return {f"{prefix}_p50_s": spread["p50"] or 0.0, f"{prefix}_p99_s": spread["p99"] or 0.0,
            f"{prefix}_last_s": spread["max"] or 0.0, f"{prefix}_cpu_s": cpu}


def _fresh(control: ControlPlane, identity: tuple[str, dict[str, str]]) -> tuple[float, float]:
    """One proxy of a class nobody has: seconds from its stream's start to its whole config,
    and the control plane's CPU seconds meanwhile."""
    cpu = cpu_seconds(control.pid)
    with Fleet(control.target, [identity]) as fleet:
        fleet.wait_converged(CONVERGE_TIMEOUT, control.pid)
        first = fleet.reports()[0]["first_convergence_seconds"]["p50"]
    return float(first), cpu_seconds(control.pid) - cpu


def _fresh_figures(control: ControlPlane, name: str, identities: list[tuple[str, dict[str, str]]]
                   ) -> Figures:
    """The median over fresh classes connecting one after the other, and the first of them
    alone: it finds nothing of this proxy type built yet in the push context."""
    runs = [_fresh(control, identity) for identity in identities]
    first = runs[0]
    runs.sort()
    middle = runs[len(runs) // 2]
    return {f"{name}_s": middle[0], f"{name}_cpu_s": middle[1],
            f"{name}_first_s": first[0], f"{name}_first_cpu_s": first[1]}


def _churn(api: Api, docs: list[dict[str, Any]], *, rate: float, seconds: float,
           vs_every: float = 0.0, namespaced_vs: list[tuple[str, str]] | None = None) -> int:
    """Endpoint changes at `rate` per second for `seconds` (and a VirtualService change every
    `vs_every` seconds, round robin over `namespaced_vs`); the changes made."""
    generation = next(_GENERATIONS)
    started = time.monotonic()
    made = 0
    next_vs = vs_every
    for index in range(int(rate * seconds)):
        at = started + index / rate
        time.sleep(max(0.0, at - time.monotonic()))
        api.admin.apply(changed_endpoints(docs, index, generation), strict=False)
        made += 1
        if vs_every and namespaced_vs and time.monotonic() - started >= next_vs:
            name, namespace = namespaced_vs[int(next_vs / vs_every) % len(namespaced_vs)]
            api.admin.apply(virtual_service(name, namespace, timeout=10 + next(_GENERATIONS)),
                            strict=False)
            next_vs += vs_every
            made += 1
    return made


def gateway_mesh_scenarios(kind: str, api: Api, docs: list[dict[str, Any]], workdir: Path,
                           sizes: Sizes, *, figures: Figures) -> None:
    """On the 1k-service gateway mesh: S1 cold start, S2 one change, S8 a fresh gateway
    proxy with 1000 VirtualServices, per-proxy generation of a fresh sidecar, S3 change ->
    ACK at 100 and 1000 proxies."""
    control = plane(kind, api, workdir)
    launched = time.time()
    control.start()
    try:
        with Fleet(control.target, routers(1), per_stream=True) as one:
            converged = one.wait_converged(CONVERGE_TIMEOUT)
            figures["s1_start_to_config_s"] = one.started + converged - launched
            figures["s1_cpu_s"] = cpu_seconds(control.pid)
            figures["s8_rss_mb"] = rss_mb(control.pid)
            latencies, cpu = _timed_change(control, one.streams, functools.partial(
                api.admin.apply, changed_gateway_route(docs, next(_GENERATIONS)), strict=False))
            figures["s2_change_to_ack_s"], figures["s2_cpu_s"] = latencies[0], cpu
        figures |= _fresh_figures(control, "s8_fresh_router", [
            routers(1, 100 + k, {"variant": f"v{k}"})[0] for k in range(sizes.fresh_proxies)])
        figures |= _fresh_figures(control, "gen_sidecar_1k", [
            fresh_sidecar(k) for k in range(sizes.fresh_proxies)])
        for count in sizes.s3:
            processes = max(1, count // 250)
            with Fleet(control.target, routers(count, 1000), processes=processes,
                       connect_rate=500, per_stream=True) as fleet:
                fleet.wait_converged(CONVERGE_TIMEOUT, control.pid)
                latencies, cpu = _timed_change(control, fleet.streams, functools.partial(
                    api.admin.apply, changed_gateway_route(docs, next(_GENERATIONS)),
                    strict=False))
                figures |= _latency_figures(f"s3_{count}", latencies, cpu)
    finally:
        control.stop()


def endpoint_churn(kind: str, api: Api, docs: list[dict[str, Any]], workdir: Path,
                   sizes: Sizes, *, figures: Figures) -> None:
    """S4: 50 endpoint changes per second under the largest S3 fleet: the control plane's CPU.
    Both debounce (quiet 100 ms, at most 10 s): under steady churn they push at most every
    10 s, so the window runs on until the last push is done."""
    count = max(sizes.s3)
    with running(kind, api, workdir) as control, Fleet(
            control.target, routers(count), processes=max(1, count // 250),
            connect_rate=500) as fleet:
        fleet.wait_converged(CONVERGE_TIMEOUT, control.pid)
        eds = sum(r["responses"]["eds"] for r in fleet.reports())
        cpu = cpu_seconds(control.pid)
        started = time.monotonic()
        made = _churn(api, docs, rate=50, seconds=sizes.churn_seconds)
        time.sleep(DEBOUNCE_MAX + 1)
        spent = cpu_seconds(control.pid) - cpu
        figures["s4_cpu_cores"] = spent / (time.monotonic() - started)
        figures["s4_cpu_ms_per_change"] = 1000 * spent / made
        figures["s4_eds_responses_per_proxy"] = (
            sum(r["responses"]["eds"] for r in fleet.reports()) - eds) / count


def idle_streams(kind: str, api: Api, workdir: Path, sizes: Sizes, *, figures: Figures) -> None:
    """S5: the control plane's RSS with the first and the second number of idle proxies of
    one class connected; the slope per proxy."""
    low, high = sizes.s5
    with running(kind, api, workdir) as control, Fleet(
            control.target, routers(low), processes=max(1, low // 500),
            connect_rate=500) as first:
        first.wait_converged(CONVERGE_TIMEOUT, control.pid)
        time.sleep(3)
        rss_low = rss_mb(control.pid)
        with Fleet(control.target, routers(high - low, low),
                   processes=max(1, (high - low) // 500), connect_rate=500) as second:
            second.wait_converged(CONVERGE_TIMEOUT, control.pid)
            time.sleep(3)
            rss_high = rss_mb(control.pid)
    figures |= {f"s5_rss_mb_{low}": rss_low, f"s5_rss_mb_{high}": rss_high,
                "s5_kb_per_proxy": (rss_high - rss_low) * 1024 / (high - low)}


def storm(kind: str, api: Api, workdir: Path, sizes: Sizes, *, figures: Figures) -> None:
    """S6: the whole fleet connects within 10 s: until every proxy has all its config, and
    the control plane's peak RSS."""
    count = sizes.s6
    with running(kind, api, workdir) as control:
        cpu = cpu_seconds(control.pid)
        with Fleet(control.target, routers(count), processes=max(1, count // 1000),
                   connect_rate=count / 10) as fleet:
            converged = fleet.wait_converged(CONVERGE_TIMEOUT, control.pid)
        figures |= {"s6_all_converged_s": converged,
                    "s6_cpu_s": cpu_seconds(control.pid) - cpu,
                    "s6_peak_rss_mb": peak_rss_mb(control.pid)}


def reference(kind: str, api: Api, mesh: ReferenceMesh, workdir: Path, sizes: Sizes, *,
              figures: Figures) -> None:
    """S7: 2000 sidecars of 200 workloads connect (CPU per connect), light churn for a while
    (average CPU), one configuration push to all (CPU, p99), peak RSS."""
    docs, sidecars = mesh.docs, mesh.sidecars
    with running(kind, api, workdir) as control:
        cpu = cpu_seconds(control.pid)
        with Fleet(control.target, sidecars, processes=4, connect_rate=200,
                   per_stream=True) as fleet:
            figures["s7_connect_s"] = fleet.wait_converged(CONVERGE_TIMEOUT, control.pid)
            connect_cpu = cpu_seconds(control.pid) - cpu
            figures["s7_connect_cpu_ms_per_proxy"] = 1000 * connect_cpu / len(sidecars)
            cpu = cpu_seconds(control.pid)
            vs = [(d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs
                  if d["kind"] == "VirtualService"]
            made = _churn(api, docs, rate=1.0, seconds=sizes.s7_seconds, vs_every=10.0,
                          namespaced_vs=vs)
            figures["s7_churn_cpu_cores"] = (cpu_seconds(control.pid) - cpu) / sizes.s7_seconds
            figures["s7_churn_changes"] = made
            # The churn's last changes are pushed first: without this pause they can merge
            # with the timed change into one debounced change set, and the row measures both.
            time.sleep(2.0)
            # One change every sidecar of a namespace sees (its Sidecar scope), in three
            # namespaces one after the other: the median CPU of the three (one push costs
            # about a tenth of a second, measured in ticks of 10 ms), every proxy's latency.
            latencies, cpus = [], []
            for name, namespace in vs[::len(vs) // S7_PUSHES][:S7_PUSHES]:
                in_namespace = f".{namespace}~"
                pushed, push_cpu = _timed_change(
                    control, functools.partial(_streams_with, fleet, in_namespace),
                    functools.partial(api.admin.apply, virtual_service(
                        name, namespace, timeout=10 + next(_GENERATIONS)), strict=False))
                latencies += pushed
                cpus.append(push_cpu)
            figures |= _latency_figures("s7_push", latencies, statistics.median(cpus))
        figures["s7_peak_rss_mb"] = peak_rss_mb(control.pid)


def generation_10k(kind: str, api: Api, workdir: Path, sizes: Sizes, *,
                   figures: Figures) -> None:
    """Per-proxy generation at 10k services: a fresh sidecar and a fresh gateway proxy."""
    with running(kind, api, workdir) as control:
        with Fleet(control.target, routers(1)) as warm:
            warm.wait_converged(CONVERGE_TIMEOUT)
        figures |= _fresh_figures(control, "gen_router_10k", [
            routers(1, 100 + k, {"variant": f"v{k}"})[0] for k in range(sizes.fresh_proxies)])
        figures |= _fresh_figures(control, "gen_sidecar_10k", [
            fresh_sidecar(k) for k in range(sizes.fresh_proxies)])
        figures["gen_10k_rss_mb"] = rss_mb(control.pid)
