"""Whether injected pods get a native sidecar (istio-proxy as an init container that keeps
running), as istiod decides (DetectNativeSidecar, ENABLE_NATIVE_SIDECARS): "true" or "false"
outright; "auto" (the default) when the pod's node, or every node when the pod has none yet,
runs a kubelet of Kubernetes 1.33 or later, where native sidecars are stable. Without the
Kubernetes API, "auto" means no."""

from __future__ import annotations

import logging
import re
from typing import Any

from pilotpy.sources.kube.kinds import WatchedKind

log = logging.getLogger("pilotpy.inject")
NODES = WatchedKind("Node", "", ("v1",), "nodes", namespaced=False)
MINIMUM_MINOR = 33
MODES = ("auto", "true", "false")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def supports_native(kubelet_version: str) -> bool:
    match = _VERSION.match(kubelet_version)
    if match is None:
        log.warning("cannot read the kubelet version %r: no native sidecars", kubelet_version)
        return False
    return int(match.group(1)) > 1 or int(match.group(2)) >= MINIMUM_MINOR


class NativeSidecars:
    """The decision, and an informer sink keeping each node's kubelet version."""

    def __init__(self, mode: str, *, watching: bool) -> None:
        if mode not in MODES:
            raise ValueError(f"native sidecars: {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.watching = watching and mode == "auto"
        self.synced = False
        self.kubelets: dict[str, str] = {}

    def decide(self, node_name: str) -> bool:
        if self.mode != "auto":
            return self.mode == "true"
        if not self.watching or not self.synced:
            return False  # nothing known about the nodes: the layout every cluster runs
        if node_name and node_name in self.kubelets:
            return supports_native(self.kubelets[node_name])
        return all(supports_native(v) for v in self.kubelets.values())

    @staticmethod
    def _entry(item: dict[str, Any]) -> tuple[str, str]:
        name = str((item.get("metadata") or {}).get("name", ""))
        info = ((item.get("status") or {}).get("nodeInfo") or {})
        return name, str(info.get("kubeletVersion", ""))

    def replace(self, items: list[dict[str, Any]]) -> None:
        self.kubelets = dict(self._entry(i) for i in items)
        self.synced = True

    def upsert(self, item: dict[str, Any]) -> None:
        name, version = self._entry(item)
        self.kubelets[name] = version

    def delete(self, item: dict[str, Any]) -> None:
        self.kubelets.pop(self._entry(item)[0], None)
