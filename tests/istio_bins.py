"""Istio's own binaries the tests run as real peers and clients, built by hack/istio-bins.sh
(make istioctl / istio-bins / the test targets' dependencies) into the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pilotpy"
ISTIOCTL = CACHE / "istioctl"
PILOT_AGENT = CACHE / "pilot-agent"
PILOT_DISCOVERY = CACHE / "pilot-discovery"

# istioctl builds a Kubernetes client even with --xds-address; a kubeconfig whose server
# refuses connections keeps it off any real cluster (pass --revision to skip its lookup).
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {}}]
"""
