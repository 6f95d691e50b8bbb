"""istiod and pilotpy side by side on one API server, and one case run through both: apply its
objects, wait until both control planes serve them, fetch what each sends every proxy of the
case, normalise, compare, and delete the objects again.

The tier's base environment is the same for every case: Istio's own CRDs, namespaces
istio-system and default, and the mesh ConfigMap `istio` (read by both). Plain cases compare
plaintext: `enableAutoMtls: false` in the mesh config (no `tlsMode-istio` transport socket
matches on clusters) and a mesh-wide PeerAuthentication `DISABLE` (no mTLS filter chains on
`virtualInbound`). A security case (`Case.mtls`: its proxies run by pilot-agent, or its own
PeerAuthentications) runs with Istio's defaults instead, auto mTLS on and that policy
removed, and against a second istiod with all its defaults (metadata exchange on, which
decides istiod's mTLS ALPNs, as for Istio's own proxy)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilotpy.xds.types import SHORT_NAMES
from tests.diff import objects
from tests.diff.cases import Case, ProxySpec
from tests.diff.compare import Difference, differences
from tests.diff.fetch import Resources, fetch
from tests.diff.normalize import gateway_route_names, normalize, rename_gateway_routes
from tests.diff.planes import ControlPlane, Istiod, Pilotpy
from tests.diff.workloads import running
from tests.kube.cluster import Cluster

BASE_MESH: Mapping[str, Any] = {"enableAutoMtls": False}
PEER_AUTHENTICATION_DISABLE = {
    "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
    "metadata": {"name": "default", "namespace": "istio-system"},
    "spec": {"mtls": {"mode": "DISABLE"}},
}
# A security case (Case.mtls) runs with Istio's defaults instead: auto mTLS on and no
# mesh-wide policy, so its own PeerAuthentications decide.
MTLS_MESH: Mapping[str, Any] = {"enableAutoMtls": True}
SYNC_TIMEOUT = 20.0
# Two fetches this far apart that agree mean the control plane has finished pushing the
# change (istiod debounces 100 ms, pilotpy too).
SETTLE_INTERVAL = 0.5
_ISTIO_GROUPS = ("networking.istio.io/", "security.istio.io/")


@dataclass
class CaseResult:
    case: Case
    proxies: list[str]
    refused: list[str]
    unreadable: list[str]
    differences: list[Difference]
    # proxy label -> (istiod's normalised resources, pilotpy's)
    resources: dict[str, tuple[Resources, Resources]] = field(default_factory=dict)

    def trees(self, difference: Difference) -> tuple[Any, Any]:
        """The whole resource a difference is in, as istiod and pilotpy sent it (None where
        one of them sent none)."""
        theirs, ours = self.resources[difference.proxy]
        type_url = _TYPE_URLS[difference.type]
        return (theirs.get(type_url, {}).get(difference.resource),
                ours.get(type_url, {}).get(difference.resource))


_TYPE_URLS = {short: type_url for type_url, short in SHORT_NAMES.items()}


def istio_config_keys(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
            for d in docs if str(d.get("apiVersion", "")).startswith(_ISTIO_GROUPS)}


_BASE_POLICY = istio_config_keys([PEER_AUTHENTICATION_DISABLE])


class SideBySide:
    def __init__(self, cluster: Cluster, workdir: Path, host: str = "127.0.0.1") -> None:
        self.cluster = cluster
        self.admin = cluster.admin
        kubeconfig = cluster.kubeconfig(workdir / "kubeconfig")
        self.istiod = Istiod(workdir=workdir / "istiod", kubeconfig=kubeconfig, host=host)
        # The security cases' istiod: all its defaults, as for pilot-agent's Istio proxy
        # (metadata exchange on, which decides its mTLS ALPNs); the istio.* filters this
        # adds are normalised away.
        self.istiod_agent = Istiod(name="istiod-agent", workdir=workdir / "istiod-agent",
                                   kubeconfig=kubeconfig, host=host, stock_envoy=False)
        self.pilotpy = Pilotpy(workdir=workdir / "pilotpy", kubeconfig=kubeconfig, host=host)
        self.mesh: Mapping[str, Any] = BASE_MESH

    @property
    def planes(self) -> tuple[ControlPlane, ...]:
        return self.istiod, self.istiod_agent, self.pilotpy

    def istiod_for(self, case: Case) -> Istiod:
        return self.istiod_agent if case.mtls else self.istiod

    def start(self) -> None:
        self.set_mesh(BASE_MESH)
        self.admin.apply(PEER_AUTHENTICATION_DISABLE)
        try:
            for plane in self.planes:
                plane.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for plane in self.planes:
            plane.stop()

    def set_mesh(self, mesh: Mapping[str, Any]) -> None:
        self.mesh = mesh
        self.admin.apply({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "istio", "namespace": "istio-system"},
                          "data": {"mesh": yaml.safe_dump(dict(mesh))}})

    async def wait_config(self, keys: set[tuple[str, str, str]], present: bool) -> None:
        """Until both control planes serve (or no longer serve) these Istio objects; bounded,
        and not an error when it runs out (an object a control plane rejects never shows)."""
        deadline = time.monotonic() + SYNC_TIMEOUT / 2
        while time.monotonic() < deadline:
            served = [await asyncio.to_thread(p.config_keys) for p in self.planes]
            if all((keys <= s) if present else not (keys & s) for s in served):
                return
            await asyncio.sleep(0.1)

    async def settled(self, proxies: list[ProxySpec], istiod: Istiod | None = None
                       ) -> dict[str, tuple[Resources, Resources]]:
        """What both send every proxy, once two fetches SETTLE_INTERVAL apart agree
        (`istiod`: the plain cases' one unless given)."""
        istiod = istiod or self.istiod
        previous: dict[str, tuple[Resources, Resources]] | None = None
        deadline = time.monotonic() + SYNC_TIMEOUT
        while True:
            current = {}
            for proxy in proxies:
                identity = proxy.identity()
                current[proxy.label] = (await fetch(istiod.target, identity),
                                        await fetch(self.pilotpy.target, identity))
            if current == previous or time.monotonic() > deadline:
                return current
            previous = current
            await asyncio.sleep(SETTLE_INTERVAL)

    def check_running(self) -> None:
        """A control plane that exited fails every later case: say which, with its log."""
        for plane in self.planes:
            if plane.process is not None and plane.process.poll() is not None:
                raise RuntimeError(f"{plane.name} exited with {plane.process.returncode}:\n"
                                   f"{plane.log_tail()}")

    async def run(self, case: Case) -> CaseResult:
        self.check_running()
        docs, unreadable = objects.load(case.paths)
        proxies = list(case.proxies)
        if case.block:
            made, workloads = running(docs, case.block, injected=case.mtls)
            docs += made
            by_deployment = {w.deployment: w for w in workloads}
            missing = [name for name in case.sidecars if name not in by_deployment]
            if missing:
                raise ValueError(f"{case}: no Deployment {missing} in its manifests")
            proxies += [ProxySpec.sidecar(by_deployment[name], agent=case.mtls)
                        for name in case.sidecars]
        if case.mtls:
            # Istio's own defaults: auto mTLS, and no mesh-wide policy (PERMISSIVE).
            await asyncio.to_thread(self.admin.delete, PEER_AUTHENTICATION_DISABLE)
            await self.wait_config(_BASE_POLICY, present=False)
        if case.mesh or case.mtls:
            self.set_mesh({**BASE_MESH, **MTLS_MESH, **case.mesh} if case.mtls
                          else {**BASE_MESH, **case.mesh})
        registry = [d for d in docs if not str(d.get("apiVersion", "")).startswith(
            _ISTIO_GROUPS)]
        config = [d for d in docs if d not in registry]
        applied = await asyncio.to_thread(objects.apply, self.admin, registry)
        applied_config = await asyncio.to_thread(objects.apply, self.admin, config)
        applied.docs += applied_config.docs
        applied.refused += applied_config.refused
        try:
            await self.wait_config(istio_config_keys(applied.docs), present=True)
            fetched = await self.settled(proxies, self.istiod_for(case))
        finally:
            await asyncio.to_thread(objects.delete, self.admin, applied.docs)
            if case.mesh or case.mtls:
                self.set_mesh(BASE_MESH)
            await self.wait_config(istio_config_keys(applied.docs), present=False)
            if case.mtls or _BASE_POLICY & istio_config_keys(applied.docs):
                # The case took the tier's mesh-wide policy away (or replaced it and took it
                # away with its objects): every later case must see it again.
                await asyncio.to_thread(self.admin.apply, PEER_AUTHENTICATION_DISABLE)
                await self.wait_config(_BASE_POLICY, present=True)
        result = CaseResult(case, [p.label for p in proxies], applied.refused, unreadable, [])
        for label, (theirs, ours) in fetched.items():
            theirs = normalize(theirs, istiod=True)
            ours = normalize(ours, istiod=False)
            theirs = rename_gateway_routes(theirs, gateway_route_names(theirs, ours))
            result.resources[label] = (theirs, ours)
            result.differences += differences(case.name, label, theirs, ours)
        return result
