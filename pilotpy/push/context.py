"""PushContext: an immutable snapshot of every input for one config version, with indexes.

Built once per debounced change set, never mutated. Indexes whose inputs did not change are
shared with the previous context, so a change to one EndpointSlice costs one service's
endpoints, not the whole registry.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pilotpy.mesh import MeshConfig
from pilotpy.model.destinationrule import DestinationRule
from pilotpy.model.gateway import Gateway
from pilotpy.model.kinds import Kind
from pilotpy.model.kube import EndpointSlice
from pilotpy.model.meta import Key
from pilotpy.model.stored import UNENFORCED_KINDS
from pilotpy.model.virtualservice import VirtualService
from pilotpy.push.config import (
    DestinationRuleIndex,
    SidecarIndex,
    VirtualServiceIndex,
    resolve_virtual_service,
    sorted_gateways,
)
from pilotpy.push.endpoints import EndpointIndex, PodIndex, PortEndpoints, ServiceRef
from pilotpy.push.ingress import EMPTY as NO_INGRESS
from pilotpy.push.ingress import INPUT_KINDS as INGRESS_INPUT_KINDS
from pilotpy.push.ingress import IngressConfig, convert_ingresses
from pilotpy.push.peer_authn import PeerAuthnIndex
from pilotpy.push.security import AuthorizationIndex, RequestAuthenticationIndex
from pilotpy.push.services import (
    Resolution,
    Service,
    ServiceIndex,
    from_kube_service,
    from_service_entry,
)

# kind -> key -> object, as handed over by the store
Objects = Mapping[str, Mapping[Key, Any]]

ENDPOINT_KINDS = frozenset({Kind.ENDPOINT_SLICE, Kind.POD})
# Changes of only these kinds keep the results PushContext.kept holds.
KEEPING_KINDS = frozenset({Kind.VIRTUAL_SERVICE, Kind.GATEWAY})
_SELECTOR_KEYS = ("selector label keys",)


_T = TypeVar("_T")

@dataclass(frozen=True, slots=True)
class PushScope:
    """What a new context changed, for deciding how much to regenerate and push."""

    full: bool
    changed: frozenset[Key] = frozenset()
    # Hostnames whose endpoints may differ (meaningful when `full` is False, or with
    # `gateways_only`).
    endpoint_hosts: frozenset[str] = frozenset()
    # Only gateways' config may differ beyond endpoints: Kubernetes Secrets changed, which only
    # gateways read (credentialName); every other proxy needs `endpoint_hosts` refreshed only.
    gateways_only: bool = False


def _values(objects: Objects, kind: str) -> Iterable[Any]:
    return objects.get(kind, {}).values()


@dataclass(frozen=True, slots=True)
class PushContext:
    version: int
    mesh: MeshConfig
    services: ServiceIndex
    pods: PodIndex
    endpoints: EndpointIndex
    gateways: tuple[Gateway, ...]
    virtual_services: VirtualServiceIndex
    destination_rules: DestinationRuleIndex
    objects: Objects
    sidecars: SidecarIndex = field(default_factory=lambda: SidecarIndex((), ""))
    # What the served Kubernetes Ingresses became (already part of `gateways` and
    # `virtual_services`), with the problems found converting them.
    ingress: IngressConfig = NO_INGRESS
    authorization: AuthorizationIndex = field(
        default_factory=lambda: AuthorizationIndex((), ""))
    request_authentication: RequestAuthenticationIndex = field(
        default_factory=lambda: RequestAuthenticationIndex((), ""))
    peer_authn: PeerAuthnIndex = field(default_factory=lambda: PeerAuthnIndex((), ""))
    # Resolved VirtualServices by key, reused while the stored object is the same object.
    _resolved_vs: Mapping[Key, tuple[VirtualService, VirtualService]] = field(
        default_factory=dict, repr=False)
    # Answers to lookups translation repeats for every route and cluster. The context never
    # changes, so neither do they; the memo lives and dies with the context.
    _memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)
    # Translation results kept from one context to the next while only VirtualServices and
    # Gateways change (see `kept`): key -> (the VirtualService they came from, the result).
    _kept: dict[tuple[Any, ...], tuple[VirtualService, Any]] = field(
        default_factory=dict, repr=False, compare=False)

    # -- lookups used by translation -----------------------------------------------------------

    def service(self, hostname: str, proxy_namespace: str, prefer_namespace: str = "") -> (
            Service | None):
        key = ("service", hostname, proxy_namespace, prefer_namespace)
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            found = self._memo[key] = self.services.for_host(hostname, proxy_namespace,
                                                              prefer_namespace)
            return found

    def kept(self, class_key: tuple[Any, ...], key: tuple[Any, ...], owner: VirtualService,
             build: Callable[[], _T]) -> _T:
        """`build()`'s result for one proxy class and one resolved VirtualService (`owner`,
        held by identity), for results that depend on nothing else but the service registry,
        DestinationRules, Sidecars, Pods and the mesh config: the next context keeps it when
        only VirtualServices and Gateways changed (those are unchanged then, and a changed
        VirtualService is a new object), for the classes still connected (`keep_classes`)."""
        found = self._kept.get((class_key, key))
        if found is not None and found[0] is owner:
            return found[1]  # type: ignore[no-any-return]
        value = build()
        self._kept[(class_key, key)] = (owner, value)
        return value

    def keep_classes(self, classes: Container[tuple[Any, ...]]) -> None:
        """Drops what `kept` holds for the proxy classes not in `classes` (none connected):
        what a context carries over is bounded by the classes connected."""
        for key in [k for k in self._kept if k[0] not in classes]:
            del self._kept[key]

    def memoized(self, key: tuple[Any, ...], build: Callable[[], _T]) -> _T:
        """`build()`'s result, computed once per context: for translation results that
        depend only on this context and on what `key` names, shared by every proxy class."""
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            found = self._memo[key] = build()
            return found

    def destination_rule(self, proxy_namespace: str, service: Service) -> DestinationRule | None:
        key = ("rule", proxy_namespace, service.hostname, service.namespace)
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            found = self._memo[key] = self.destination_rules.for_service(proxy_namespace,
                                                                         service)
            return found

    def service_endpoints(self, service: Service) -> PortEndpoints:
        if service.origin.kind != Kind.SERVICE:
            return {}
        return self.endpoints.for_service(service.namespace, service.name)

    def service_accounts(self, service: Service) -> tuple[str, ...]:
        """The SPIFFE ids a service's workloads present (istiod's ServiceAccounts): those of
        the Pods behind its endpoints, and a ServiceEntry's subjectAltNames; each in the
        trust domain and its aliases, sorted."""
        key = ("accounts", service.hostname, service.namespace)
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        accounts = set(service.subject_alt_names)
        domains = (self.mesh.trust_domain, *self.mesh.trust_domain_aliases)
        for endpoints in self.service_endpoints(service).values():
            for endpoint in endpoints:
                if endpoint.service_account:
                    accounts.update(f"spiffe://{domain}/ns/{service.namespace}/sa/"
                                    f"{endpoint.service_account}" for domain in domains)
        found = self._memo[key] = tuple(sorted(accounts))
        return found

    def visible_services(self, namespace: str) -> list[Service]:
        return [s for s in self.services.all if s.visible_to(namespace)]

    def selector_label_keys(self) -> frozenset[str]:
        """Every label key a selector of proxies reads: Gateway selectors, Sidecar workload
        selectors, VirtualService sourceLabels (Services are in the class key already).
        Labels outside these change nothing a proxy is given."""
        found: frozenset[str] | None = self._memo.get(_SELECTOR_KEYS)
        if found is None:
            keys = {k for gateway in self.gateways for k in gateway.selector}
            keys.update(self.sidecars.selector_label_keys())
            for vs in self.virtual_services.all:
                for http in vs.http:
                    keys.update(k for match in http.match for k in match.source_labels)
                for l4 in (*(r.match for r in vs.tcp), *(r.match for r in vs.tls)):
                    keys.update(k for match in l4 for k in match.source_labels)
            found = self._memo[_SELECTOR_KEYS] = frozenset(keys)
        return found


def _build_services(objects: Objects, mesh: MeshConfig) -> ServiceIndex:
    services: list[Service] = [from_kube_service(s, mesh.domain_suffix)
                               for s in _values(objects, Kind.SERVICE)]
    for entry in _values(objects, Kind.SERVICE_ENTRY):
        services.extend(from_service_entry(entry))
    return ServiceIndex(services)


def build_push_context(objects: Objects, mesh: MeshConfig, version: int,
                       previous: PushContext | None = None,
                       changed: Iterable[Key] | None = None) -> tuple[PushContext, PushScope]:
    """The context for `objects`. With `previous` and the keys that changed since it, indexes
    of untouched kinds are shared and endpoints are recomputed only where needed."""
    changed_keys = frozenset(changed) if changed is not None else frozenset()
    if previous is None or changed is None or previous.mesh != mesh:
        return _full_build(objects, mesh, version, {}), PushScope(full=True, changed=changed_keys)

    kinds = {k.kind for k in changed_keys}
    services = previous.services
    if kinds & {Kind.SERVICE, Kind.SERVICE_ENTRY}:
        services = _build_services(objects, mesh)
    pods = previous.pods
    if Kind.POD in kinds:
        pods = PodIndex(_values(objects, Kind.POD))
    endpoints = previous.endpoints
    dirty: set[ServiceRef] = set()
    if kinds & {Kind.ENDPOINT_SLICE, Kind.POD, Kind.SERVICE}:
        slices = objects.get(Kind.ENDPOINT_SLICE, {})
        endpoints, dirty = previous.endpoints.updated(
            changed_slices={k: slices.get(k) for k in changed_keys
                            if k.kind == Kind.ENDPOINT_SLICE},
            changed_pods=[k for k in changed_keys if k.kind == Kind.POD],
            old_pods=previous.pods,
            pods=pods,
            changed_services=[(k.namespace, k.name) for k in changed_keys
                              if k.kind == Kind.SERVICE],
        )
    ingress = previous.ingress
    if kinds & INGRESS_INPUT_KINDS:
        converted = convert_ingresses(objects, mesh)
        ingress = previous.ingress if converted == previous.ingress else converted
    gateways = previous.gateways
    if Kind.GATEWAY in kinds or ingress is not previous.ingress:
        gateways = _all_gateways(objects, ingress)
    resolved = previous._resolved_vs
    virtual_services = previous.virtual_services
    if Kind.VIRTUAL_SERVICE in kinds or ingress is not previous.ingress:
        if Kind.VIRTUAL_SERVICE in kinds:
            resolved = _resolve_all(objects, mesh, resolved)
        virtual_services = _virtual_service_index(resolved, ingress, mesh)
    destination_rules = previous.destination_rules
    if Kind.DESTINATION_RULE in kinds:
        destination_rules = DestinationRuleIndex(_values(objects, Kind.DESTINATION_RULE),
                                                 mesh.domain_suffix, mesh.root_namespace)
    sidecars = previous.sidecars
    if Kind.SIDECAR in kinds:
        sidecars = SidecarIndex(_values(objects, Kind.SIDECAR), mesh.root_namespace)
    authorization = previous.authorization
    if Kind.AUTHORIZATION_POLICY in kinds:
        authorization = _authorization(objects, mesh)
    request_authentication = previous.request_authentication
    if Kind.REQUEST_AUTHENTICATION in kinds:
        request_authentication = _request_authentication(objects, mesh)
    peer_authn = previous.peer_authn
    if Kind.PEER_AUTHENTICATION in kinds:
        peer_authn = PeerAuthnIndex(_values(objects, Kind.PEER_AUTHENTICATION),
                                    mesh.root_namespace)
    kept: dict[tuple[Any, ...], tuple[VirtualService, Any]] = {}
    if kinds <= KEEPING_KINDS:
        live = {id(vs) for vs in virtual_services.all}
        kept = {key: found for key, found in previous._kept.items() if id(found[0]) in live}
    context = PushContext(version, mesh, services, pods, endpoints, gateways, virtual_services,
                          destination_rules, objects, sidecars, ingress, authorization,
                          request_authentication, peer_authn, resolved, _kept=kept)
    if (gateways is previous.gateways and virtual_services is previous.virtual_services
            and sidecars is previous.sidecars and _SELECTOR_KEYS in previous._memo):
        context._memo[_SELECTOR_KEYS] = previous._memo[_SELECTOR_KEYS]
    # Kinds stored for later translation change no generated resource yet.
    if kinds <= ENDPOINT_KINDS | UNENFORCED_KINDS | {Kind.SECRET}:
        touched = [svc for ns, name in dirty
                   if (svc := services.kube_service(ns, name)) is not None]
        # Sidecars listen on each pod address of a headless service: its endpoints shape
        # listeners, not only ClusterLoadAssignments (istiod pushes in full too). The
        # service accounts behind a service are the SANs its mTLS clusters verify.
        if not any(svc.resolution is Resolution.PASSTHROUGH
                   or _accounts(previous.endpoints, svc) != _accounts(endpoints, svc)
                   for svc in touched):
            hostnames = frozenset(svc.hostname for svc in touched)
            secrets = Kind.SECRET in kinds
            return context, PushScope(full=secrets, changed=changed_keys,
                                      endpoint_hosts=hostnames, gateways_only=secrets)
    return context, PushScope(full=True, changed=changed_keys)


def _accounts(endpoints: EndpointIndex, service: Service) -> frozenset[str]:
    return frozenset(e.service_account for port in
                     endpoints.for_service(service.namespace, service.name).values()
                     for e in port if e.service_account)


def _resolve_all(objects: Objects, mesh: MeshConfig,
                 previous: Mapping[Key, tuple[VirtualService, VirtualService]]
                 ) -> dict[Key, tuple[VirtualService, VirtualService]]:
    out = {}
    for key, vs in objects.get(Kind.VIRTUAL_SERVICE, {}).items():
        cached = previous.get(key)
        if cached is not None and cached[0] is vs:
            out[key] = cached
        else:
            out[key] = (vs, resolve_virtual_service(vs, mesh.domain_suffix))
    return out


def _authorization(objects: Objects, mesh: MeshConfig) -> AuthorizationIndex:
    return AuthorizationIndex(_values(objects, Kind.AUTHORIZATION_POLICY), mesh.root_namespace)


def _request_authentication(objects: Objects, mesh: MeshConfig) -> RequestAuthenticationIndex:
    return RequestAuthenticationIndex(_values(objects, Kind.REQUEST_AUTHENTICATION),
                                      mesh.root_namespace)


def _all_gateways(objects: Objects, ingress: IngressConfig) -> tuple[Gateway, ...]:
    return sorted_gateways([*_values(objects, Kind.GATEWAY), *ingress.gateways])


def _virtual_service_index(resolved: Mapping[Key, tuple[VirtualService, VirtualService]],
                           ingress: IngressConfig, mesh: MeshConfig) -> VirtualServiceIndex:
    derived = (resolve_virtual_service(vs, mesh.domain_suffix)
               for vs in ingress.virtual_services)
    return VirtualServiceIndex([*(r for _, r in resolved.values()), *derived])


def _full_build(objects: Objects, mesh: MeshConfig, version: int,
                resolved_cache: Mapping[Key, tuple[VirtualService, VirtualService]]
                ) -> PushContext:
    pods = PodIndex(_values(objects, Kind.POD))
    slices: list[EndpointSlice] = list(_values(objects, Kind.ENDPOINT_SLICE))
    resolved = _resolve_all(objects, mesh, resolved_cache)
    ingress = convert_ingresses(objects, mesh)
    return PushContext(
        version=version,
        mesh=mesh,
        services=_build_services(objects, mesh),
        pods=pods,
        endpoints=EndpointIndex.build(slices, pods),
        gateways=_all_gateways(objects, ingress),
        virtual_services=_virtual_service_index(resolved, ingress, mesh),
        destination_rules=DestinationRuleIndex(_values(objects, Kind.DESTINATION_RULE),
                                               mesh.domain_suffix, mesh.root_namespace),
        objects=objects,
        sidecars=SidecarIndex(_values(objects, Kind.SIDECAR), mesh.root_namespace),
        ingress=ingress,
        authorization=_authorization(objects, mesh),
        request_authentication=_request_authentication(objects, mesh),
        peer_authn=PeerAuthnIndex(_values(objects, Kind.PEER_AUTHENTICATION),
                                  mesh.root_namespace),
        _resolved_vs=resolved,
    )

