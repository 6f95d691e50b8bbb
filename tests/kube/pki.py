"""Certificates for a throwaway API server: the shared test CA (tests/tls_certs.py), the
serving cert, client certs, and the service-account signing key. Everything lives in the
test's temporary directory."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.tls_certs import CertPair, TestCA

API_SERVER_NAMES = ["127.0.0.1", "localhost", "kubernetes.default.svc"]


class Pki(TestCA):
    def issue_api_server(self, name: str, common_name: str) -> CertPair:
        return self.issue(name, API_SERVER_NAMES, common_name=common_name)

    def issue_client(self, name: str, common_name: str, *,
                     organizations: tuple[str, ...] = ()) -> CertPair:
        return self.issue(name, [], client=True, common_name=common_name,
                          organizations=organizations)

    def service_account_keys(self) -> CertPair:
        """(public key, private key) files for signing service-account tokens."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self.directory / "sa.pub"
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        private = self.directory / "sa.key"
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return CertPair(public, private)

