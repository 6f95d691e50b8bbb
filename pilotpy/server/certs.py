"""The serving certificate of the TLS ADS port (istiod's 15012): read from files, or a
self-signed one generated at start. Enough for istioctl, which skips verification; the CA and
trust distribution istio/proxyv2 needs are separate work."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# istiod's serving certificate carries this SAN; pilot-agent checks it (ISTIOD_SAN).
DEFAULT_DNS_NAMES = ("istiod.istio-system.svc", "istiod", "localhost")
VALIDITY = datetime.timedelta(days=365)


def self_signed(dns_names: tuple[str, ...] = DEFAULT_DNS_NAMES,
                ip_addresses: tuple[str, ...] = ("127.0.0.1", "::1")) -> tuple[bytes, bytes]:
    """A fresh P-256 key and a self-signed certificate for it, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pilotpy"),
                      x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def serving_key_and_cert(cert_file: Path | None, key_file: Path | None) -> tuple[bytes, bytes]:
    """(key PEM, certificate chain PEM) from the files when both are given, else self-signed."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("--tls-cert-file and --tls-key-file go together")
    if cert_file is not None and key_file is not None:
        return key_file.read_bytes(), cert_file.read_bytes()
    return self_signed()
