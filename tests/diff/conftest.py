"""The differential tier: one etcd + kube-apiserver, Istio's CRDs, istiod and pilotpy for the
whole session; each case applies its objects and deletes them again. Both control planes
listen on the address of a bridge the tier owns, so that real Envoys in network namespaces
(tests/diff/test_envoys.py) reach them as pods reach istiod."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.diff.harness import SideBySide
from tests.diff.planes import istio_crds
from tests.kube.cluster import Cluster
from tests.kube.support import install_crds
from tests.mesh.netns import Network


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    # A skip would hide that nothing was compared.
    if os.geteuid() != 0:
        pytest.fail("the diff tier needs root (a bridge and network namespaces for its Envoys)")
    with Network() as network:
        yield network
    leftovers = network.leftovers()
    assert not leftovers, f"the diff tier left {leftovers}"


@pytest.fixture(scope="session")
def side_by_side(network: Network) -> Iterator[SideBySide]:
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-diff-"))
    cluster = Cluster(workdir)
    cluster.start()
    planes: SideBySide | None = None
    try:
        install_crds(cluster.admin, istio_crds())
        for namespace in ("istio-system", "default"):
            cluster.admin.ensure_namespace(namespace)
        planes = SideBySide(cluster, workdir, host=network.gateway)
        planes.start()
        yield planes
    finally:
        if planes is not None:
            planes.stop()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
