"""`pilotpy translate`: what pilotpy would send one proxy, as an Envoy-config-dump-like JSON
object, with no server. Users diff it in CI, so its shape and order are stable."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pilotpy.analysis.unenforced import unenforced
from pilotpy.local.bootstrap import agent_node_metadata
from pilotpy.problems import Problem, ProblemLog
from pilotpy.proxy import AGENT_METADATA, NodeIdError, parse_proxy, view_proxy
from pilotpy.push import build_push_context
from pilotpy.server.controlplane import load_mesh_config
from pilotpy.server.settings import Settings
from pilotpy.sources.files import FileSource
from pilotpy.store import Store
from pilotpy.translate.endpoints import eds_cluster_names
from pilotpy.translate.generate import endpoints_for, generate
from pilotpy.wire.protojson import message_to_json as to_json


def node_metadata(node_id: str, labels: Mapping[str, str], generator: str = ""
                  ) -> dict[str, Any]:
    """What pilot-agent would send for this node and labels (its static listener ports
    included), and the GENERATOR; an id pilot-agent could not have sent gets its labels
    alone, and parse_proxy reports it."""
    try:
        metadata: dict[str, Any] = agent_node_metadata(node_id, labels=labels)
    except ValueError:
        metadata = {"LABELS": dict(labels)} if labels else {}
    if generator:
        metadata["GENERATOR"] = generator
    return metadata


def translate(paths: list[Path], *, node_id: str, labels: Mapping[str, str],
              mesh_config: Path | None = None, default_namespace: str = "default",
              delta: bool = False, generator: str = "", agent: bool = False,
              verified_identity: str = "",
              ) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """The four resource lists for `node_id`, and the problems found in the input.
    `generator` is the node's GENERATOR metadata (`grpc`: a proxyless gRPC client); `agent`:
    the proxy runs under pilot-agent (its node metadata has PROXY_CONFIG);
    `verified_identity`: the SPIFFE id its stream proves, which adds the Secrets it would get
    (`secrets`, private keys redacted)."""
    del delta  # the same resources go over SotW and Delta
    for path in paths:
        if not path.exists():
            raise SystemExit(f"--config {path}: no such file or directory")
    metadata = node_metadata(node_id, labels, generator)
    if agent:
        metadata[AGENT_METADATA] = {}
    try:
        proxy = parse_proxy(node_id, metadata, verified_identity=verified_identity)
    except NodeIdError as err:
        raise SystemExit(f"--node-id: {err}") from err
    read = ProblemLog()
    store = Store(clock=time.monotonic)
    FileSource(paths, store, read, default_namespace=default_namespace).load()
    mesh = load_mesh_config(Settings(mesh_config=mesh_config))
    objects = store.snapshot().objects
    push, _ = build_push_context(objects, mesh, 1)
    view = view_proxy(proxy, push)
    generated = generate(push, view)
    # Named-only resources (proxyless gRPC) after the rest: what a client gets by name.
    listeners = [*generated.listeners, *generated.named_only_listeners]
    clusters = [*generated.clusters, *generated.named_only_clusters]
    endpoints = endpoints_for(push, view, eds_cluster_names(clusters))
    # What translation for this proxy reported already is not repeated by the config-wide
    # report (a CUSTOM policy's missing provider).
    seen = {(p.ref, p.field) for p in generated.problems}
    problems = [*read.problems(), *push.ingress.problems, *push.peer_authn.problems,
                *generated.problems,
                *(p for p in unenforced(objects, mesh) if (p.ref, p.field) not in seen)]
    output = {
        "listeners": [to_json(m) for m in listeners],
        "routes": [to_json(m) for m in generated.routes],
        "clusters": [to_json(m) for m in clusters],
        "endpoints": [to_json(m) for m in endpoints],
    }
    if verified_identity:
        output["secrets"] = [_redacted(to_json(m)) for m in generated.secrets]
    return output, problems


REDACTED = "[redacted]"


def _redacted(secret: dict[str, Any]) -> dict[str, Any]:
    """A Secret with its private key replaced: translate's output lands in CI logs."""
    certificate = secret.get("tlsCertificate")
    if isinstance(certificate, dict) and "privateKey" in certificate:
        certificate["privateKey"] = {"inlineString": REDACTED}
    return secret
