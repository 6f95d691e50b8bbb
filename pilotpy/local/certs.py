"""A mesh client certificate issued by a running pilotpy's CA, as PEM files: what a proxy
presents on the TLS port to prove an identity (istioctl's `--cert-dir`, a local Envoy standing
in for pilot-agent's stream)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilotpy.ca.authority import CertificateAuthority

CERT_CHAIN = "cert-chain.pem"
KEY = "key.pem"
ROOT_CERT = "root-cert.pem"


def write_mesh_certificate(authority: CertificateAuthority, directory: Path, identity: str,
                           ttl_seconds: int = 3600) -> Path:
    """`cert-chain.pem`, `key.pem` (for `identity`, a SPIFFE URI) and `root-cert.pem` in
    `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(identity)]), critical=True)
           .sign(key, hashes.SHA256()))
    chain = authority.response_chain(authority.sign(csr, [identity], ttl_seconds))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CERT_CHAIN).write_text("".join(chain[:-1]))
    (directory / ROOT_CERT).write_text(chain[-1])
    (directory / KEY).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return directory
