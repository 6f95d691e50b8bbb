"""An `istioctl --cert-dir` directory whose identity is issued by pilotpy's mesh CA: istioctl
presents cert-chain.pem/key.pem as its client certificate on :15012 and verifies the server
against root-cert.pem (no --insecure)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilotpy.ca.authority import CertificateAuthority

# istioctl's node metadata names this namespace and account (its --istioNamespace, "default").
ISTIOCTL_IDENTITY = "spiffe://cluster.local/ns/istio-system/sa/default"
ISTIOD_SAN = "istiod.istio-system.svc"


def write_cert_dir(authority: CertificateAuthority, directory: Path,
                   identity: str = ISTIOCTL_IDENTITY) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(identity)]), critical=True)
           .sign(key, hashes.SHA256()))
    chain = authority.response_chain(authority.sign(csr, [identity], 3600))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert-chain.pem").write_text("".join(chain[:-1]))
    (directory / "root-cert.pem").write_text(chain[-1])
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return directory
