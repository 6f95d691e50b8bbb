"""The mesh CA without a server: key material checks, where it comes from, signing rules."""

from __future__ import annotations

import base64
import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pilotpy.ca.authority import (
    CaError,
    CertificateAuthority,
    IdentityMismatch,
    TtlPolicy,
    parse_csr,
)
from pilotpy.ca.bundle import BundleError, generated_bundle, load_bundle, self_signed_root
from pilotpy.ca.identity import parse_spiffe, service_account_subject
from pilotpy.ca.keysource import bundle_from_cluster, bundle_from_directory

ROOT = Path(__file__).resolve().parents[2]
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"


def csr(*names: str) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_the_checked_in_proto_code_is_what_protos_compiles_to(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "hack" / "protogen.py"), str(tmp_path)],
                   check=True)
    for name in ("ca_pb2.py", "ca_pb2.pyi"):
        assert (tmp_path / name).read_text() == (ROOT / "pilotpy" / "ca" / name).read_text(), \
            f"pilotpy/ca/{name} is stale: run `make protos`"


def test_spiffe_ids_and_service_account_subjects() -> None:
    parsed = parse_spiffe(SLEEP)
    assert parsed is not None and (parsed.namespace, parsed.service_account) == (
        "default", "sleep")
    assert parse_spiffe("spiffe://cluster.local/ns/default") is None
    assert parse_spiffe("https://cluster.local/ns/a/sa/b") is None
    assert service_account_subject("system:serviceaccount:ns:sa") == ("ns", "sa")
    assert service_account_subject("system:node:x") is None


def test_signed_certificate_is_the_callers_identity_under_the_root() -> None:
    bundle = generated_bundle("cluster.local", "test")
    authority = CertificateAuthority(bundle)
    leaf = x509.load_pem_x509_certificate(authority.sign(csr(SLEEP), [SLEEP], 0).encode())
    leaf.verify_directly_issued_by(bundle.cert)
    assert leaf.subject == x509.Name([])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sans.critical
    assert sans.value.get_values_for_type(x509.UniformResourceIdentifier) == [SLEEP]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == datetime.timedelta(hours=24, minutes=2)  # default + clock skew
    chain = authority.response_chain(authority.sign(csr(), [SLEEP], 60))
    assert len(chain) == 2 and chain[-1].encode() == bundle.root_pem


def test_csr_asking_for_another_identity_is_refused_naming_both() -> None:
    authority = CertificateAuthority(generated_bundle("cluster.local", "test"))
    other = "spiffe://cluster.local/ns/default/sa/httpbin"
    with pytest.raises(IdentityMismatch, match=f"asks for {other}, but the caller is {SLEEP}"):
        authority.sign(csr(other), [SLEEP], 0)


def test_ttl_above_the_maximum_is_refused_and_never_outlives_the_signer() -> None:
    authority = CertificateAuthority(generated_bundle("cluster.local", "test"),
                                     TtlPolicy(maximum=datetime.timedelta(hours=48)))
    with pytest.raises(CaError, match="greater than the max allowed TTL") as caught:
        authority.sign(csr(SLEEP), [SLEEP], 49 * 3600)
    assert caught.value.kind == "TTL_ERROR"
    now = datetime.datetime.now(datetime.UTC)
    cert, key = self_signed_root("cluster.local", now=now - datetime.timedelta(days=1),
                                 ttl=datetime.timedelta(days=1, hours=1))
    short = CertificateAuthority(load_bundle(cert, key, cert, origin="short"))
    leaf = x509.load_pem_x509_certificate(short.sign(csr(SLEEP), [SLEEP], 0).encode())
    assert leaf.not_valid_after_utc == short.bundle.expires


def test_malformed_or_unsigned_csrs_are_csr_errors() -> None:
    with pytest.raises(CaError, match="not a PEM certificate request") as caught:
        parse_csr("nonsense")
    assert caught.value.kind == "CSR_ERROR"
    good = csr(SLEEP).public_bytes(serialization.Encoding.PEM)
    body = good.split(b"\n")
    der = bytearray(base64.b64decode(b"".join(body[1:-2])))
    der[-5] ^= 0xFF  # inside the signature
    tampered = (b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der))
                + b"-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(CaError, match="signature does not verify"):
        parse_csr(tampered)


def _intermediate() -> tuple[bytes, bytes, bytes]:
    """(intermediate cert, its key, root cert) PEM: a plugged-in CA."""
    root_cert, root_key = self_signed_root("cluster.local")
    root = load_bundle(root_cert, root_key, root_cert, origin="root")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("O=intermediate"))
            .issuer_name(root.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root.key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), root_cert)


def test_plugged_in_intermediate_signs_and_the_chain_ends_at_the_root() -> None:
    cert, key, root = _intermediate()
    bundle = load_bundle(cert, key, root, cert + root, origin="cacerts")
    authority = CertificateAuthority(bundle)
    chain = authority.response_chain(authority.sign(csr(SLEEP), [SLEEP], 0))
    assert [x509.load_pem_x509_certificate(c.encode()).subject.rfc4514_string()
            for c in chain[1:]] == ["O=intermediate", "O=cluster.local", "O=cluster.local"]
    key_pem, serving = authority.serving_certificate(["istiod.istio-system.svc"],
                                                     datetime.timedelta(hours=1))
    certs = x509.load_pem_x509_certificates(serving)
    assert certs[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
        "istiod.istio-system.svc"]
    assert serialization.load_pem_private_key(key_pem, None) is not None


@pytest.mark.parametrize("broken,reason", [
    ("key", "is not the key of ca-cert.pem"),
    ("not-ca", "not a CA certificate"),
    ("root", "does not chain to root-cert.pem"),
])
def test_broken_key_material_is_refused_with_the_reason(broken: str, reason: str) -> None:
    cert, key, root = _intermediate()
    if broken == "key":
        key = self_signed_root("cluster.local")[1]
    elif broken == "root":
        root = self_signed_root("cluster.local")[0]
    elif broken == "not-ca":
        bundle = generated_bundle("cluster.local", "x")
        key, serving = CertificateAuthority(bundle).serving_certificate(
            ["x"], datetime.timedelta(hours=1))
        cert, root = serving, bundle.root_pem
    with pytest.raises(BundleError, match=reason):
        load_bundle(cert, key, root, origin="cacerts")


def test_ca_dir_gets_a_root_once_and_keeps_it(tmp_path: Path) -> None:
    first = bundle_from_directory(tmp_path / "ca", "cluster.local")
    second = bundle_from_directory(tmp_path / "ca", "cluster.local")
    assert first.root_pem == second.root_pem
    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o077 == 0


class FakeSecrets:
    """The Secret calls of the API: 404 for absent ones, 409 for a create that lost."""

    def __init__(self, secrets: dict[str, dict[str, Any]], lose_race: bool = False) -> None:
        self.secrets = secrets
        self.lose_race = lose_race
        self.created: list[str] = []

    async def get(self, path: str, params: Any = None, timeout: float = 0) -> Any:
        name = path.rsplit("/", 1)[1]
        if name not in self.secrets:
            raise _Status(404)
        return self.secrets[name]

    async def post(self, path: str, body: Any, timeout: float = 0) -> Any:
        name = body["metadata"]["name"]
        if self.lose_race:
            cert, key = self_signed_root("cluster.local")
            self.secrets[name] = {"data": {"ca-cert.pem": base64.b64encode(cert).decode(),
                                           "ca-key.pem": base64.b64encode(key).decode()}}
            raise _Status(409)
        self.created.append(name)
        self.secrets[name] = body
        return body


class _Status(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_cacerts_secret_is_the_plugged_in_ca() -> None:
    cert, key, root = _intermediate()
    api = FakeSecrets({"cacerts": {"data": {"ca-cert.pem": _b64(cert), "ca-key.pem": _b64(key),
                                            "root-cert.pem": _b64(root),
                                            "cert-chain.pem": _b64(cert + root)}}})
    bundle = await bundle_from_cluster(api, "istio-system", "cluster.local")
    assert bundle.cert_pem == cert and bundle.root_pem == root and not api.created


async def test_istio_ca_secret_is_created_once_and_then_reused() -> None:
    api = FakeSecrets({})
    first = await bundle_from_cluster(api, "istio-system", "cluster.local")
    assert api.created == ["istio-ca-secret"]
    second = await bundle_from_cluster(api, "istio-system", "cluster.local")
    assert second.root_pem == first.root_pem and api.created == ["istio-ca-secret"]
    assert first.cert.subject.rfc4514_string() == "O=cluster.local"


async def test_a_replica_that_loses_the_creation_race_uses_the_winners_root() -> None:
    api = FakeSecrets({}, lose_race=True)
    bundle = await bundle_from_cluster(api, "istio-system", "cluster.local")
    winner = base64.b64decode(api.secrets["istio-ca-secret"]["data"]["ca-cert.pem"])
    assert bundle.root_pem == winner
