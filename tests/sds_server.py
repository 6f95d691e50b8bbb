"""pilot-agent's SDS for tests: a gRPC SecretDiscoveryService on loopback serving the
workload certificate (`default`) and the mesh root (`ROOTCA`), so a plain Envoy given the
cluster `sds-grpc` in its bootstrap (pilotpy.local.bootstrap's `sds_address`) takes the
config pilotpy sends pilot-agent's Envoys. State of the world, as Envoy's SDS client speaks
it: every request naming secrets is answered with those it knows; ACKs are not."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def workload_secrets(cert_chain: bytes, key: bytes, root: bytes
                     ) -> dict[str, secret_pb2.Secret]:
    """`default` and `ROOTCA` as pilot-agent serves them."""
    return {
        "default": secret_pb2.Secret(name="default", tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=cert_chain),
            private_key=base_pb2.DataSource(inline_bytes=key))),
        "ROOTCA": secret_pb2.Secret(name="ROOTCA", validation_context=(
            common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=root)))),
    }


def secrets_from_files(cert_chain: Path, key: Path, root: Path) -> dict[str, secret_pb2.Secret]:
    return workload_secrets(cert_chain.read_bytes(), key.read_bytes(), root.read_bytes())


class _Service:
    def __init__(self, secrets: Mapping[str, secret_pb2.Secret]) -> None:
        self.secrets = secrets
        self.requested: set[str] = set()
        self._nonces = itertools.count(1)

    async def stream_secrets(
            self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
            context: Any) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        answered: set[str] | None = None
        async for request in request_iterator:
            names = set(request.resource_names)
            self.requested |= names
            if request.HasField("error_detail") or names == answered:
                continue  # a NACK or the ACK of what was sent
            answered = names
            response = discovery_pb2.DiscoveryResponse(
                version_info="1", type_url=SECRET_TYPE, nonce=str(next(self._nonces)))
            for name in sorted(names):
                if name in self.secrets:
                    packed = any_pb2.Any()
                    packed.Pack(self.secrets[name])
                    response.resources.append(packed)
            yield response


class SdsServer:
    """`async with SdsServer(secrets) as port:` serves on 127.0.0.1:<port>."""

    def __init__(self, secrets: Mapping[str, secret_pb2.Secret]) -> None:
        self.service = _Service(secrets)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> int:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "StreamSecrets": grpc.stream_stream_rpc_method_handler(
                self.service.stream_secrets,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString),
        }),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return self.port

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(0.5)
            self._server = None
