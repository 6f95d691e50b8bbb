"""An `istioctl --cert-dir` directory whose identity is issued by pilotpy's mesh CA: istioctl
presents cert-chain.pem/key.pem as its client certificate on :15012 and verifies the server
against root-cert.pem (no --insecure)."""

from __future__ import annotations

from pathlib import Path

from pilotpy.ca.authority import CertificateAuthority
from pilotpy.local.certs import write_mesh_certificate

# istioctl's node metadata names this namespace and account (its --istioNamespace, "default").
ISTIOCTL_IDENTITY = "spiffe://cluster.local/ns/istio-system/sa/default"
ISTIOD_SAN = "istiod.istio-system.svc"


def write_cert_dir(authority: CertificateAuthority, directory: Path,
                   identity: str = ISTIOCTL_IDENTITY) -> Path:
    return write_mesh_certificate(authority, directory, identity)
