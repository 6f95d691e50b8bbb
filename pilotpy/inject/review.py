"""AdmissionReview in, AdmissionReview out (admission.k8s.io/v1, and v1beta1 as istiod still
answers it): the injection as a base64 JSON patch, a refusal with its reason, warnings the
API server shows the user. A body that is no AdmissionReview is a MalformedReview (HTTP 400
with the message)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotpy.inject.injector import Injection, InjectionRefused
from pilotpy.inject.jsonpatch import apply

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# The webhook path's settings (istiod's URLParameterToEnv): /inject/cluster/<id>/net/<name>.
PATH_SETTINGS = {"cluster": "ISTIO_META_CLUSTER_ID", "net": "ISTIO_META_NETWORK"}


class MalformedReview(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    api_version: str
    uid: str
    namespace: str
    kind: str
    operation: str
    pod: dict[str, Any]


@dataclass
class Outcome:
    """What the webhook decided, for its logs and metrics."""

    response: dict[str, Any]
    injected: bool = False
    refused: str = ""
    skipped: str = ""
    warnings: list[str] = field(default_factory=list)


def parse_request(body: bytes) -> Request:
    try:
        review = json.loads(body)
    except ValueError as err:
        raise MalformedReview(f"the body is not JSON: {err}") from None
    if not isinstance(review, dict):
        raise MalformedReview("the body is not a JSON object")
    api_version = review.get("apiVersion")
    if api_version not in API_VERSIONS or review.get("kind") != "AdmissionReview":
        raise MalformedReview(f"expected an AdmissionReview of {' or '.join(API_VERSIONS)}, "
                              f"got apiVersion {api_version!r} kind {review.get('kind')!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing")
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise MalformedReview("request.object is missing or not an object")
    kind = request.get("kind")
    kind_name = str(kind.get("kind", "")) if isinstance(kind, dict) else ""
    return Request(str(api_version), uid, str(request.get("namespace") or ""),
                   kind_name or str(pod.get("kind") or ""),
                   str(request.get("operation") or ""), pod)


def path_settings(path: str) -> dict[str, str]:
    """istiod's parseInjectEnvs: `/inject/k1/v1/k2/v2` (a value's `--slash--` is a "/"),
    or the deprecated `/inject/:ENV:k1=v1:ENV:k2=v2`; `cluster` and `net` name Istio's
    metadata, other keys are taken as environment variables in upper case."""
    parts = path.rstrip("/").split("/", 2)
    if len(parts) < 3:
        return {}
    rest = parts[2]
    pairs: list[str] = []
    if rest.startswith(":ENV:"):
        for entry in rest.split(":ENV:")[1:]:
            key, sep, value = entry.partition("=")
            if key and sep:
                pairs += [key, value]
    else:
        pairs = rest.split("/")
        pairs = [p.replace("--slash--", "/") if i % 2 else p for i, p in enumerate(pairs)]
    out = {}
    for i in range(0, len(pairs) - 1, 2):
        name = PATH_SETTINGS.get(pairs[i], pairs[i].upper())
        if name:
            out[name] = pairs[i + 1]
    return out


def respond(request: Request, decide: Callable[[Request], Injection]) -> Outcome:
    """The AdmissionReview answering `request`."""
    response: dict[str, Any] = {"uid": request.uid, "allowed": True}
    outcome = Outcome({"apiVersion": request.api_version, "kind": "AdmissionReview",
                       "response": response})
    if request.kind and request.kind != "Pod":
        outcome.skipped = f"a {request.kind} is not a Pod"
        outcome.warnings.append(f"pilotpy's injector only injects Pods, not a {request.kind}")
    else:
        try:
            injection = decide(request)
        except InjectionRefused as err:
            response["allowed"] = False
            response["status"] = {"message": f"injection refused: {err}", "code": 400,
                                  "reason": "BadRequest"}
            outcome.refused = str(err)
            return outcome
        outcome.warnings += injection.warnings
        if injection.injected:
            outcome.injected = True
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(
                json.dumps(injection.patch, separators=(",", ":")).encode()).decode()
        else:
            outcome.skipped = injection.reason
    if outcome.warnings:
        response["warnings"] = list(outcome.warnings)
    return outcome


def review_body(outcome: Outcome) -> bytes:
    return json.dumps(outcome.response, separators=(",", ":")).encode()


def injected_pod(review: Mapping[str, Any], pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod as the API server makes it from a response (tests and tools)."""
    response = review["response"]
    if "patch" not in response:
        return dict(pod)
    patch = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = apply(dict(pod), patch)
    return result
