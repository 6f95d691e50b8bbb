"""The cases of the differential tier: every golden case, the walkthrough configurations
(tests/diff/walkthroughs/<name>/case.yaml), and Istio's own samples, read from the pinned
istio.io/istio module (never copied here), with the workloads they need made by
tests/diff/workloads.py.

A case is YAML applied to the API server, the proxies connected to both control planes
(explicit ones, the ingress gateway, and sidecars of the Deployments it names), and
optionally a mesh config merged over the tier's base (tests/diff/harness.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pilotpy.local.bootstrap import agent_node_metadata
from pilotpy.proxy import AGENT_METADATA
from tests.diff.fetch import Identity
from tests.diff.workloads import Workload

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "testdata"
WALKTHROUGHS = Path(__file__).with_name("walkthroughs")
GATEWAY = WALKTHROUGHS / "common" / "ingressgateway.yaml"
# The version the pinned pilot-agent reports (istio-bins.sh builds it as 1.31-dev).
ISTIO_VERSION = "1.31.0"


@dataclass(frozen=True)
class ProxySpec:
    """One proxy identity: `label` names it in the report."""

    label: str
    node_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    # pilot-agent's bootstrap, which carries PROXY_CONFIG: mesh mTLS through `sds-grpc` (a
    # golden case's `agent: true`); istiod assumes it of every proxy.
    agent: bool = False

    def identity(self) -> Identity:
        metadata = agent_node_metadata(self.node_id, labels=self.labels,
                                       istio_version=ISTIO_VERSION)
        if self.agent:
            metadata[AGENT_METADATA] = {}
        workload = metadata["WORKLOAD_NAME"]
        return Identity(self.node_id, metadata, f"{workload}.{metadata['NAMESPACE']}")

    @classmethod
    def sidecar(cls, workload: Workload, agent: bool = False) -> ProxySpec:
        return cls(f"sidecar {workload.deployment}",
                   f"sidecar~{workload.ip}~{workload.pod}.{workload.namespace}~"
                   f"{workload.namespace}.svc.cluster.local", workload.labels, agent)


# The ingress gateway Pod of walkthroughs/common/ingressgateway.yaml.
ROUTER = ProxySpec("router", "router~10.244.0.10~istio-ingressgateway-0.istio-system~"
                             "istio-system.svc.cluster.local",
                   {"istio": "ingressgateway", "app": "istio-ingressgateway"})


@dataclass(frozen=True)
class Case:
    name: str
    paths: tuple[Path, ...]
    proxies: tuple[ProxySpec, ...] = ()
    # Deployments of the case whose Pods connect as sidecars (their Pods and EndpointSlices
    # are made from the manifests, in 10.244.<block>.0/24).
    sidecars: tuple[str, ...] = ()
    mesh: Mapping[str, Any] = field(default_factory=dict)
    block: int = 0
    # The golden cases include invalid objects on purpose; elsewhere a refusal is a bug of
    # the case.
    may_be_refused: bool = False
    # Mesh mutual TLS as Istio installs it (auto mTLS, PERMISSIVE unless the case's own
    # PeerAuthentication says otherwise) instead of the tier's plaintext base
    # (tests/diff/harness.py): the security cases.
    mtls: bool = False

    def __str__(self) -> str:
        return self.name


def _golden(directory: Path) -> Case:
    spec = yaml.safe_load((directory / "case.yaml").read_text(encoding="utf-8"))
    mesh = {}
    if spec.get("meshConfig"):
        mesh = yaml.safe_load((directory / spec["meshConfig"]).read_text(encoding="utf-8"))
    node_id = spec["nodeId"]
    # The proxyless gRPC cases (generator: grpc) connect as the Envoy sidecar of the same
    # pod: this tier's client subscribes as Envoy does (wildcards), and istiod's gRPC
    # generator answers named subscriptions only, so that generator is not compared here.
    proxy = ProxySpec(node_id.split("~", 1)[0], node_id, spec.get("labels") or {},
                      agent=bool(spec.get("agent")))
    return Case(f"golden/{directory.name}", (directory / "input",), (proxy,), mesh=mesh or {},
                may_be_refused=True, mtls=proxy.agent or _has_peer_authentication(directory))


def _has_peer_authentication(directory: Path) -> bool:
    return any(re.search(r"^kind: PeerAuthentication$", f.read_text(encoding="utf-8"), re.M)
               for f in (directory / "input").rglob("*.yaml"))


def _walkthrough(directory: Path, istio: Path, block: int) -> Case:
    spec = yaml.safe_load((directory / "case.yaml").read_text(encoding="utf-8"))
    paths = [(directory / p).resolve() for p in spec.get("files", [])]
    paths += [ROOT / p for p in spec.get("repoFiles", [])]
    paths += [istio / p for p in spec.get("istioFiles", [])]
    # `agent: true`: every proxy run by pilot-agent (injected Pods), under mesh mTLS.
    agent = bool(spec.get("agent"))
    router = replace(ROUTER, agent=agent)
    return Case(f"walkthrough/{directory.name}", tuple(paths),
                (router,) if spec.get("router") else (), tuple(spec.get("sidecars", [])),
                spec.get("meshConfig") or {}, block, mtls=agent)


# Bookinfo's traffic-management samples pilotpy translates (not the mutual-TLS
# DestinationRule nor the cert-manager Gateway: see the accepted differences).
BOOKINFO_SAMPLES = (
    "egress-rule-google-apis", "fault-injection-details-v1", "virtual-service-all-v1",
    "virtual-service-details-v2", "virtual-service-ratings-db", "virtual-service-ratings-mysql",
    "virtual-service-ratings-mysql-vm", "virtual-service-ratings-test-abort",
    "virtual-service-ratings-test-delay", "virtual-service-reviews-50-v3",
    "virtual-service-reviews-80-20", "virtual-service-reviews-90-10",
    "virtual-service-reviews-jason-v2-v3", "virtual-service-reviews-test-v2",
    "virtual-service-reviews-v2-v3", "virtual-service-reviews-v3",
)
# name -> (sample files, sidecars)
OTHER_SAMPLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "httpbin": (("httpbin/httpbin.yaml", "httpbin/httpbin-gateway.yaml"), ("httpbin",)),
    "helloworld": (("helloworld/helloworld.yaml", "helloworld/helloworld-gateway.yaml"),
                   ("helloworld-v1",)),
    "tcp-echo-all-v1": (("tcp-echo/tcp-echo-services.yaml", "tcp-echo/tcp-echo-all-v1.yaml"),
                        ("tcp-echo-v1",)),
    "tcp-echo-20-v2": (("tcp-echo/tcp-echo-services.yaml", "tcp-echo/tcp-echo-20-v2.yaml"),
                       ("tcp-echo-v1",)),
    "websockets": (("websockets/app.yaml", "websockets/route.yaml"), ("tornado",)),
}


def _samples(istio: Path, first_block: int) -> list[Case]:
    samples = istio / "samples"
    cases = []
    block = first_block
    bookinfo = (samples / "bookinfo/platform/kube/bookinfo.yaml",
                samples / "bookinfo/networking/bookinfo-gateway.yaml",
                samples / "bookinfo/networking/destination-rule-all.yaml")
    for name in BOOKINFO_SAMPLES:
        cases.append(Case(f"sample/bookinfo/{name}",
                          (GATEWAY, *bookinfo, samples / f"bookinfo/networking/{name}.yaml"),
                          (ROUTER,), ("productpage-v1", "reviews-v1"), block=block))
        block += 1
    for name, (files, sidecars) in OTHER_SAMPLES.items():
        cases.append(Case(f"sample/{name}", (GATEWAY, *(samples / f for f in files)),
                          (ROUTER,), sidecars, block=block))
        block += 1
    return cases


def golden_cases() -> list[Case]:
    return [_golden(d) for d in sorted(GOLDEN.iterdir())
            if (d / "case.yaml").exists()]


def all_cases(istio: Path) -> list[Case]:
    """`istio`: the pinned istio.io/istio module (tests/diff/planes.py istio_source)."""
    walkthroughs = [d for d in sorted(WALKTHROUGHS.iterdir()) if (d / "case.yaml").exists()]
    # Pod blocks: 1.. for walkthroughs, then samples; 0 holds the gateway.
    cases = [_walkthrough(d, istio, block) for block, d in enumerate(walkthroughs, start=1)]
    return golden_cases() + cases + _samples(istio, len(cases) + 1)
