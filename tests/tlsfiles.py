"""A test CA and the certificate files TLS origination reads: generated at test time with
`cryptography`, never checked in. The layout follows Istio's legacy mounted certificates
(`/etc/certs/root-cert.pem`, `cert-chain.pem`, `key.pem`) plus a server certificate and a CRL."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_CERT = "root-cert.pem"
CLIENT_CERT = "cert-chain.pem"
CLIENT_KEY = "key.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"
CRL = "root.crl"
VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class TlsFiles:
    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pilotpy tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, common_name: str, *,
          dns_names: Sequence[str], usage: x509.ObjectIdentifier, now: datetime.datetime,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_tls_files(directory: Path, server_names: Sequence[str] = ("localhost",),
                    ca_name: str = "pilotpy test CA") -> TlsFiles:
    """A CA, a server certificate for `server_names`, a client certificate, an empty CRL;
    readable by everyone (a sidecar runs as uid 1337), keys included: test material only."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    name = _name(ca_name)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    hosts = [n for n in server_names if not _is_ip(n)]
    server, server_key = _leaf(ca_key, name, server_names[0], dns_names=hosts,
                               usage=ExtendedKeyUsageOID.SERVER_AUTH, now=now)
    client, client_key = _leaf(ca_key, name, "sleep.default", dns_names=[],
                               usage=ExtendedKeyUsageOID.CLIENT_AUTH, now=now)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
           .next_update(now + VALIDITY).sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = {ROOT_CERT: ca.public_bytes(pem), SERVER_CERT: server.public_bytes(pem),
             SERVER_KEY: _pem_key(server_key), CLIENT_CERT: client.public_bytes(pem),
             CLIENT_KEY: _pem_key(client_key), CRL: crl.public_bytes(pem)}
    for file_name, content in files.items():
        path = directory / file_name
        path.write_bytes(content)
        os.chmod(path, 0o644)
    return TlsFiles(directory)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
