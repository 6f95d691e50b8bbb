"""Signing: a workload CSR into a certificate for the caller's identity, and the serving
certificate of :15012, as istiod's IstioCA (security/pkg/pki/ca) does.

- The validity is the requested one, the default (24 h) when the request gives none, never
  past the signing certificate; a request above the maximum (90 days by default, istiod's
  MAX_WORKLOAD_CERT_TTL) is refused (TTL_ERROR), as istiod refuses it.
- Every SAN the CSR asks for must be one of the caller's identities (istiod silently replaces
  them; pilotpy says no, naming both). The certificate carries the caller's identities.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pilotpy.ca.bundle import CaBundle

DEFAULT_WORKLOAD_TTL = datetime.timedelta(hours=24)
MAX_WORKLOAD_TTL = datetime.timedelta(days=90)
# Certificates start a little in the past: clocks of the CA and the workloads differ.
CLOCK_SKEW = datetime.timedelta(minutes=2)
SERVING_RSA_BITS = 2048

_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=True,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False)
_LEAF_EXTENDED_USAGE = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH])


class CaError(Exception):
    """A request the CA cannot sign. `kind` is istiod's error type (the label of
    citadel_server_csr_sign_err_count): CSR_ERROR, TTL_ERROR, CERT_GEN_ERROR, CA_NOT_READY."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class IdentityMismatch(Exception):
    """The CSR asks for a name the caller does not own."""


@dataclass(frozen=True)
class TtlPolicy:
    default: datetime.timedelta = DEFAULT_WORKLOAD_TTL
    maximum: datetime.timedelta = MAX_WORKLOAD_TTL

    def lifetime(self, requested_seconds: int) -> datetime.timedelta:
        if requested_seconds <= 0:
            return self.default
        requested = datetime.timedelta(seconds=requested_seconds)
        if requested > self.maximum:
            raise CaError("TTL_ERROR", f"requested TTL {_duration(requested)} is greater than "
                                       f"the max allowed TTL {_duration(self.maximum)}")
        return requested


def _duration(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60}m{rest % 60}s" if hours else f"{seconds}s"


def parse_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as err:
        raise CaError("CSR_ERROR", f"the CSR is not a PEM certificate request ({err})") from None
    if not csr.is_signature_valid:
        raise CaError("CSR_ERROR", "the CSR's signature does not verify with its own key")
    key = csr.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CaError("CSR_ERROR", f"the CSR holds a {type(key).__name__}; RSA or ECDSA needed")
    return csr


def requested_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """Every subject alternative name the CSR asks for, as text."""
    try:
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in names]


def check_requested_names(csr: x509.CertificateSigningRequest,
                          identities: Sequence[str]) -> None:
    foreign = [name for name in requested_names(csr) if name not in identities]
    if foreign:
        raise IdentityMismatch(f"the CSR asks for {', '.join(foreign)}, but the caller is "
                               f"{', '.join(identities) or 'nobody'}")


def _alt_name(name: str) -> x509.GeneralName:
    if "://" in name:
        return x509.UniformResourceIdentifier(name)
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class CertificateAuthority:
    def __init__(self, bundle: CaBundle, ttl: TtlPolicy | None = None) -> None:
        self.bundle = bundle
        self.ttl = ttl or TtlPolicy()

    def _certificate(self, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
                     names: Sequence[str], lifetime: datetime.timedelta,
                     now: datetime.datetime | None = None) -> x509.Certificate:
        bundle = self.bundle
        now = now or datetime.datetime.now(datetime.UTC)
        if now >= bundle.expires:
            raise CaError("CERT_GEN_ERROR",
                          f"the signing certificate expired at {bundle.expires.isoformat()}")
        not_after = min(now + lifetime, bundle.expires)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([])).issuer_name(bundle.cert.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - CLOCK_SKEW).not_valid_after(not_after)
                   .add_extension(_LEAF_KEY_USAGE, critical=True)
                   .add_extension(_LEAF_EXTENDED_USAGE, critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   # The subject is empty, so the SANs are critical (RFC 5280, SPIFFE).
                   .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]),
                                  critical=True))
        return builder.sign(bundle.key, hashes.SHA256())

    def sign(self, csr: x509.CertificateSigningRequest, identities: Sequence[str],
             requested_seconds: int) -> str:
        """The PEM certificate for `identities` with the CSR's public key. Raises CaError,
        IdentityMismatch."""
        if not identities:
            raise IdentityMismatch("the caller has no identity to certify")
        lifetime = self.ttl.lifetime(requested_seconds)
        check_requested_names(csr, identities)
        key = csr.public_key()
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)  # parse_csr
        try:
            cert = self._certificate(key, identities, lifetime)
        except ValueError as err:
            raise CaError("CERT_GEN_ERROR", f"cannot build the certificate: {err}") from None
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def response_chain(self, leaf_pem: str) -> list[str]:
        """CreateCertificate's cert_chain: the leaf, each certificate of cert-chain.pem, then
        the root bundle as one element (the last one is the root, as the API says)."""
        chain = [leaf_pem]
        for cert in x509.load_pem_x509_certificates(self.bundle.chain_pem) \
                if self.bundle.chain_pem.strip() else []:
            chain.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        chain.append(self.bundle.root_pem.decode())
        return chain

    def serving_certificate(self, dns_names: Sequence[str], lifetime: datetime.timedelta,
                            now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
        """(key PEM, certificate chain PEM) for a server: a new key of the CA key's family
        (ECDSA P-256 under an ECDSA CA, else RSA 2048, as istiod), signed for `dns_names`."""
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if isinstance(self.bundle.key, ec.EllipticCurvePrivateKey):
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=SERVING_RSA_BITS)
        cert = self._certificate(key.public_key(), dns_names, lifetime, now)
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.bundle.chain_pem
        if not self.bundle.chain_pem.strip() and self.bundle.cert not in self.bundle.roots:
            chain += self.bundle.cert_pem  # an intermediate signing cert with no cert-chain.pem
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return key_pem, chain
