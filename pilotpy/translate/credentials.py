"""Certificates from Kubernetes Secrets (`credentialName`), served over SDS in the ADS stream
itself as istiod serves them (pilot/pkg/model/credentials, pilot/pkg/xds/sds.go,
pilot/pkg/credentials/kube/secrets.go).

- A credential name becomes an SDS resource name: `kubernetes://<name>` unless it already
  names a scheme (`ToResourceName`); `<name>-cacert` is the CA of `<name>`.
- `kubernetes://<name>`: an Envoy Secret with the certificate chain and key of Secret
  `<name>` in the proxy's namespace (keys `cert`/`key`, else `tls.crt`/`tls.key`, with
  `tls.ocsp-staple`).
- `kubernetes://<name>-cacert`: a validation context from Secret `<name>-cacert` if it
  exists, else from `<name>` (keys `cacert`, else `ca.crt`; the CRL from `crl`/`ca.crl`).
- Only to a proxy whose stream proved an identity of its own namespace
  (`ProxyView.secrets_allowed`), only Secrets of that namespace, only names its own config
  references; everything else is left out, so Envoy never gets another namespace's key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2

from pilotpy.model.kinds import Kind
from pilotpy.model.meta import Key
from pilotpy.model.stored import Secret
from pilotpy.problems import ObjectRef, Problem, Reason
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext

KUBERNETES_SCHEME = "kubernetes://"
CA_SUFFIX = "-cacert"
# Schemes istiod knows that pilotpy does not serve (Gateway API references, ConfigMaps,
# `builtin://`, external SDS); a name with one of them is reported and its server skipped.
OTHER_SCHEMES = ("kubernetes-gateway://", "configmap://", "builtin://", "sds://",
                 "invalid://")
_CERT_KEYS = (("cert", "key", "", "crl"), ("tls.crt", "tls.key", "tls.ocsp-staple", "ca.crl"))
_CA_KEYS = (("cacert", "crl"), ("ca.crt", "ca.crl"))


def resource_name(credential_name: str) -> str:
    """istiod's ToResourceName for the schemes pilotpy serves."""
    if credential_name.startswith(KUBERNETES_SCHEME):
        return credential_name
    return KUBERNETES_SCHEME + credential_name


def unsupported_scheme(credential_name: str) -> str:
    """The scheme of a credential name pilotpy cannot serve, "" when it can."""
    return next((s for s in OTHER_SCHEMES if credential_name.startswith(s)), "")


def ads_secret_config(name: str) -> secret_pb2.SdsSecretConfig:
    """A secret from the control plane over ADS (istiod's SDSAdsConfig). No
    initial_fetch_timeout: a Secret that never comes must not hold the whole listener."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3))


@dataclass(frozen=True, slots=True)
class SecretRef:
    """What an SDS resource name refers to."""

    namespace: str
    name: str  # the Kubernetes Secret's name (with `-cacert` for a CA resource)
    ca: bool


def parse_resource_name(resource: str, proxy_namespace: str) -> SecretRef | None:
    """`kubernetes://name` (the proxy's namespace) or `kubernetes://ns/name`; None for other
    schemes (istiod's ParseResourceName)."""
    if not resource.startswith(KUBERNETES_SCHEME):
        return None
    rest = resource[len(KUBERNETES_SCHEME):]
    namespace, slash, name = rest.partition("/")
    if not slash:
        namespace, name = proxy_namespace, rest
    return SecretRef(namespace, name, name.endswith(CA_SUFFIX))


def _decode(secret: Secret, key: str) -> bytes:
    value = secret.data.get(key, "")
    try:
        return base64.b64decode(value, validate=True) if value else b""
    except (binascii.Error, ValueError):
        return b""


def _secret(push: PushContext, namespace: str, name: str) -> Secret | None:
    found = push.objects.get(Kind.SECRET, {}).get(Key(Kind.SECRET, namespace, name))
    return found if isinstance(found, Secret) else None


def _inline(data: bytes) -> base_pb2.DataSource:
    return base_pb2.DataSource(inline_bytes=data)


def certificate_secret(resource: str, secret: Secret) -> secret_pb2.Secret | str:
    """The key pair of `secret` as Envoy's Secret, or why there is none."""
    for cert_key, key_key, staple_key, _ in _CERT_KEYS:
        cert, key = _decode(secret, cert_key), _decode(secret, key_key)
        if cert and key:
            tls = common_pb2.TlsCertificate(certificate_chain=_inline(cert),
                                            private_key=_inline(key))
            staple = _decode(secret, staple_key) if staple_key else b""
            if staple:
                tls.ocsp_staple.CopyFrom(_inline(staple))
            return secret_pb2.Secret(name=resource, tls_certificate=tls)
    return ("has no certificate and key (keys `tls.crt` and `tls.key`, or `cert` and "
            "`key`)")


def ca_secret(resource: str, secret: Secret) -> secret_pb2.Secret | str:
    for ca_key, crl_key in _CA_KEYS:
        ca = _decode(secret, ca_key)
        if ca:
            context = common_pb2.CertificateValidationContext(trusted_ca=_inline(ca))
            crl = _decode(secret, crl_key)
            if crl:
                context.crl.CopyFrom(_inline(crl))
            return secret_pb2.Secret(name=resource, validation_context=context)
    return "has no CA certificate (key `ca.crt` or `cacert`)"


def lookup(push: PushContext, ref: SecretRef) -> tuple[Secret | None, str]:
    """The Kubernetes Secret a resource reads (a CA resource falls back to the Secret without
    the suffix), and its name."""
    found = _secret(push, ref.namespace, ref.name)
    if found is None and ref.ca:
        stripped = ref.name[:-len(CA_SUFFIX)]
        return _secret(push, ref.namespace, stripped), stripped
    return found, ref.name


def build_secret(push: PushContext, resource: str, namespace: str
                 ) -> secret_pb2.Secret | str:
    """The Envoy Secret of one resource name for a proxy in `namespace`, or why not."""
    ref = parse_resource_name(resource, namespace)
    if ref is None:
        return f"{resource}: pilotpy serves only kubernetes:// credentials"
    if ref.namespace != namespace:
        return (f"{resource}: Secret {ref.namespace}/{ref.name} is in another namespace than "
                f"the proxy ({namespace}); istiod serves a proxy its own namespace's Secrets")
    secret, name = lookup(push, ref)
    if secret is None:
        return f"{resource}: Secret {ref.namespace}/{name} not found"
    built = ca_secret(resource, secret) if ref.ca else certificate_secret(resource, secret)
    if isinstance(built, str):
        return f"{resource}: Secret {ref.namespace}/{name} {built}"
    return built


def missing_credential(push: PushContext, resource: str, namespace: str) -> str:
    """Why a resource name cannot be served to a proxy in `namespace`, "" when it can."""
    built = build_secret(push, resource, namespace)
    return built if isinstance(built, str) else ""


def referenced_names(listeners: Iterable[listener_pb2.Listener]) -> list[str]:
    """The ADS SDS names the listeners' TLS contexts reference, in order."""
    names: dict[str, None] = {}
    for listener in listeners:
        for chain in listener.filter_chains:
            socket = chain.transport_socket
            if not socket.HasField("typed_config"):
                continue
            context = tls_pb2.DownstreamTlsContext()
            if not socket.typed_config.Unpack(context):
                continue
            _add_ads_names(context.common_tls_context, names)
    return list(names)


def upstream_referenced_names(contexts: Iterable[tls_pb2.UpstreamTlsContext]) -> list[str]:
    names: dict[str, None] = {}
    for context in contexts:
        _add_ads_names(context.common_tls_context, names)
    return list(names)


def _add_ads_names(common: common_pb2.CommonTlsContext, names: dict[str, None]) -> None:
    for config in common.tls_certificate_sds_secret_configs:
        if config.sds_config.HasField("ads"):
            names[config.name] = None
    validation = common.combined_validation_context.validation_context_sds_secret_config
    if validation.sds_config.HasField("ads"):
        names[validation.name] = None


def secrets_for(push: PushContext, view: ProxyView, names: Iterable[str],
                where: Mapping[str, ObjectRef] | None = None
                ) -> tuple[list[secret_pb2.Secret], list[Problem]]:
    """The Secrets a proxy gets for the resource names its config references: none unless
    its stream proved an identity of its namespace."""
    if not view.secrets_allowed:
        return [], []
    out: list[secret_pb2.Secret] = []
    problems: list[Problem] = []
    for resource in sorted(set(names)):
        built = build_secret(push, resource, view.namespace)
        if isinstance(built, str):
            ref = (where or {}).get(resource)
            problems.append(Problem(Reason.NOT_FOUND, built, ref))
            continue
        out.append(built)
    return out, problems
