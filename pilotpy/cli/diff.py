"""`pilotpy diff`: what a change to the config would do to the proxies, before it is applied.

    pilotpy diff --config CURRENT... --proposed FILES... [--node-id ID | --all-proxies]

The current objects come from files (`--config`) or a cluster (`--kube`); the proposed ones
are the current ones with the `--proposed` objects applied over them, as `kubectl apply`
would (`--prune`: Istio config objects the proposed files do not hold are deleted too).
For each proxy class among the proxies shown (one node id, the workloads of the registry,
or the proxies connected to a running pilotpy), both states are translated and their Envoy
resources compared field by field; the problems the proposed state raises that the current
one does not (invalid objects, analysis findings, what translation cannot serve) follow.

Exit codes, for CI: 0 no proxy's config changes, 1 some does, 2 the proposed config raises
a new error (or the input cannot be read).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pilotpy.analysis.checks import analyze
from pilotpy.cli.config_diff import ResourceChange, resource_changes
from pilotpy.cli.translate import LoadedConfig, ProxyConfig, proxy_config
from pilotpy.model.kinds import Kind
from pilotpy.model.kube import Pod
from pilotpy.model.labels import Empty, selects
from pilotpy.model.meta import Key
from pilotpy.problems import Problem, ProblemLog
from pilotpy.proxy import ROUTER, SIDECAR, NodeIdError, Proxy, parse_proxy, view_proxy
from pilotpy.push import Objects
from pilotpy.store import Store

NO_CHANGE, CHANGES, ERRORS = 0, 1, 2
# Objects `--prune` deletes when the proposed files do not hold them.
PRUNED_KINDS = frozenset({Kind.GATEWAY, Kind.VIRTUAL_SERVICE, Kind.DESTINATION_RULE,
                          Kind.SERVICE_ENTRY, Kind.SIDECAR})
INJECT_ANNOTATION = "sidecar.istio.io/inject"
GATEWAY_LABEL_VALUES = frozenset({"ingressgateway", "egressgateway"})
RESOURCE_KINDS = {"listeners": "Listener", "routes": "RouteConfiguration",
                  "clusters": "Cluster", "endpoints": "ClusterLoadAssignment"}


def overlay(current: Objects, proposed: Objects, *, prune: bool = False) -> Objects:
    """`proposed` applied over `current`; with `prune`, Istio config objects of `current`
    that `proposed` lacks are gone."""
    out: dict[str, dict[Key, Any]] = {kind: dict(objects) for kind, objects in current.items()}
    if prune:
        for pruned in PRUNED_KINDS:
            out[pruned] = {}
    for kind, objects in proposed.items():
        out.setdefault(kind, {}).update(objects)
    return out


# -- which proxies ------------------------------------------------------------------------------


def _is_gateway(pod: Pod, objects: Objects) -> bool:
    if pod.meta.labels.get("istio") in GATEWAY_LABEL_VALUES:
        return True
    return any(gateway.selector and selects(gateway.selector, pod.meta.labels, empty=Empty.NONE)
               for gateway in objects.get(Kind.GATEWAY, {}).values())


def registry_proxies(*states: Objects, domain_suffix: str = "cluster.local") -> list[Proxy]:
    """A proxy per Pod with an address in any of the states: a gateway (`router`) when it
    carries `istio: ingressgateway` (or egressgateway) or a Gateway selects it, else a
    sidecar unless `sidecar.istio.io/inject: "false"` says it has none."""
    pods: dict[Key, tuple[Pod, Objects]] = {}
    for objects in states:
        for key, pod in objects.get(Kind.POD, {}).items():
            pods[key] = (pod, objects)
    out = []
    for key in sorted(pods, key=lambda k: (k.namespace, k.name)):
        pod, objects = pods[key]
        if not pod.ip:
            continue
        router = _is_gateway(pod, objects)
        injected = (pod.meta.annotations.get(INJECT_ANNOTATION)
                    or pod.meta.labels.get(INJECT_ANNOTATION))
        if not router and injected == "false":
            continue
        namespace = pod.meta.namespace
        node_id = (f"{ROUTER if router else SIDECAR}~{pod.ip}~{pod.meta.name}.{namespace}"
                   f"~{namespace}.svc.{domain_suffix}")
        out.append(parse_proxy(node_id, {"LABELS": dict(pod.meta.labels)}))
    return out


# A page holds at least one client, so this bounds the walk even if a server loops.
MAX_PAGES = 100_000
NEXT_PAGE = re.compile(r'<([^>]*)>\s*;\s*rel="next"')


def adsz_clients(server: str) -> list[dict[str, Any]]:
    """Every client of a running pilotpy's /debug/adsz, following its `Link: rel="next"`
    pages (one page holds what fits in the server's debug byte limit)."""
    url: str | None = f"{server.rstrip('/')}/debug/adsz"
    clients: list[dict[str, Any]] = []
    pages = 0
    while url is not None:
        pages += 1
        if pages > MAX_PAGES:
            raise SystemExit(f"pilotpy diff: {server} /debug/adsz has more than {MAX_PAGES} "
                             "pages")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                clients.extend(json.loads(response.read()).get("clients", []))
                found = NEXT_PAGE.search(response.headers.get("Link", ""))
        except (OSError, ValueError) as err:
            raise SystemExit(f"pilotpy diff: cannot read {url}: {err}") from err
        url = urllib.parse.urljoin(url, found.group(1)) if found else None
    return clients


def connected_proxies(server: str) -> list[Proxy]:
    """The proxies connected to a running pilotpy, from its /debug/adsz."""
    clients = adsz_clients(server)
    out: dict[str, Proxy] = {}
    for client in clients:
        if client.get("debug") or client["proxy"] in out:
            continue
        metadata: dict[str, Any] = {"LABELS": client.get("labels") or {}}
        if client.get("generator"):
            metadata["GENERATOR"] = client["generator"]
        try:
            out[client["proxy"]] = parse_proxy(client["proxy"], metadata)
        except NodeIdError:
            continue
    return [out[k] for k in sorted(out)]


# -- the comparison -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClassDiff:
    """One proxy class (as both states see it) and what changes for it."""

    proxies: tuple[Proxy, ...]
    changes: tuple[ResourceChange, ...]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.proxies[0].type, "proxies": [p.node_id for p in self.proxies],
                "changes": [c.to_json() for c in self.changes]}


@dataclass(frozen=True, slots=True)
class DiffResult:
    classes: tuple[ClassDiff, ...]
    new_problems: tuple[Problem, ...]
    fixed_problems: tuple[Problem, ...]

    @property
    def changed(self) -> bool:
        return any(c.changes for c in self.classes)

    @property
    def exit_code(self) -> int:
        if any(p.is_error for p in self.new_problems):
            return ERRORS
        return CHANGES if self.changed else NO_CHANGE

    def to_json(self) -> dict[str, Any]:
        return {"classes": [c.to_json() for c in self.classes],
                "newProblems": [p.to_json() for p in self.new_problems],
                "fixedProblems": [p.to_json() for p in self.fixed_problems],
                "changed": self.changed}


def _identity(problem: Problem) -> tuple[Any, ...]:
    """A problem regardless of the file it was read from (the proposed copy of an object
    raises the same problem from another file)."""
    return (problem.severity, problem.reason, problem.code, problem.ref, problem.field,
            problem.message)


def _problems(loaded: LoadedConfig, configs: Iterable[ProxyConfig]) -> list[Problem]:
    push = loaded.push
    found = analyze(loaded.objects, push.mesh, loaded.read_problems,
                    services=push.services.all)
    # Rejected objects are among the findings already (IST0106); warnings are not.
    found += [p for p in loaded.read_problems if not p.is_error]
    found += push.ingress.problems
    for config in configs:
        found += config.problems
    unique: dict[tuple[Any, ...], Problem] = {}
    for problem in found:
        unique.setdefault(_identity(problem), problem)
    return list(unique.values())


def diff(current: LoadedConfig, proposed: LoadedConfig, proxies: Sequence[Proxy]
         ) -> DiffResult:
    groups: dict[tuple[Any, Any], list[Proxy]] = {}
    for proxy in proxies:
        key = (view_proxy(proxy, current.push).class_key,
               view_proxy(proxy, proposed.push).class_key)
        groups.setdefault(key, []).append(proxy)
    classes = []
    before_configs, after_configs = [], []
    for members in sorted(groups.values(), key=lambda m: (m[0].type, m[0].id)):
        before = proxy_config(current.push, members[0])
        after = proxy_config(proposed.push, members[0])
        before_configs.append(before)
        after_configs.append(after)
        classes.append(ClassDiff(tuple(members), tuple(resource_changes(
            before.to_json(), after.to_json()))))
    old = {_identity(p): p for p in _problems(current, before_configs)}
    new = {_identity(p): p for p in _problems(proposed, after_configs)}
    return DiffResult(tuple(classes), tuple(p for k, p in new.items() if k not in old),
                      tuple(p for k, p in old.items() if k not in new))


# -- output -------------------------------------------------------------------------------------


def _same_changes(classes: Sequence[ClassDiff]) -> list[tuple[list[ClassDiff], ClassDiff]]:
    """Classes whose changes are identical, together (every sidecar seeing one route change
    is one entry), each group with a representative, in order of first appearance."""
    groups: dict[str, list[ClassDiff]] = {}
    for entry in classes:
        key = json.dumps([c.to_json() for c in entry.changes], sort_keys=True)
        groups.setdefault(key, []).append(entry)
    return [(members, members[0]) for members in groups.values()]


def _title(members: Sequence[ClassDiff]) -> str:
    proxies = [p for m in members for p in m.proxies]
    types = sorted({p.type for p in proxies})
    names = ", ".join(p.id for p in proxies[:3])
    more = f" and {len(proxies) - 3} more" if len(proxies) > 3 else ""
    count = f"{len(proxies)} {'proxy' if len(proxies) == 1 else 'proxies'}"
    return f"{'/'.join(types)} {count} ({names}{more})"


def write_text(result: DiffResult, out: TextIO) -> None:
    if not result.classes:
        out.write("no proxies to compare (give --node-id, or a registry with Pods)\n")
    for members, entry in _same_changes(result.classes):
        if not entry.changes:
            out.write(f"{_title(members)}: no change\n")
            continue
        out.write(f"{_title(members)}:\n")
        for change in entry.changes:
            kind = RESOURCE_KINDS[change.type]
            mark = {"added": "+", "removed": "-", "changed": "~"}[change.action]
            out.write(f"  {mark} {kind} {change.name}\n")
            for field in change.fields:
                out.write(f"      {field}\n")
    if result.new_problems:
        out.write("problems the proposed config raises:\n")
        for problem in result.new_problems:
            out.write(f"  {problem}\n")
    if result.fixed_problems:
        out.write(f"problems it resolves: {len(result.fixed_problems)}\n")
        for problem in result.fixed_problems:
            out.write(f"  {problem}\n")


def write_json(result: DiffResult, out: TextIO) -> None:
    json.dump(result.to_json(), out, indent=2, sort_keys=True)
    out.write("\n")


# -- the current state from a cluster -------------------------------------------------------------


async def kube_objects(kubeconfig: Path | None, context: str | None,
                       control_plane_namespace: str, timeout: float = 60.0
                       ) -> tuple[Objects, tuple[Problem, ...]]:
    """Every object pilotpy watches, listed once from the Kubernetes API (the informers of
    `pilotpy serve --kube`, stopped after their first list)."""
    from pilotpy.sources.kube import KubeApi, KubeSource, load_connection

    store = Store(clock=time.monotonic)
    problems = ProblemLog()
    source = KubeSource(KubeApi(load_connection(kubeconfig, context), user_agent="pilotpy-diff"),
                        store, problems, control_plane_namespace=control_plane_namespace)
    source.start()
    try:
        await asyncio.wait_for(source.wait_synced(), timeout)
    except TimeoutError:
        raise SystemExit(f"pilotpy diff: the Kubernetes API was not listed within "
                         f"{timeout:g}s") from None
    finally:
        await source.stop()
    return store.snapshot().objects, tuple(problems.problems())
