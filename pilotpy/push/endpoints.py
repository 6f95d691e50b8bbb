"""Endpoints of Kubernetes Services, from EndpointSlices and Pods.

Rules (istiod's endpointslice.go and endpoint_builder.go):
- slice ports are matched to service ports by name;
- `ready` unset means ready; a not-ready endpoint counts as terminating unless
  `terminating: false` says otherwise; terminating endpoints are dropped, not-ready ones kept
  as unhealthy (istiod's PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS: Envoy then knows how many hosts a
  cluster really has, and sends them nothing). A Service's `publishNotReadyAddresses` needs
  nothing here: Kubernetes' EndpointSlice controller already writes those endpoints ready;
- an endpoint whose targetRef names a Pod pilotpy does not know yet is held back until the Pod
  arrives (its labels decide subset membership); without a targetRef the Pod is looked up by IP;
- the same address and port in several slices is sent once.

The index is rebuilt per service: a change to one slice or Pod recomputes only the services it
touches and shares everything else with the previous index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pilotpy.model.kinds import Kind
from pilotpy.model.kube import EndpointSlice, Pod
from pilotpy.model.meta import Key

HEALTHY = 1


class Endpoint(NamedTuple):
    # A NamedTuple: there is one per endpoint address and port, and tuples are the cheapest
    # immutable records Python builds.
    address: str
    port: int
    labels: Mapping[str, str]
    locality: str = ""
    weight: int = 0
    service_account: str = ""
    healthy: bool = True


# port name -> endpoints, in a deterministic order
PortEndpoints = Mapping[str, tuple[Endpoint, ...]]
ServiceRef = tuple[str, str]  # (namespace, name) of a Kubernetes Service


class PodIndex:
    __slots__ = ("by_ip", "by_key")

    def __init__(self, pods: Iterable[Pod]) -> None:
        self.by_key: dict[tuple[str, str], Pod] = {}
        self.by_ip: dict[str, list[Pod]] = {}
        for pod in sorted(pods, key=lambda p: (p.meta.namespace, p.meta.name)):
            self.by_key[(pod.meta.namespace, pod.meta.name)] = pod
            for ip in pod.ips or ((pod.ip,) if pod.ip else ()):
                self.by_ip.setdefault(ip, []).append(pod)

    def by_address(self, ip: str, namespace: str | None = None) -> Pod | None:
        pods = self.by_ip.get(ip)
        if not pods:
            return None
        if namespace is None:
            return pods[0]
        for pod in pods:
            if pod.meta.namespace == namespace:
                return pod
        return None


@dataclass(frozen=True, slots=True)
class _ServiceEntry:
    endpoints: PortEndpoints
    # For incremental updates: the Pods referenced, and addresses looked up by IP (no
    # targetRef). Tuples, not sets: there is one entry per service and sets cost 4x more.
    pod_keys: tuple[tuple[str, str], ...]
    ips: tuple[str, ...]


_EMPTY = _ServiceEntry({}, (), ())
_NO_LABELS: Mapping[str, str] = {}


def _health(ready: bool | None, terminating: bool | None) -> bool | None:
    """True healthy, False unhealthy, None terminating (dropped)."""
    if ready is None or ready:
        return True
    if terminating is None or terminating:
        return None  # istiod treats an unset `terminating` on a not-ready endpoint as terminating
    return False


def _compute(slices: Iterable[EndpointSlice], pods: PodIndex) -> _ServiceEntry:
    found: dict[str, dict[tuple[str, int], Endpoint]] = {}
    pod_keys: set[tuple[str, str]] = set()
    ips: set[str] = set()
    for eps in sorted(slices, key=lambda s: s.meta.name):
        if eps.address_type == "FQDN":
            continue
        for ep in eps.endpoints:
            healthy = _health(ep.ready, ep.terminating)
            if healthy is None:
                continue
            ref = ep.target_ref
            for address in ep.addresses:
                pod: Pod | None
                if ref is not None and ref.kind == Kind.POD:
                    pod_keys.add((ref.namespace, ref.name))
                    pod = pods.by_key.get((ref.namespace, ref.name))
                    if pod is None:
                        continue  # wait for the Pod: its labels decide the subsets
                else:
                    ips.add(address)
                    pod = pods.by_address(address, eps.meta.namespace)
                labels = pod.meta.labels if pod is not None else _NO_LABELS
                account = pod.service_account if pod is not None else ""
                for port in eps.ports:
                    by_address = found.get(port.name)
                    if by_address is None:
                        by_address = found[port.name] = {}
                    key = (address, port.port)
                    if key not in by_address:
                        by_address[key] = Endpoint(address, port.port, labels, "", 0, account,
                                                   healthy)
    # Sorted once here, so every assignment built from them is in a stable order.
    endpoints = {name: tuple(by_address[k] for k in sorted(by_address))
                 for name, by_address in sorted(found.items())}
    return _ServiceEntry(endpoints, tuple(sorted(pod_keys)), tuple(sorted(ips)))


# Reverse index values: the service's own ref when one service holds the key (nearly always,
# and free: the ref is shared), a frozenset when several do.
_Refs = ServiceRef | frozenset[ServiceRef]


def _refs(index: dict[Any, _Refs], key: Any) -> frozenset[ServiceRef]:
    found = index.get(key)
    if found is None:
        return frozenset()
    return found if isinstance(found, frozenset) else frozenset((found,))


def _link(index: dict[Any, _Refs], key: Any, ref: ServiceRef) -> None:
    found = index.get(key)
    if found is None:
        index[key] = ref
    elif found != ref:
        index[key] = _refs(index, key) | {ref}


def _unlink(index: dict[Any, _Refs], key: Any, ref: ServiceRef) -> None:
    remaining = _refs(index, key) - {ref}
    if not remaining:
        index.pop(key, None)
    elif len(remaining) == 1:
        index[key] = next(iter(remaining))
    else:
        index[key] = remaining


class EndpointIndex:
    """Immutable; `updated()` returns a new index sharing untouched services."""

    __slots__ = ("_by_ip", "_by_pod", "_entries", "_slice_owner", "_slices")

    def __init__(self) -> None:
        self._entries: dict[ServiceRef, _ServiceEntry] = {}
        self._slices: dict[ServiceRef, dict[str, EndpointSlice]] = {}
        self._slice_owner: dict[tuple[str, str], ServiceRef] = {}
        self._by_pod: dict[tuple[str, str], _Refs] = {}
        self._by_ip: dict[str, _Refs] = {}

    def for_service(self, namespace: str, name: str) -> PortEndpoints:
        return self._entries.get((namespace, name), _EMPTY).endpoints

    @classmethod
    def build(cls, slices: Iterable[EndpointSlice], pods: PodIndex) -> EndpointIndex:
        index = cls()
        for eps in slices:
            index._add_slice(eps)
        for ref in list(index._slices):
            index._recompute(ref, pods)
        return index

    def updated(self, *, changed_slices: Mapping[Key, EndpointSlice | None],
                changed_pods: Iterable[Key], old_pods: PodIndex, pods: PodIndex,
                changed_services: Iterable[ServiceRef],
                ) -> tuple[EndpointIndex, set[ServiceRef]]:
        """A new index after some slices, Pods or Services changed, and the services whose
        endpoints may differ.

        Only the endpoints map is copied: older push contexts may still be serving from it.
        The bookkeeping used to compute the next update moves to the new index, so only the
        newest index may be updated.
        """
        new = EndpointIndex()
        new._entries = dict(self._entries)
        new._slices, self._slices = self._slices, {}
        new._slice_owner, self._slice_owner = self._slice_owner, {}
        new._by_pod, self._by_pod = self._by_pod, {}
        new._by_ip, self._by_ip = self._by_ip, {}
        dirty: set[ServiceRef] = set(changed_services)
        for key, eps in changed_slices.items():
            owner = new._slice_owner.pop((key.namespace, key.name), None)
            if owner is not None:
                new._slices.get(owner, {}).pop(key.name, None)
                dirty.add(owner)
            if eps is not None:
                dirty.add(new._add_slice(eps))
        for key in changed_pods:
            pod_key = (key.namespace, key.name)
            dirty.update(_refs(new._by_pod, pod_key))
            for index in (old_pods, pods):
                pod = index.by_key.get(pod_key)
                if pod is not None:
                    for ip in pod.ips or (pod.ip,):
                        dirty.update(_refs(new._by_ip, ip))
        for ref in dirty:
            new._recompute(ref, pods)
        return new, dirty

    def _add_slice(self, eps: EndpointSlice) -> ServiceRef:
        ref = (eps.meta.namespace, eps.service_name)
        self._slices.setdefault(ref, {})[eps.meta.name] = eps
        self._slice_owner[(eps.meta.namespace, eps.meta.name)] = ref
        return ref

    def _recompute(self, ref: ServiceRef, pods: PodIndex) -> None:
        old = self._entries.get(ref, _EMPTY)
        for pod_key in old.pod_keys:
            _unlink(self._by_pod, pod_key, ref)
        for ip in old.ips:
            _unlink(self._by_ip, ip, ref)
        slices = self._slices.get(ref)
        if not slices:
            self._entries.pop(ref, None)
            self._slices.pop(ref, None)
            return
        entry = _compute(slices.values(), pods)
        self._entries[ref] = entry
        for pod_key in entry.pod_keys:
            _link(self._by_pod, pod_key, ref)
        for ip in entry.ips:
            _link(self._by_ip, ip, ref)
