"""Endpoints of Kubernetes Services as the push context computes them from EndpointSlices and
Pods (istiod's endpointslice.go: endpointHealthStatus, getPod, the per-slice cache), built in
full and incrementally."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pilotpy.mesh import MeshConfig
from pilotpy.model import Key, parse_object
from pilotpy.push import Endpoint, Objects, PushContext, PushScope, build_push_context
from tests.unit.support import objects_of

MESH = MeshConfig()
FQDN = "reviews.bookinfo.svc.cluster.local"


def service(name: str = "reviews", *, ports: list[dict[str, Any]] | None = None,
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bookinfo"},
            "spec": {"selector": {"app": name},
                     "ports": ports or [{"name": "http", "port": 9080}], **spec}}


def endpoint(address: str, pod: str | None = None, **conditions: bool) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [address]}
    if conditions:
        ep["conditions"] = conditions
    if pod is not None:
        ep["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "bookinfo"}
    return ep


def endpoint_slice(name: str, endpoints: list[dict[str, Any]], *, service_name: str = "reviews",
                   ports: list[dict[str, Any]] | None = None,
                   address_type: str = "IPv4") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "bookinfo",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": ports or [{"name": "http", "port": 9080}]}


def pod(name: str, ip: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bookinfo",
                         "labels": labels or {"app": "reviews"}},
            "spec": {"serviceAccountName": "bookinfo-reviews"},
            "status": {"podIP": ip}}


def full(objects: Objects, version: int = 1) -> PushContext:
    context, scope = build_push_context(objects, MESH, version)
    assert scope.full
    return context


def endpoints(context: PushContext, name: str = "reviews") -> dict[str, list[Endpoint]]:
    svc = context.services.kube_service("bookinfo", name)
    assert svc is not None
    return {port: list(eps) for port, eps in context.service_endpoints(svc).items()}


def addresses(context: PushContext, port: str = "http", name: str = "reviews") -> list[str]:
    return [e.address for e in endpoints(context, name).get(port, [])]


def all_endpoints(context: PushContext) -> dict[str, dict[str, list[Endpoint]]]:
    return {svc.name: endpoints(context, svc.name)
            for svc in context.services.all if svc.origin.kind == "Service"}


class Cluster:
    """Objects as the store would hold them, and the push contexts built from their changes."""

    def __init__(self, *docs: dict[str, Any]) -> None:
        self.objects = objects_of(docs)
        self.context = full(self.objects)

    def apply(self, *docs: dict[str, Any], delete: Iterable[Key] = ()) -> PushScope:
        objects = {kind: dict(by_key) for kind, by_key in self.objects.items()}
        changed = set()
        for kind, by_key in objects_of(docs).items():
            objects.setdefault(kind, {}).update(by_key)
            changed |= set(by_key)
        for k in delete:
            objects[k.kind].pop(k)
            changed.add(k)
        self.objects = objects
        self.context, scope = build_push_context(objects, MESH, self.context.version + 1,
                                                 self.context, changed)
        # An incremental build must equal a full build of the same objects.
        assert all_endpoints(self.context) == all_endpoints(full(objects))
        return scope


# -- which endpoints are sent ------------------------------------------------------------------


def test_slice_ports_are_matched_to_service_ports_by_name() -> None:
    context = full(objects_of([
        service(ports=[{"name": "http", "port": 80, "targetPort": 9080},
                       {"name": "grpc", "port": 7070}]),
        endpoint_slice("reviews-1", [endpoint("10.0.0.1")],
                       ports=[{"name": "grpc", "port": 7070}, {"name": "http", "port": 9080}]),
    ]))
    eps = endpoints(context)
    assert set(eps) == {"http", "grpc"}
    assert [(e.address, e.port) for e in eps["http"]] == [("10.0.0.1", 9080)]
    assert [(e.address, e.port) for e in eps["grpc"]] == [("10.0.0.1", 7070)]


def test_ready_unset_counts_as_ready() -> None:
    context = full(objects_of([service(), endpoint_slice("s", [endpoint("10.0.0.1")])]))
    assert addresses(context) == ["10.0.0.1"]


def test_not_ready_endpoint_without_terminating_is_dropped_as_terminating() -> None:
    context = full(objects_of([service(), endpoint_slice("s", [
        endpoint("10.0.0.1", ready=True), endpoint("10.0.0.2", ready=False)])]))
    assert addresses(context) == ["10.0.0.1"]


def test_not_ready_and_not_terminating_is_kept_unhealthy() -> None:
    # istiod's PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS: Envoy learns of it and sends it nothing.
    context = full(objects_of([service(), endpoint_slice("s", [
        endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False, terminating=False)])]))
    assert [(e.address, e.healthy) for e in endpoints(context)["http"]] == [
        ("10.0.0.1", True), ("10.0.0.2", False)]


def test_terminating_endpoint_is_dropped() -> None:
    context = full(objects_of([service(), endpoint_slice("s", [
        endpoint("10.0.0.1"),
        endpoint("10.0.0.2", ready=False, serving=True, terminating=True)])]))
    assert addresses(context) == ["10.0.0.1"]


def test_ready_decides_even_when_terminating() -> None:
    # istiod: `ready` unset or true is Healthy before `terminating` is looked at.
    context = full(objects_of([service(), endpoint_slice("s", [
        endpoint("10.0.0.1", ready=True, terminating=True)])]))
    assert addresses(context) == ["10.0.0.1"]


def test_publish_not_ready_addresses_changes_nothing() -> None:
    # Kubernetes' EndpointSlice controller writes such endpoints ready; istiod reads the slice.
    context = full(objects_of([service(publishNotReadyAddresses=True), endpoint_slice("s", [
        endpoint("10.0.0.1"),
        endpoint("10.0.0.2", ready=False, terminating=False),
        endpoint("10.0.0.3", ready=False),  # terminating unset counts as terminating
        endpoint("10.0.0.4", ready=False, terminating=True)])]))
    assert [(e.address, e.healthy) for e in endpoints(context)["http"]] == [
        ("10.0.0.1", True), ("10.0.0.2", False)]


def test_same_address_and_port_in_two_slices_is_sent_once() -> None:
    context = full(objects_of([
        service(),
        endpoint_slice("reviews-a", [endpoint("10.0.0.1"), endpoint("10.0.0.2")]),
        endpoint_slice("reviews-b", [endpoint("10.0.0.2"), endpoint("10.0.0.3")]),
    ]))
    assert sorted(addresses(context)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_same_address_on_another_port_is_kept() -> None:
    context = full(objects_of([
        service(),
        endpoint_slice("reviews-a", [endpoint("10.0.0.1")],
                       ports=[{"name": "http", "port": 9080}]),
        endpoint_slice("reviews-b", [endpoint("10.0.0.1")],
                       ports=[{"name": "http", "port": 9081}]),
    ]))
    assert sorted(e.port for e in endpoints(context)["http"]) == [9080, 9081]


def test_slices_of_other_services_do_not_mix() -> None:
    context = full(objects_of([
        service("reviews"), service("ratings"),
        endpoint_slice("reviews-a", [endpoint("10.0.0.1")]),
        endpoint_slice("ratings-a", [endpoint("10.0.0.9")], service_name="ratings"),
    ]))
    assert addresses(context, name="reviews") == ["10.0.0.1"]
    assert addresses(context, name="ratings") == ["10.0.0.9"]


def test_fqdn_slices_are_ignored() -> None:
    context = full(objects_of([service(), endpoint_slice("s", [
        {"addresses": ["reviews.example.com"]}], address_type="FQDN")]))
    assert endpoints(context) == {}


def test_service_without_slices_has_no_endpoints() -> None:
    assert endpoints(full(objects_of([service()]))) == {}


# -- Pods --------------------------------------------------------------------------------------


def test_labels_come_from_the_target_pod() -> None:
    context = full(objects_of([
        service(),
        pod("reviews-v2", "10.0.0.2", app="reviews", version="v2"),
        endpoint_slice("s", [endpoint("10.0.0.2", pod="reviews-v2")]),
    ]))
    (ep,) = endpoints(context)["http"]
    assert ep.labels == {"app": "reviews", "version": "v2"}
    assert ep.service_account == "bookinfo-reviews"


def test_endpoint_of_an_unknown_pod_is_held_back() -> None:
    # Its labels decide subset membership; sending it without them could route wrongly.
    context = full(objects_of([
        service(),
        pod("reviews-v1", "10.0.0.1", app="reviews", version="v1"),
        endpoint_slice("s", [endpoint("10.0.0.1", pod="reviews-v1"),
                             endpoint("10.0.0.2", pod="reviews-v2")]),
    ]))
    assert addresses(context) == ["10.0.0.1"]


def test_held_back_endpoint_appears_when_its_pod_arrives() -> None:
    cluster = Cluster(service(), pod("reviews-v1", "10.0.0.1"),
                      endpoint_slice("s", [endpoint("10.0.0.1", pod="reviews-v1"),
                                           endpoint("10.0.0.2", pod="reviews-v2")]))
    assert addresses(cluster.context) == ["10.0.0.1"]
    scope = cluster.apply(pod("reviews-v2", "10.0.0.2", app="reviews", version="v2"))
    assert addresses(cluster.context) == ["10.0.0.1", "10.0.0.2"]
    assert endpoints(cluster.context)["http"][1].labels["version"] == "v2"
    assert not scope.full
    assert FQDN in scope.endpoint_hosts


def test_a_service_account_new_behind_a_service_pushes_in_full() -> None:
    # Mesh mTLS clusters verify the service accounts behind the service (their SANs): a new
    # one changes clusters, not only endpoints (istiod's updateShardServiceAccount).
    cluster = Cluster(service(), endpoint_slice("s", [endpoint("10.0.0.2", pod="reviews-v2")]))
    scope = cluster.apply(pod("reviews-v2", "10.0.0.2", app="reviews", version="v2"))
    assert addresses(cluster.context) == ["10.0.0.2"]
    assert scope.full


def test_without_target_ref_the_pod_is_found_by_ip_in_the_slice_namespace() -> None:
    context = full(objects_of([
        service(),
        pod("reviews-v3", "10.0.0.3", app="reviews", version="v3"),
        endpoint_slice("s", [endpoint("10.0.0.3"), endpoint("10.0.0.4")]),
    ]))
    eps = {e.address: e for e in endpoints(context)["http"]}
    assert eps["10.0.0.3"].labels == {"app": "reviews", "version": "v3"}
    assert eps["10.0.0.4"].labels == {}  # no Pod: sent without labels, not held back


def test_pod_relabel_updates_endpoint_labels_as_an_endpoint_only_push() -> None:
    cluster = Cluster(service(), pod("reviews-a", "10.0.0.1", app="reviews", version="v1"),
                      endpoint_slice("s", [endpoint("10.0.0.1", pod="reviews-a")]))
    scope = cluster.apply(pod("reviews-a", "10.0.0.1", app="reviews", version="v2"))
    assert scope == PushScope(full=False, changed=frozenset({Key("Pod", "bookinfo", "reviews-a")}),
                              endpoint_hosts=frozenset({FQDN}))
    assert endpoints(cluster.context)["http"][0].labels["version"] == "v2"


def test_pod_relabel_found_by_ip_is_also_incremental() -> None:
    cluster = Cluster(service(), pod("reviews-a", "10.0.0.1", app="reviews", version="v1"),
                      endpoint_slice("s", [endpoint("10.0.0.1")]))
    scope = cluster.apply(pod("reviews-a", "10.0.0.1", app="reviews", version="v2"))
    assert not scope.full and scope.endpoint_hosts == {FQDN}
    assert endpoints(cluster.context)["http"][0].labels["version"] == "v2"


def test_unrelated_pod_change_touches_no_endpoints() -> None:
    cluster = Cluster(service(), endpoint_slice("s", [endpoint("10.0.0.1")]))
    scope = cluster.apply(pod("other", "10.9.9.9", app="other"))
    assert not scope.full
    assert scope.endpoint_hosts == frozenset()


def test_deleted_pod_holds_its_endpoint_back_again() -> None:
    cluster = Cluster(service(), pod("reviews-a", "10.0.0.1"), pod("reviews-b", "10.0.0.2"),
                      endpoint_slice("s", [endpoint("10.0.0.1", pod="reviews-a"),
                                           endpoint("10.0.0.2", pod="reviews-b")]))
    scope = cluster.apply(delete=[Key("Pod", "bookinfo", "reviews-a")])
    assert addresses(cluster.context) == ["10.0.0.2"]
    assert not scope.full and scope.endpoint_hosts == {FQDN}


# -- incremental builds ------------------------------------------------------------------------


def test_slice_change_is_an_endpoint_only_push() -> None:
    cluster = Cluster(service(), endpoint_slice("s", [endpoint("10.0.0.1")]))
    scope = cluster.apply(endpoint_slice("s", [endpoint("10.0.0.1"), endpoint("10.0.0.2")]))
    assert not scope.full
    assert scope.endpoint_hosts == {FQDN}
    assert addresses(cluster.context) == ["10.0.0.1", "10.0.0.2"]


def test_endpoint_becoming_not_ready_is_removed_incrementally() -> None:
    cluster = Cluster(service(), endpoint_slice("s", [endpoint("10.0.0.1"),
                                                      endpoint("10.0.0.2")]))
    cluster.apply(endpoint_slice("s", [endpoint("10.0.0.1"),
                                       endpoint("10.0.0.2", ready=False, terminating=True)]))
    assert addresses(cluster.context) == ["10.0.0.1"]


def test_deleting_a_slice_removes_its_endpoints() -> None:
    cluster = Cluster(service(), endpoint_slice("a", [endpoint("10.0.0.1")]),
                      endpoint_slice("b", [endpoint("10.0.0.2")]))
    scope = cluster.apply(delete=[Key("EndpointSlice", "bookinfo", "b")])
    assert addresses(cluster.context) == ["10.0.0.1"]
    assert scope.endpoint_hosts == {FQDN}
    cluster.apply(delete=[Key("EndpointSlice", "bookinfo", "a")])
    assert endpoints(cluster.context) == {}


def test_slice_moving_to_another_service_updates_both() -> None:
    cluster = Cluster(service("reviews"), service("ratings"),
                      endpoint_slice("s", [endpoint("10.0.0.1")]))
    scope = cluster.apply(endpoint_slice("s", [endpoint("10.0.0.1")], service_name="ratings"))
    assert addresses(cluster.context, name="reviews") == []
    assert addresses(cluster.context, name="ratings") == ["10.0.0.1"]
    assert scope.endpoint_hosts == {FQDN, "ratings.bookinfo.svc.cluster.local"}


def test_service_change_is_a_full_push() -> None:
    cluster = Cluster(service(), endpoint_slice("s", [endpoint("10.0.0.1")]))
    scope = cluster.apply(service(ports=[{"name": "http", "port": 9081}]))
    assert scope.full
    assert scope.changed == {Key("Service", "bookinfo", "reviews")}


def test_config_change_is_a_full_push_and_keeps_endpoints() -> None:
    cluster = Cluster(service(), endpoint_slice("s", [endpoint("10.0.0.1")]))
    scope = cluster.apply({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                           "metadata": {"name": "reviews", "namespace": "bookinfo"},
                           "spec": {"host": "reviews"}})
    assert scope.full
    assert addresses(cluster.context) == ["10.0.0.1"]


def test_a_series_of_incremental_builds_matches_a_full_build() -> None:
    cluster = Cluster(service("reviews"), service("ratings"))
    cluster.apply(endpoint_slice("r1", [endpoint("10.0.0.1", pod="reviews-v1")]))
    cluster.apply(pod("reviews-v1", "10.0.0.1", app="reviews", version="v1"))
    cluster.apply(endpoint_slice("r2", [endpoint("10.0.0.2", pod="reviews-v2"),
                                        endpoint("10.0.0.1", pod="reviews-v1")]))
    cluster.apply(pod("reviews-v2", "10.0.0.2", app="reviews", version="v2"),
                  endpoint_slice("t1", [endpoint("10.0.0.5")], service_name="ratings"))
    cluster.apply(pod("reviews-v1", "10.0.0.1", app="reviews", version="v1b"))
    cluster.apply(delete=[Key("EndpointSlice", "bookinfo", "r1")])
    assert sorted(addresses(cluster.context)) == ["10.0.0.1", "10.0.0.2"]
    assert {e.labels["version"] for e in endpoints(cluster.context)["http"]} == {"v1b", "v2"}
    assert addresses(cluster.context, name="ratings") == ["10.0.0.5"]


def test_without_a_previous_context_the_build_is_full() -> None:
    objects = objects_of([service()])
    _, scope = build_push_context(objects, MESH, 1, None, [Key("Pod", "bookinfo", "x")])
    assert scope.full


def test_an_older_context_keeps_its_endpoints_after_an_incremental_build() -> None:
    cluster = Cluster(service(), endpoint_slice("s", [endpoint("10.0.0.1")]))
    old = cluster.context
    cluster.apply(endpoint_slice("s", [endpoint("10.0.0.9")]))
    assert addresses(old) == ["10.0.0.1"]
    assert addresses(cluster.context) == ["10.0.0.9"]


# -- property: any sequence of incremental builds equals a full build --------------------------

_IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
_PODS = ["p1", "p2", "p3"]
_CONDITION = st.sampled_from([None, True, False])
_SLICE_ENDPOINT = st.fixed_dictionaries({
    "ip": st.sampled_from(_IPS),
    "pod": st.sampled_from([None, *_PODS, "unknown"]),
    "ready": _CONDITION,
    "terminating": _CONDITION,
})
_OPERATION = st.one_of(
    st.tuples(st.just("slice"), st.sampled_from(["s1", "s2", "s3"]),
              st.sampled_from(["reviews", "ratings"]), st.lists(_SLICE_ENDPOINT, max_size=3),
              st.sampled_from([9080, 9081])),
    st.tuples(st.just("pod"), st.sampled_from(_PODS), st.sampled_from(_IPS),
              st.sampled_from(["v1", "v2"])),
    st.tuples(st.just("service"), st.sampled_from(["reviews", "ratings"]), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(
        [Key("EndpointSlice", "bookinfo", s) for s in ("s1", "s2", "s3")]
        + [Key("Pod", "bookinfo", p) for p in _PODS]
        + [Key("Service", "bookinfo", s) for s in ("reviews", "ratings")])),
)


def _doc(operation: tuple[Any, ...]) -> dict[str, Any]:
    if operation[0] == "slice":
        _, name, owner, eps, port = operation
        entries = []
        for ep in eps:
            conditions = {k: ep[k] for k in ("ready", "terminating") if ep[k] is not None}
            entries.append(endpoint(ep["ip"], ep["pod"], **conditions))
        return endpoint_slice(name, entries, service_name=owner,
                              ports=[{"name": "http", "port": port}])
    if operation[0] == "pod":
        _, name, ip, version = operation
        return pod(name, ip, app="reviews", version=version)
    _, name, publish = operation
    return service(name, publishNotReadyAddresses=publish)


def _all_by_ref(context: PushContext) -> dict[str, Any]:
    return {name: dict(context.endpoints.for_service("bookinfo", name))
            for name in ("reviews", "ratings")}


@settings(max_examples=60, deadline=None)
@given(st.lists(_OPERATION, min_size=1, max_size=8))
def test_incremental_builds_always_equal_full_builds(operations: list[tuple[Any, ...]]) -> None:
    objects: dict[str, dict[Key, Any]] = {}
    context = full(objects)
    for version, operation in enumerate(operations, start=2):
        objects = {kind: dict(by_key) for kind, by_key in objects.items()}
        if operation[0] == "delete":
            changed = operation[1]
            objects.get(changed.kind, {}).pop(changed, None)
        else:
            obj = parse_object(_doc(operation)).obj
            changed = obj.meta.key
            objects.setdefault(changed.kind, {})[changed] = obj
        previous = _all_by_ref(context)
        context, scope = build_push_context(objects, MESH, version, context, {changed})
        expected = full(objects, version)
        assert _all_by_ref(context) == _all_by_ref(expected)
        if not scope.full:
            for name, eps in _all_by_ref(context).items():
                svc = context.services.kube_service("bookinfo", name)
                if svc is not None and eps != previous[name]:
                    assert svc.hostname in scope.endpoint_hosts
