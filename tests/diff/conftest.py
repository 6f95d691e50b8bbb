"""The differential tier: one etcd + kube-apiserver, Istio's CRDs, istiod and pilotpy for the
whole session; each case applies its objects and deletes them again."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.diff.harness import SideBySide
from tests.diff.planes import istio_crds
from tests.kube.cluster import Cluster
from tests.kube.support import install_crds


@pytest.fixture(scope="session")
def side_by_side() -> Iterator[SideBySide]:
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-diff-"))
    cluster = Cluster(workdir)
    cluster.start()
    planes: SideBySide | None = None
    try:
        install_crds(cluster.admin, istio_crds())
        for namespace in ("istio-system", "default"):
            cluster.admin.ensure_namespace(namespace)
        planes = SideBySide(cluster, workdir)
        planes.start()
        yield planes
    finally:
        if planes is not None:
            planes.stop()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
