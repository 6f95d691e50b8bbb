"""A throwaway CA and the certificates it signs, written to a test's temporary directory:
gateway serving certificates, TLS backends and clients for the TLS tests, and the kube tier's
API server and client certificates."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class TestCA:
    """`ca` is the CA certificate file; `issue` writes `<name>.crt` and `<name>.key`."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, common_name: str = "pilotpy-test-ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                      .public_key(self._key.public_key())
                      .serial_number(x509.random_serial_number())
                      .not_valid_before(now - datetime.timedelta(minutes=5))
                      .not_valid_after(now + datetime.timedelta(days=1))
                      .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                     critical=True)
                      .add_extension(x509.KeyUsage(
                          digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
                      .sign(self._key, hashes.SHA256()))
        self.ca = directory / "ca.crt"
        self.ca.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, dns_names: list[str], *, client: bool = False,
              common_name: str = "", organizations: tuple[str, ...] = ()) -> CertPair:
        """A certificate for `dns_names` (its SANs; the first is the common name unless one
        is given); `client` certificates are for client authentication only."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name or dns_names[0])]
        subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        builder = (x509.CertificateBuilder().subject_name(x509.Name(subject))
                   .issuer_name(self._cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(n) for n in dns_names]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair = CertPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return pair

    def crl(self, name: str = "ca") -> Path:
        """An empty certificate revocation list signed by the CA, as `<name>.crl`."""
        now = datetime.datetime.now(datetime.UTC)
        crl = (x509.CertificateRevocationListBuilder().issuer_name(self._cert.subject)
               .last_update(now).next_update(now + datetime.timedelta(days=1))
               .sign(self._key, hashes.SHA256()))
        path = self.directory / f"{name}.crl"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path
