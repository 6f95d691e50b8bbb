"""AdmissionReview in and out: malformed bodies named, a refusal with its reason, warnings,
the patch, istiod's /inject/<settings> paths."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pilotpy.inject.injector import Injection, InjectionRefused
from pilotpy.inject.review import (
    MalformedReview,
    injected_pod,
    parse_request,
    path_settings,
    respond,
)


def review(**request: Any) -> bytes:
    base = {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop", "operation": "CREATE",
            "object": {"metadata": {"name": "web"}, "spec": {"containers": []}}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {**base, **request}}).encode()


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "not JSON"), (b"{", "not JSON"), (b"[]", "not a JSON object"),
    (b'{"apiVersion": "v1", "kind": "Pod"}', "expected an AdmissionReview"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "no request"),
    (review(uid=""), "request.uid"), (review(object="pod"), "request.object"),
])
def test_malformed_reviews_are_named(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedReview, match=reason):
        parse_request(body)


def test_v1beta1_is_answered_in_v1beta1() -> None:
    body = json.loads(review())
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    request = parse_request(json.dumps(body).encode())
    outcome = respond(request, lambda r: Injection(r.pod, [], False, "no"))
    assert outcome.response["apiVersion"] == "admission.k8s.io/v1beta1"
    assert outcome.response["response"] == {"uid": "u-1", "allowed": True}


def test_an_injection_is_a_base64_json_patch_with_the_warnings() -> None:
    request = parse_request(review())
    patch = [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]
    outcome = respond(request, lambda r: Injection(r.pod, patch, True, "policy", ["mind"]))
    response = outcome.response["response"]
    assert response["patchType"] == "JSONPatch" and response["warnings"] == ["mind"]
    assert json.loads(base64.b64decode(response["patch"])) == patch
    assert injected_pod(outcome.response, request.pod)["metadata"]["labels"] == {"a": "b"}


def test_a_refusal_disallows_the_pod_with_the_reason() -> None:
    def refuse(_: Any) -> Injection:
        raise InjectionRefused("invalid value 'x' for annotation 'a'")

    outcome = respond(parse_request(review()), refuse)
    response = outcome.response["response"]
    assert response["allowed"] is False and response["uid"] == "u-1"
    assert "invalid value 'x' for annotation 'a'" in response["status"]["message"]


def test_what_is_not_a_pod_is_allowed_unchanged_with_a_warning() -> None:
    outcome = respond(parse_request(review(kind={"kind": "Deployment"})),
                      lambda r: pytest.fail("not a pod"))
    response = outcome.response["response"]
    assert response["allowed"] is True and "patch" not in response
    assert "only injects Pods" in response["warnings"][0]


@pytest.mark.parametrize(("path", "settings"), [
    ("/inject", {}), ("/inject/", {}),
    ("/inject/cluster/east/net/network1", {"ISTIO_META_CLUSTER_ID": "east",
                                           "ISTIO_META_NETWORK": "network1"}),
    ("/inject/cluster/a--slash--b/custom/x/odd", {"ISTIO_META_CLUSTER_ID": "a/b",
                                                  "CUSTOM": "x"}),
    ("/inject/:ENV:cluster=east:ENV:net=n1:ENV:=bad", {"ISTIO_META_CLUSTER_ID": "east",
                                                       "ISTIO_META_NETWORK": "n1"}),
])
def test_istiods_inject_paths(path: str, settings: dict[str, str]) -> None:
    assert path_settings(path) == settings
