"""The TLS ADS port's serving certificate: from files, or self-signed at start."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from pilotpy.server.certs import serving_key_and_cert


def test_self_signed_names_istiod_and_loopback() -> None:
    key, cert = serving_key_and_cert(None, None)
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")
    parsed = x509.load_pem_x509_certificate(cert)
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "istiod.istio-system.svc" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)


def test_files_are_used_when_both_are_given(tmp_path: Path) -> None:
    key, cert = serving_key_and_cert(None, None)
    (tmp_path / "tls.key").write_bytes(key)
    (tmp_path / "tls.crt").write_bytes(cert)
    assert serving_key_and_cert(tmp_path / "tls.crt", tmp_path / "tls.key") == (key, cert)
    with pytest.raises(ValueError, match="go together"):
        serving_key_and_cert(tmp_path / "tls.crt", None)
