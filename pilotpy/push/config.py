"""Indexes over Istio config: Gateways, VirtualServices by gateway, DestinationRules by host.

Short names are resolved here, once per object (istiod's ResolveVirtualServiceShortnames and
initDestinationRules), so translation only sees fully qualified hosts and `ns/name` gateways.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from pilotpy.model import hosts
from pilotpy.model.common import Destination
from pilotpy.model.destinationrule import DestinationRule
from pilotpy.model.gateway import Gateway
from pilotpy.model.labels import Empty, selects
from pilotpy.model.meta import Key
from pilotpy.model.sidecar import Sidecar
from pilotpy.model.virtualservice import HTTPRoute, HTTPRouteDestination, L4Match, VirtualService
from pilotpy.push.services import Service, resolve_export_to


def _resolve_destination(d: Destination, namespace: str, suffix: str) -> Destination:
    resolved = hosts.resolve_short_name(d.host, namespace, suffix)
    return d if resolved == d.host else Destination(resolved, d.subset, d.port)


def _resolve_l4(m: L4Match, namespace: str) -> L4Match:
    if not m.gateways:
        return m
    return replace(m, gateways=tuple(hosts.resolve_gateway_name(g, namespace)
                                     for g in m.gateways))


def _resolve_http(route: HTTPRoute, ns: str, suffix: str) -> HTTPRoute:
    return replace(
        route,
        match=tuple(
            replace(m, gateways=tuple(hosts.resolve_gateway_name(g, ns) for g in m.gateways))
            if m.gateways else m
            for m in route.match
        ),
        route=tuple(HTTPRouteDestination(_resolve_destination(rd.destination, ns, suffix),
                                         rd.weight, rd.headers)
                    for rd in route.route),
        mirror=_resolve_destination(route.mirror, ns, suffix) if route.mirror else None,
        mirrors=tuple(replace(m, destination=_resolve_destination(m.destination, ns, suffix))
                      for m in route.mirrors),
    )


def resolve_virtual_service(vs: VirtualService, domain_suffix: str) -> VirtualService:
    ns = vs.meta.namespace
    return replace(
        vs,
        hosts=tuple(hosts.resolve_short_name(h, ns, domain_suffix).lower() for h in vs.hosts),
        gateways=tuple(hosts.resolve_gateway_name(g, ns) for g in vs.gateways) or ("mesh",),
        http=tuple(_resolve_http(r, ns, domain_suffix) for r in vs.http),
        tcp=tuple(replace(r, match=tuple(_resolve_l4(m, ns) for m in r.match),
                          route=tuple(replace(d, destination=_resolve_destination(
                              d.destination, ns, domain_suffix)) for d in r.route))
                  for r in vs.tcp),
        tls=tuple(replace(r, match=tuple(_resolve_l4(m, ns) for m in r.match),
                          route=tuple(replace(d, destination=_resolve_destination(
                              d.destination, ns, domain_suffix)) for d in r.route))
                  for r in vs.tls),
    )


class VirtualServiceIndex:
    """VirtualServices per gateway name (`ns/name` or `mesh`), bucketed by exportTo like
    istiod's initVirtualServices: private to a namespace, exported to namespaces, public."""

    __slots__ = ("_exported", "_private", "_public", "all")

    def __init__(self, resolved: Iterable[VirtualService]) -> None:
        self.all = tuple(sorted(resolved, key=lambda v: v.meta.age_order))
        self._private: dict[tuple[str, str], list[VirtualService]] = {}
        self._exported: dict[tuple[str, str], list[VirtualService]] = {}
        self._public: dict[str, list[VirtualService]] = {}
        for vs in self.all:
            export_to = resolve_export_to(vs.export_to, vs.meta.namespace)
            for gateway in dict.fromkeys(self._gateways_of(vs)):
                if "*" in export_to:
                    self._public.setdefault(gateway, []).append(vs)
                    continue
                for ns in sorted(export_to):
                    bucket = self._private if ns == vs.meta.namespace else self._exported
                    bucket.setdefault((ns, gateway), []).append(vs)

    @staticmethod
    def _gateways_of(vs: VirtualService) -> list[str]:
        names = list(vs.gateways)
        # Routes may name gateways the VirtualService does not list at the top.
        for route in vs.http:
            for m in route.match:
                names.extend(m.gateways)
        return names

    def for_gateway(self, proxy_namespace: str, gateway: str) -> list[VirtualService]:
        return (self._private.get((proxy_namespace, gateway), [])
                + self._exported.get((proxy_namespace, gateway), [])
                + self._public.get(gateway, []))

    def for_gateway_oldest_first(self, proxy_namespace: str, gateway: str
                                 ) -> list[VirtualService]:
        """for_gateway's VirtualServices oldest first (each bucket already is)."""
        buckets = [b for b in (self._private.get((proxy_namespace, gateway)),
                               self._exported.get((proxy_namespace, gateway)),
                               self._public.get(gateway)) if b]
        if len(buckets) == 1:
            return list(buckets[0])
        return sorted((vs for bucket in buckets for vs in bucket),
                      key=lambda vs: vs.meta.age_order)


def _merge(rules: list[DestinationRule]) -> DestinationRule:
    """istiod merges DestinationRules for the same host in one namespace: the oldest rule's
    traffic policy wins, subsets are added when their names are new."""
    first = rules[0]
    subsets = list(first.subsets)
    names = {s.name for s in subsets}
    policy = first.traffic_policy
    for rule in rules[1:]:
        if policy is None:
            policy = rule.traffic_policy
        for subset in rule.subsets:
            if subset.name not in names:
                names.add(subset.name)
                subsets.append(subset)
    return replace(first, traffic_policy=policy, subsets=tuple(subsets))


class _HostRules:
    __slots__ = ("specific", "wildcards")

    def __init__(self) -> None:
        self.specific: dict[str, list[DestinationRule]] = {}
        self.wildcards: dict[str, list[DestinationRule]] = {}

    def add(self, host: str, rule: DestinationRule) -> None:
        bucket = self.wildcards if hosts.is_wildcard(host) else self.specific
        bucket.setdefault(host, []).append(rule)

    def freeze(self, sources: dict[int, tuple[Key, ...]]) -> _Rules:
        """The merged rules; `sources` learns which stored rules each merged one holds."""
        def merged(rules: list[DestinationRule]) -> DestinationRule:
            out = _merge(rules)
            sources[id(out)] = tuple(r.meta.key for r in rules)
            return out

        wildcards = sorted(((h, merged(r)) for h, r in self.wildcards.items()),
                           key=lambda item: (-len(item[0]), item[0]))
        return _Rules({h: merged(r) for h, r in self.specific.items()}, tuple(wildcards))


class _Rules:
    """Rules by exact host, and wildcard rules most specific first: a lookup is one dict
    access plus a scan of the (few) wildcard rules, never of every rule."""

    __slots__ = ("exact", "wildcards")

    def __init__(self, exact: dict[str, DestinationRule],
                 wildcards: tuple[tuple[str, DestinationRule], ...]) -> None:
        self.exact = exact
        self.wildcards = wildcards

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcards)

    def most_specific(self, hostname: str) -> DestinationRule | None:
        found = self.exact.get(hostname)
        if found is not None:
            return found
        for host, rule in self.wildcards:
            if hosts.subset_of(hostname, host):
                return rule
        return None


class DestinationRuleIndex:
    """istiod's lookup order: rules in the proxy's namespace, then rules the service's
    namespace exports to the proxy, then rules the root namespace exports. A proxy in the root
    namespace (the ingress gateway, usually) starts with the root namespace's private rules
    only, so a mesh-wide `*.local` rule there does not hide the services' own rules."""

    __slots__ = ("_exported", "_local", "_root", "_root_private", "_sources")

    def __init__(self, rules: Iterable[DestinationRule], domain_suffix: str,
                 root_namespace: str) -> None:
        self._root = root_namespace
        local: dict[str, _HostRules] = {}
        root_private = _HostRules()
        exported: dict[str, dict[frozenset[str], _HostRules]] = {}
        for rule in sorted(rules, key=lambda r: r.meta.age_order):
            if rule.workload_selector is not None:
                continue  # applies to selected sidecars only; not translated yet
            ns = rule.meta.namespace
            host = hosts.resolve_short_name(rule.host, ns, domain_suffix).lower()
            rule = replace(rule, host=host)
            export_to = resolve_export_to(rule.export_to, ns)
            if "*" in export_to or ns in export_to:
                local.setdefault(ns, _HostRules()).add(host, rule)
                if ns == root_namespace and export_to == {ns}:
                    root_private.add(host, rule)
            if export_to:
                exported.setdefault(ns, {}).setdefault(export_to, _HostRules()).add(host, rule)
        # Merged rule (by identity; the index keeps it alive) -> the stored rules in it.
        self._sources: dict[int, tuple[Key, ...]] = {}
        self._local = {ns: r.freeze(self._sources) for ns, r in local.items()}
        self._root_private = root_private.freeze(self._sources)
        self._exported = {ns: [(e, r.freeze(self._sources))
                               for e, r in sorted(by.items(), key=lambda i: sorted(i[0]))]
                          for ns, by in exported.items()}

    def sources_of(self, rule: DestinationRule) -> tuple[Key, ...]:
        """The stored DestinationRules merged into `rule` (a rule this index returned)."""
        return self._sources.get(id(rule), (rule.meta.key,))

    def _exported_from(self, namespace: str, hostname: str,
                       proxy_namespace: str) -> DestinationRule | None:
        for export_to, rules in self._exported.get(namespace, []):
            if "*" in export_to or proxy_namespace in export_to:
                found = rules.most_specific(hostname)
                if found is not None:
                    return found
        return None

    def for_service(self, proxy_namespace: str, service: Service) -> DestinationRule | None:
        hostname = service.hostname
        local = (self._local.get(proxy_namespace) if proxy_namespace != self._root
                 else self._root_private)
        if local:
            found = local.most_specific(hostname)
            if found is not None:
                return found
        found = self._exported_from(service.namespace, hostname, proxy_namespace)
        if found is not None:
            return found
        return self._exported_from(self._root, hostname, proxy_namespace)


def sorted_gateways(gateways: Iterable[Gateway]) -> tuple[Gateway, ...]:
    return tuple(sorted(gateways, key=lambda g: g.meta.age_order))


class SidecarIndex:
    """istiod's sidecar scope selection: in the proxy's namespace the oldest Sidecar whose
    workloadSelector matches the workload, else the oldest one without a selector; else the
    root namespace's oldest Sidecar without a selector (the mesh-wide default)."""

    __slots__ = ("_by_namespace", "_root")

    def __init__(self, sidecars: Iterable[Sidecar], root_namespace: str) -> None:
        self._root = root_namespace
        self._by_namespace: dict[str, list[Sidecar]] = {}
        for sidecar in sorted(sidecars, key=lambda s: s.meta.age_order):
            self._by_namespace.setdefault(sidecar.meta.namespace, []).append(sidecar)

    def selector_label_keys(self) -> set[str]:
        return {key for sidecars in self._by_namespace.values() for sidecar in sidecars
                for key in sidecar.workload_selector or ()}

    def for_workload(self, namespace: str, labels: Mapping[str, str]) -> Sidecar | None:
        candidates = self._by_namespace.get(namespace, [])
        for sidecar in candidates:
            selector = sidecar.workload_selector
            if selects(selector, labels, empty=Empty.NONE):  # None: the namespace default
                return sidecar
        for sidecar in candidates:
            if sidecar.workload_selector is None:
                return sidecar
        for sidecar in self._by_namespace.get(self._root, []):
            if sidecar.workload_selector is None:
                return sidecar
        return None
