"""The secure port (istiod's :15012) over real sockets: CreateCertificate and ADS streams,
each authentication and authorization rule as a named test, with the refusal's gRPC status,
message and metric; the types pilot-agent forwards that pilotpy does not generate; serving
certificate renewal under a live stream."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pilotpy.ca import ca_pb2
from pilotpy.ca.authority import CertificateAuthority
from pilotpy.ca.bundle import generated_bundle
from pilotpy.server.controlplane import ControlPlane
from tests.tokens import TokenIssuer
from tests.xds.xds_harness import ConfigDir, settings_for
from tests.xds_client import DeltaClient, SotwClient

ISTIOD = "istiod.istio-system.svc"
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
SLEEP_NODE = "sidecar~10.0.0.5~sleep-1.default~default.svc.cluster.local"
SLEEP_META = {"NAMESPACE": "default", "SERVICE_ACCOUNT": "sleep", "LABELS": {"app": "sleep"}}
CREATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"
# Types pilot-agent's xDS proxy forwards that pilotpy does not generate.
NDS = "type.googleapis.com/istio.networking.nds.v1.NameTable"
PCDS = "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig"
ECDS = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


@dataclasses.dataclass
class Secure:
    plane: ControlPlane
    tokens: TokenIssuer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.plane.grpc_tls_port}"

    @property
    def root(self) -> bytes:
        assert self.plane.secure is not None
        return self.plane.secure.root_pem

    def credentials(self, key_and_chain: tuple[bytes, bytes] | None = None
                    ) -> grpc.ChannelCredentials:
        key, chain = key_and_chain or (None, None)
        return grpc.ssl_channel_credentials(self.root, key, chain)

    def metric(self, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.plane.metrics.render()
                   .splitlines() if line.startswith((name + " ", name + "{")))

    def mesh_certificate(self, identity: str) -> tuple[bytes, bytes]:
        """(key, chain) PEM issued by pilotpy's CA, as istioctl's --cert-dir holds."""
        assert self.plane.secure is not None and self.plane.secure.authority is not None
        key = ec.generate_private_key(ec.SECP256R1())
        chain = self.plane.secure.authority.response_chain(
            self.plane.secure.authority.sign(csr_for(key, identity), [identity], 3600))
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()), "".join(chain[:-1]).encode()

    async def create(self, csr: bytes, *, token: str | None, ttl: int = 0,
                     client: tuple[bytes, bytes] | None = None
                     ) -> ca_pb2.IstioCertificateResponse:
        options = [("grpc.ssl_target_name_override", ISTIOD)]
        async with grpc.aio.secure_channel(self.target, self.credentials(client),
                                           options=options) as channel:
            call = channel.unary_unary(
                CREATE, request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
                response_deserializer=ca_pb2.IstioCertificateResponse.FromString)
            metadata = [("authorization", f"Bearer {token}")] if token else None
            answer: ca_pb2.IstioCertificateResponse = await call(
                ca_pb2.IstioCertificateRequest(csr=csr.decode(), validity_duration=ttl),
                metadata=metadata, timeout=10)
            return answer

    def ads(self, kind: type[SotwClient] | type[DeltaClient] = DeltaClient, *,
            token: str | None = None, node: str = SLEEP_NODE,
            metadata: dict[str, object] | None = None,
            client: tuple[bytes, bytes] | None = None) -> SotwClient | DeltaClient:
        return kind(self.target, node, metadata=SLEEP_META if metadata is None else metadata,
                    credentials=self.credentials(client),
                    options=[("grpc.ssl_target_name_override", ISTIOD)],
                    call_metadata=[("authorization", f"Bearer {token}")] if token else ())


def csr_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
            *names: str) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(n) for n in names]), critical=True)
    return builder.sign(key, hashes.SHA256())


def csr_pem(*names: str) -> bytes:
    return csr_for(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                   *names).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[Secure]:
    ConfigDir(tmp_path)
    tokens = TokenIssuer()
    settings = dataclasses.replace(settings_for(tmp_path), jwt_rule=tokens.jwt_rule(),
                                   serving_cert_ttl_seconds=2.0)
    plane = ControlPlane(settings)
    await plane.start()
    try:
        yield Secure(plane, tokens)
    finally:
        await plane.stop()


async def refusal(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# -- CreateCertificate ---------------------------------------------------------------------

async def test_csr_for_the_callers_identity_is_signed_by_the_mesh_root(secure: Secure) -> None:
    answer = await secure.create(csr_pem(SLEEP), token=secure.tokens.token("default", "sleep"),
                                 ttl=3600)
    leaf = x509.load_pem_x509_certificate(answer.cert_chain[0].encode())
    assert answer.cert_chain[-1].encode() == secure.root
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(secure.root))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sans.critical and sans.value.get_values_for_type(
        x509.UniformResourceIdentifier) == [SLEEP]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 3600 <= lifetime.total_seconds() <= 3600 + 121  # plus the clock-skew margin
    assert secure.metric("citadel_server_success_cert_issuance_count") == 1


async def test_csr_without_a_token_is_unauthenticated(secure: Secure) -> None:
    error = await refusal(secure.create(csr_pem(SLEEP), token=None))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "no authorization metadata" in (error.details() or "")
    assert secure.metric("citadel_server_authentication_failure_count") == 1
    assert secure.metric("citadel_server_csr_count") == 1


async def test_csr_with_an_expired_or_forged_token_is_unauthenticated(secure: Secure) -> None:
    expired = await refusal(secure.create(
        csr_pem(SLEEP), token=secure.tokens.token("default", "sleep", lifetime=-60)))
    forged = await refusal(secure.create(csr_pem(SLEEP),
                                         token=secure.tokens.forged("default", "sleep")))
    assert expired.code() == forged.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (expired.details() or "")
    assert "Signature verification failed" in (forged.details() or "")
    assert secure.metric("citadel_server_authentication_failure_count") == 2


async def test_csr_for_someone_elses_identity_is_permission_denied(secure: Secure) -> None:
    other = "spiffe://cluster.local/ns/default/sa/httpbin"
    error = await refusal(secure.create(csr_pem(other),
                                        token=secure.tokens.token("default", "sleep")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert other in (error.details() or "") and SLEEP in (error.details() or "")
    assert secure.metric("citadel_server_id_extraction_err_count") == 1
    assert secure.metric("citadel_server_success_cert_issuance_count") == 0


async def test_malformed_csr_is_invalid_argument(secure: Secure) -> None:
    error = await refusal(secure.create(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n",
                                        token=secure.tokens.token("default", "sleep")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CSR_ERROR" in (error.details() or "")
    assert secure.metric("citadel_server_csr_parsing_err_count") == 1


async def test_ttl_above_the_maximum_is_invalid_argument(secure: Secure) -> None:
    error = await refusal(secure.create(csr_pem(SLEEP),
                                        token=secure.tokens.token("default", "sleep"),
                                        ttl=91 * 24 * 3600))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max allowed TTL" in (error.details() or "")
    assert secure.metric('citadel_server_csr_sign_err_count{error="TTL_ERROR"}') == 1


async def test_a_mesh_client_certificate_authenticates_without_a_token(secure: Secure) -> None:
    answer = await secure.create(csr_pem(SLEEP), token=None,
                                 client=secure.mesh_certificate(SLEEP))
    assert len(answer.cert_chain) == 2


async def test_a_client_certificate_from_another_ca_fails_the_handshake(secure: Secure
                                                                        ) -> None:
    other = generated_bundle("cluster.local", "another CA")
    key = ec.generate_private_key(ec.SECP256R1())
    chain = CertificateAuthority(other).sign(csr_for(key, SLEEP), [SLEEP], 3600)
    client = (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()), chain.encode())
    error = await refusal(secure.create(csr_pem(SLEEP), token=None, client=client))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert secure.metric("citadel_server_csr_count") == 0


async def test_the_plaintext_port_has_no_ca(secure: Secure) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure.plane.grpc_port}") as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(CREATE)
        error = await refusal(call(b"", timeout=5))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


# -- ADS on the secure port ----------------------------------------------------------------

async def test_stream_with_a_valid_token_gets_config(secure: Secure) -> None:
    async with secure.ads(token=secure.tokens.token("default", "sleep")) as client:
        assert isinstance(client, DeltaClient)
        await client.subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", ["*"])
        response = await client.recv()
        assert response.resources


async def test_stream_without_credentials_is_unauthenticated(secure: Secure) -> None:
    async with secure.ads(SotwClient) as client:
        assert isinstance(client, SotwClient)
        await client.request("type.googleapis.com/envoy.config.cluster.v3.Cluster")
        assert await client.wait_closed() == grpc.StatusCode.UNAUTHENTICATED
        assert "no authorization metadata" in (client.details or "")
    assert secure.metric('pilotpy_xds_auth_refusals{code="UNAUTHENTICATED"}') == 1


async def test_stream_for_another_namespace_is_permission_denied(secure: Secure) -> None:
    async with secure.ads(SotwClient,
                          token=secure.tokens.token("elsewhere", "sleep")) as client:
        assert isinstance(client, SotwClient)
        await client.request("type.googleapis.com/envoy.config.cluster.v3.Cluster")
        assert await client.wait_closed() == grpc.StatusCode.PERMISSION_DENIED
        assert "no identities (spiffe://cluster.local/ns/elsewhere/sa/sleep) matched " \
               "default/sleep" in (client.details or "")
    assert secure.metric('pilotpy_xds_auth_refusals{code="PERMISSION_DENIED"}') == 1


async def test_stream_for_another_service_account_is_permission_denied(secure: Secure
                                                                       ) -> None:
    async with secure.ads(SotwClient,
                          token=secure.tokens.token("default", "httpbin")) as client:
        assert isinstance(client, SotwClient)
        await client.request("type.googleapis.com/envoy.config.cluster.v3.Cluster")
        assert await client.wait_closed() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_refused_stream_leaves_the_others_untouched(secure: Secure) -> None:
    async with secure.ads(token=secure.tokens.token("default", "sleep")) as good:
        assert isinstance(good, DeltaClient)
        await good.subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", ["*"])
        await good.recv()
        async with secure.ads(SotwClient) as bad:
            assert isinstance(bad, SotwClient)
            await bad.request("type.googleapis.com/envoy.config.cluster.v3.Cluster")
            assert await bad.wait_closed() == grpc.StatusCode.UNAUTHENTICATED
        assert not good.closed
        await good.subscribe("type.googleapis.com/envoy.config.listener.v3.Listener", ["*"])
        assert (await good.recv()).type_url.endswith("Listener")


async def test_plaintext_port_stays_unauthenticated(secure: Secure) -> None:
    async with DeltaClient(f"127.0.0.1:{secure.plane.grpc_port}", SLEEP_NODE,
                           metadata=SLEEP_META) as client:
        await client.subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", ["*"])
        assert (await client.recv()).resources


@pytest.mark.parametrize("type_url", [NDS, PCDS, ECDS], ids=["nds", "pcds", "ecds"])
async def test_types_pilotpy_does_not_generate_get_an_empty_answer(secure: Secure,
                                                                   type_url: str) -> None:
    async with secure.ads(token=secure.tokens.token("default", "sleep")) as client:
        assert isinstance(client, DeltaClient)
        await client.subscribe(type_url, [])
        answer = await client.recv()
        assert (answer.type_url, list(answer.resources)) == (type_url, [])
        await client.subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", ["*"])
        assert (await client.recv()).resources
        assert not client.closed


# -- the serving certificate ---------------------------------------------------------------

def served_serial(port: int, root: bytes) -> int:
    context = ssl.create_default_context(cadata=root.decode())
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=ISTIOD) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_serving_certificate_is_renewed_without_dropping_streams(secure: Secure
                                                                       ) -> None:
    assert secure.plane.secure is not None
    first = await asyncio.to_thread(served_serial, secure.plane.grpc_tls_port, secure.root)
    async with secure.ads(token=secure.tokens.token("default", "sleep")) as client:
        assert isinstance(client, DeltaClient)
        await client.subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", ["*"])
        await client.recv()
        for _ in range(50):  # the 2 s certificate is renewed after 1 s
            if secure.plane.secure.rotations:
                break
            await asyncio.sleep(0.1)
        assert secure.plane.secure.rotations >= 1
        second = await asyncio.to_thread(served_serial, secure.plane.grpc_tls_port,
                                         secure.root)
        assert second != first
        assert not client.closed
        await client.subscribe("type.googleapis.com/envoy.config.listener.v3.Listener", ["*"])
        assert (await client.recv()).type_url.endswith("Listener")


async def test_a_call_that_bypasses_the_tls_front_is_refused(secure: Secure) -> None:
    """The secure gRPC server listens on loopback behind the TLS front; a local client that
    dials it directly has no TLS peer, so even a valid token is refused."""
    target = f"127.0.0.1:{secure.plane.xds.secure_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            CREATE, request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
            response_deserializer=ca_pb2.IstioCertificateResponse.FromString)
        error = await refusal(call(
            ca_pb2.IstioCertificateRequest(csr=csr_pem(SLEEP).decode()),
            metadata=[("authorization", f"Bearer {secure.tokens.token('default', 'sleep')}")],
            timeout=5))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "did not arrive over the TLS port" in (error.details() or "")
