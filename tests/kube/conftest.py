"""The kube tier: one etcd + kube-apiserver per session, CRDs from manifests/ installed (and
stand-ins for the Gateway API's, which pilotpy reads to report as not enforced)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.kube.cluster import Cluster
from tests.kube.support import MANIFESTS, KubeMesh, install_crds


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-kube-"))
    cluster = Cluster(workdir)
    cluster.start()
    try:
        install_crds(cluster.admin, MANIFESTS / "crds.yaml")
        install_crds(cluster.admin, Path(__file__).with_name("gateway-api-crds.yaml"))
        for namespace in ("istio-system", "default"):
            cluster.admin.ensure_namespace(namespace)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def mesh(cluster: Cluster, tmp_path: Path) -> AsyncIterator[KubeMesh]:
    """pilotpy watching the API server through a test-owned TCP proxy, with W1's registry
    written to the API and a real Envoy gateway attached once `start()` is awaited."""
    mesh = KubeMesh(cluster, tmp_path)
    try:
        yield mesh
    finally:
        await mesh.stop()
