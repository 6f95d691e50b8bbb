"""The CA's key material: the signing key and certificate, the chain from it up to the root,
and the root certificate(s) workloads trust (istiod's KeyCertBundle). Checked when loaded, so
a broken plug-in fails at start with the reason, not at the first CSR."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

SigningKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# istiod's self-signed root: RSA 2048 (CITADEL_SELF_SIGNED_CA_RSA_KEY_SIZE), ten years
# (CITADEL_SELF_SIGNED_CA_CERT_TTL), organization = trust domain.
ROOT_RSA_BITS = 2048
ROOT_TTL = datetime.timedelta(days=3650)
MAX_CHAIN_DEPTH = 8


class BundleError(ValueError):
    """Key material that cannot sign: the message names the file or key and the reason."""


@dataclass(frozen=True)
class CaBundle:
    key: SigningKey
    cert: x509.Certificate  # the signing certificate
    chain_pem: bytes  # cert-chain.pem: the signing certificate's chain (may be empty)
    root_pem: bytes  # root-cert.pem: what workloads trust
    origin: str  # where it came from, for logs

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def roots(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.root_pem)

    @property
    def expires(self) -> datetime.datetime:
        return self.cert.not_valid_after_utc


def load_bundle(cert_pem: bytes, key_pem: bytes, root_pem: bytes, chain_pem: bytes = b"", *,
                origin: str) -> CaBundle:
    """Parse and check: the key is the certificate's, the certificate may sign (a CA), and it
    chains to the root through `chain_pem`."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as err:
        raise BundleError(f"{origin}: ca-cert.pem is not a PEM certificate ({err})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise BundleError(f"{origin}: ca-key.pem is not an unencrypted PEM key ({err})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BundleError(f"{origin}: ca-key.pem is a {type(key).__name__}; RSA or ECDSA needed")
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
        raise BundleError(f"{origin}: ca-key.pem is not the key of ca-cert.pem")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise BundleError(f"{origin}: ca-cert.pem is not a CA certificate (BasicConstraints "
                          "CA:TRUE missing), so it cannot sign workload certificates")
    try:
        roots = x509.load_pem_x509_certificates(root_pem)
        chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem.strip() else []
    except ValueError as err:
        raise BundleError(f"{origin}: root-cert.pem or cert-chain.pem is not PEM ({err})") from None
    _check_chains_to_root(cert, chain, roots, origin)
    return CaBundle(key, cert, chain_pem, root_pem, origin)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_chains_to_root(cert: x509.Certificate, chain: list[x509.Certificate],
                          roots: list[x509.Certificate], origin: str) -> None:
    current = cert
    for _ in range(MAX_CHAIN_DEPTH):
        if current in roots:
            return
        if any(_issued_by(current, root) for root in roots):
            return
        issuer = next((c for c in chain if c != current and _issued_by(current, c)), None)
        if issuer is None:
            break
        current = issuer
    raise BundleError(f"{origin}: ca-cert.pem does not chain to root-cert.pem "
                      f"(stuck at {current.subject.rfc4514_string() or 'an empty subject'})")


def self_signed_root(trust_domain: str, *, now: datetime.datetime | None = None,
                     ttl: datetime.timedelta = ROOT_TTL) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new self-signed root, as istiod makes its own."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=ROOT_RSA_BITS)
    now = now or datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    public = key.public_key()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + ttl)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def generated_bundle(trust_domain: str, origin: str) -> CaBundle:
    cert_pem, key_pem = self_signed_root(trust_domain)
    return load_bundle(cert_pem, key_pem, cert_pem, origin=origin)
