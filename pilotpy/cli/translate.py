"""`pilotpy translate`: what pilotpy would send one proxy, as an Envoy-config-dump-like JSON
object, with no server. Users diff it in CI, so its shape and order are stable.

The pieces (reading files into a push context, a proxy from a node id, one proxy's messages)
are shared by `pilotpy diff` and `pilotpy explain`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from pilotpy.analysis.unenforced import unenforced
from pilotpy.local.bootstrap import agent_node_metadata
from pilotpy.mesh import MESH_CONFIG_KIND
from pilotpy.problems import Problem, ProblemLog
from pilotpy.proxy import AGENT_METADATA, NodeIdError, Proxy, ProxyView, parse_proxy, view_proxy
from pilotpy.push import Objects, PushContext, build_push_context
from pilotpy.server.controlplane import load_mesh_config
from pilotpy.server.settings import Settings
from pilotpy.sources.files import FileSource
from pilotpy.store import Store
from pilotpy.translate.endpoints import eds_cluster_names
from pilotpy.translate.generate import endpoints_for, generate
from pilotpy.wire.protojson import message_to_json as to_json

RESOURCE_TYPES = ("listeners", "routes", "clusters", "endpoints")


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """Objects read from files, their push context, and the problems found reading them."""

    objects: Objects
    push: PushContext
    read_problems: tuple[Problem, ...] = ()

    def problems(self, translation: tuple[Problem, ...] = ()) -> list[Problem]:
        """Every problem, in the order `analyze` prints them: the input's, Ingress
        conversion's, `translation`'s (one proxy's), then kinds read but not enforced."""
        # What translation for this proxy reported already is not repeated by the config-wide
        # report (a CUSTOM policy's missing provider).
        seen = {(p.ref, p.field) for p in translation}
        return [*self.read_problems, *self.push.ingress.problems,
                *self.push.peer_authn.problems, *translation,
                *(p for p in unenforced(self.objects, self.push.mesh)
                  if (p.ref, p.field) not in seen)]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """One proxy's Envoy messages, as `generate` and `endpoints_for` make them."""

    view: ProxyView
    listeners: list[listener_pb2.Listener]
    routes: list[route_pb2.RouteConfiguration]
    clusters: list[cluster_pb2.Cluster]
    endpoints: list[endpoint_pb2.ClusterLoadAssignment]
    problems: tuple[Problem, ...]
    secrets: list[secret_pb2.Secret]

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {"listeners": [to_json(m) for m in self.listeners],
                "routes": [to_json(m) for m in self.routes],
                "clusters": [to_json(m) for m in self.clusters],
                "endpoints": [to_json(m) for m in self.endpoints]}


def check_paths(paths: list[Path], flag: str = "--config") -> None:
    for path in paths:
        if not path.exists():
            raise SystemExit(f"{flag} {path}: no such file or directory")


def read_objects(paths: list[Path], *, default_namespace: str = "default"
                 ) -> tuple[Objects, tuple[Problem, ...]]:
    """Every object in the files, as the store would hold them, and the problems reading
    them (invalid objects are left out)."""
    read = ProblemLog()
    store = Store(clock=time.monotonic)
    FileSource(paths, store, read, default_namespace=default_namespace).load()
    return store.snapshot().objects, tuple(read.problems())


def load_objects(objects: Objects, read_problems: tuple[Problem, ...] = (), *,
                 mesh_config: Path | None = None) -> LoadedConfig:
    """The push context of `objects`, under the mesh config they carry (a cluster's `istio`
    ConfigMap), else `mesh_config`'s, else istiod's defaults."""
    published = list(objects.get(MESH_CONFIG_KIND, {}).values())
    mesh = published[0] if published else load_mesh_config(Settings(mesh_config=mesh_config))
    push, _ = build_push_context(objects, mesh, 1)
    return LoadedConfig(objects, push, read_problems)


def load_config(paths: list[Path], *, mesh_config: Path | None = None,
                default_namespace: str = "default") -> LoadedConfig:
    check_paths(paths)
    objects, problems = read_objects(paths, default_namespace=default_namespace)
    return load_objects(objects, problems, mesh_config=mesh_config)


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


def proxy_of(node_id: str, labels: Mapping[str, str], generator: str = "", *,
             agent: bool = False, verified_identity: str = "") -> Proxy:
    """The proxy a node id and labels describe, with the metadata pilot-agent would send
    (node_metadata); `generator` is the node's GENERATOR metadata (`grpc`: a proxyless gRPC
    client); `agent`: the proxy runs under pilot-agent (its node metadata has PROXY_CONFIG);
    `verified_identity`: the SPIFFE id its stream proves."""
    metadata = node_metadata(node_id, labels, generator)
    if agent:
        metadata[AGENT_METADATA] = {}
    try:
        return parse_proxy(node_id, metadata, verified_identity=verified_identity)
    except NodeIdError as err:
        raise SystemExit(f"--node-id: {err}") from err


def proxy_config(push: PushContext, proxy: Proxy) -> ProxyConfig:
    view = view_proxy(proxy, push)
    generated = generate(push, view)
    # Named-only resources (proxyless gRPC) after the rest: what a client gets by name.
    listeners = [*generated.listeners, *generated.named_only_listeners]
    clusters = [*generated.clusters, *generated.named_only_clusters]
    endpoints = endpoints_for(push, view, eds_cluster_names(clusters))
    return ProxyConfig(view, listeners, generated.routes, clusters, endpoints,
                       generated.problems, generated.secrets)


def translate(paths: list[Path], *, node_id: str, labels: Mapping[str, str],
              mesh_config: Path | None = None, default_namespace: str = "default",
              delta: bool = False, generator: str = "", agent: bool = False,
              verified_identity: str = "",
              ) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """The four resource lists for `node_id`, and the problems found in the input (see
    proxy_of for `generator`, `agent` and `verified_identity`; a verified identity adds the
    Secrets the proxy would get, `secrets`, private keys redacted)."""
    del delta  # the same resources go over SotW and Delta
    check_paths(paths)
    proxy = proxy_of(node_id, labels, generator, agent=agent,
                     verified_identity=verified_identity)
    loaded = load_config(paths, mesh_config=mesh_config, default_namespace=default_namespace)
    config = proxy_config(loaded.push, proxy)
    output = config.to_json()
    if verified_identity:
        output["secrets"] = [_redacted(to_json(m)) for m in config.secrets]
    return output, loaded.problems(config.problems)


REDACTED = "[redacted]"


def _redacted(secret: dict[str, Any]) -> dict[str, Any]:
    """A Secret with its private key replaced: translate's output lands in CI logs."""
    certificate = secret.get("tlsCertificate")
    if isinstance(certificate, dict) and "privateKey" in certificate:
        certificate["privateKey"] = {"inlineString": REDACTED}
    return secret
