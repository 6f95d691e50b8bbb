"""A case's YAML as the API server takes it, applied to and deleted from a real kube-apiserver.

The golden inputs are written for pilotpy's file source; the API server needs a little more:
a namespace on every object, containers with an image on Pods (their IPs go through
`pods/status`, as a kubelet reports them), and no loopback addresses in EndpointSlices or Pod
IPs (it refuses them), which are moved from 127.a.b.c to 10.(79+a).b.c; and a namespace on
every EndpointSlice targetRef, as Kubernetes' EndpointSlice controller writes it (istiod looks
the Pod up in the targetRef's namespace only). Both control planes read the same objects, so
the rewrite changes nothing in the comparison."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.kube.cluster import ApiStatusError, KubeClient

_LOOPBACK = re.compile(r"^127\.(\d+)\.(\d+)\.(\d+)$")
# Applied first: what the others live in or refer to.
_ORDER = {"Namespace": 0, "ServiceAccount": 1, "ConfigMap": 1, "Service": 2, "Pod": 3,
          "EndpointSlice": 4}


@dataclass
class Applied:
    """What one case wrote to the API: the objects (to delete afterwards) and the ones the
    API server refused, with its reason (istiod's CRD validation refuses some invalid
    objects that pilotpy reports and skips itself)."""

    docs: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def load(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every document of the YAML files under `paths`; files that do not parse are listed
    (pilotpy's file source skips them too)."""
    docs: list[dict[str, Any]] = []
    unreadable: list[str] = []
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.yaml")) if path.is_dir() else [path])
    for file in files:
        try:
            loaded = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            unreadable.append(file.name)
            continue
        for doc in loaded:
            if isinstance(doc, dict) and doc.get("kind") == "List":
                docs.extend(d for d in doc.get("items") or [] if isinstance(d, dict))
            elif isinstance(doc, dict) and doc.get("kind"):
                docs.append(doc)
    return docs, unreadable


def _moved(address: Any) -> Any:
    match = _LOOPBACK.match(str(address))
    if match is None:
        return address
    first, second, third = match.groups()
    return f"10.{79 + int(first)}.{second}.{third}"


def for_api(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    metadata = out.setdefault("metadata", {})
    if out["kind"] not in ("Namespace", "IngressClass"):
        metadata.setdefault("namespace", "default")
    if out["kind"] == "Pod":
        spec = out.setdefault("spec", {})
        for container in spec.setdefault("containers", [{"name": "app"}]):
            container.setdefault("image", "app")
        status = out.get("status") or {}
        if "podIP" in status:
            status["podIP"] = _moved(status["podIP"])
    if out["kind"] == "EndpointSlice":
        for endpoint in out.get("endpoints") or []:
            endpoint["addresses"] = [_moved(a) for a in endpoint.get("addresses") or []]
            ref = endpoint.get("targetRef")
            if ref is not None:
                # What Kubernetes' EndpointSlice controller always writes.
                ref.setdefault("namespace", metadata["namespace"])
    return out


def namespaces(docs: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({d["metadata"]["namespace"] for d in docs if "namespace" in d["metadata"]})


def service_accounts(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ServiceAccounts the Pods of `docs` run as that `docs` do not hold: a cluster has
    them before its Pods (the API server's admission refuses a Pod without its account)."""
    docs = list(docs)
    present = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs
               if d["kind"] == "ServiceAccount"}
    wanted = sorted({(d["metadata"]["namespace"], str(d.get("spec", {}).get(
        "serviceAccountName") or "default")) for d in docs if d["kind"] == "Pod"})
    return [{"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": name, "namespace": namespace}}
            for namespace, name in wanted if name != "default" and (namespace, name) not in present]


def apply(client: KubeClient, docs: Iterable[dict[str, Any]]) -> Applied:
    api_docs = [for_api(d) for d in docs]
    api_docs = sorted([*api_docs, *service_accounts(api_docs)],
                      key=lambda d: _ORDER.get(d["kind"], 9))
    applied = Applied()
    for namespace in namespaces(api_docs):
        client.ensure_namespace(namespace)
    for doc in api_docs:
        status = doc.pop("status", None)
        name = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
        try:
            client.apply(doc, strict=False)
        except ApiStatusError as err:
            applied.refused.append(f"{name}: {err}")
            continue
        applied.docs.append(doc)
        if doc["kind"] == "Pod" and status and status.get("podIP"):
            client.pod_ip(doc["metadata"]["namespace"], doc["metadata"]["name"],
                          status["podIP"])
    return applied


def delete(client: KubeClient, docs: Iterable[dict[str, Any]]) -> None:
    """Everything a case applied but its namespaces (a namespace never finishes terminating
    without the controller manager)."""
    for doc in reversed(list(docs)):
        if doc["kind"] != "Namespace":
            client.delete(doc)


def dump(docs: Iterable[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(docs))
