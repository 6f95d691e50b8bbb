"""Where the CA's key material comes from, in istiod's order:

1. In the cluster, the `cacerts` Secret of the control-plane namespace when it exists (a
   plugged-in CA: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem);
2. else the self-signed root kept in Secret `istio-ca-secret` (ca-cert.pem, ca-key.pem),
   created by the first replica that finds none and reused by every replica and restart
   (a replica that loses the creation race reads the winner's);
3. off the cluster, the same files in `--ca-dir` (a plugged-in CA when ca-key.pem is there;
   an empty or missing directory gets a new self-signed root written into it), else a root
   generated in memory at start.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any, Protocol

from pilotpy.ca.bundle import BundleError, CaBundle, load_bundle, self_signed_root

log = logging.getLogger("pilotpy.ca")

PLUGGED_SECRET = "cacerts"
SELF_SIGNED_SECRET = "istio-ca-secret"
SELF_SIGNED_SECRET_TYPE = "istio.io/ca-root"
CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN = "ca-cert.pem", "ca-key.pem", "root-cert.pem", \
    "cert-chain.pem"


class SecretApi(Protocol):
    """The API calls used here (pilotpy.sources.kube.KubeApi has them); errors carry `code`."""

    async def get(self, path: str, params: Any = ..., timeout: float = ...) -> Any: ...
    async def post(self, path: str, body: Any, timeout: float = ...) -> Any: ...


def _secret_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    return f"{base}/{name}" if name else base


def _decoded(secret: dict[str, Any], key: str) -> bytes:
    value = (secret.get("data") or {}).get(key) or ""
    return base64.b64decode(value) if value else b""


def _status_code(err: Exception) -> int:
    code = getattr(err, "code", 0)
    return code if isinstance(code, int) else 0


async def _get_secret(api: SecretApi, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = await api.get(_secret_path(namespace, name))
    except Exception as err:
        if _status_code(err) == 404:
            return None
        raise
    return found if isinstance(found, dict) else None


def _plugged(secret: dict[str, Any], origin: str) -> CaBundle:
    missing = [k for k in (CA_CERT, CA_KEY, ROOT_CERT) if not _decoded(secret, k)]
    if missing:
        raise BundleError(f"{origin}: missing {', '.join(missing)}")
    return load_bundle(_decoded(secret, CA_CERT), _decoded(secret, CA_KEY),
                       _decoded(secret, ROOT_CERT), _decoded(secret, CERT_CHAIN), origin=origin)


def _self_signed(secret: dict[str, Any], origin: str) -> CaBundle:
    cert = _decoded(secret, CA_CERT)
    if not cert or not _decoded(secret, CA_KEY):
        raise BundleError(f"{origin}: missing {CA_CERT} or {CA_KEY}")
    # istiod trusts the secret's own certificate (plus root-cert.pem if present) as the root.
    roots = cert + _decoded(secret, ROOT_CERT)
    return load_bundle(cert, _decoded(secret, CA_KEY), roots, origin=origin)


async def bundle_from_cluster(api: SecretApi, namespace: str, trust_domain: str) -> CaBundle:
    """The cluster's CA (see the module docstring). API errors propagate: the caller
    retries; bad key material raises BundleError."""
    plugged = await _get_secret(api, namespace, PLUGGED_SECRET)
    if plugged is not None and _decoded(plugged, CA_KEY):
        bundle = _plugged(plugged, f"Secret {namespace}/{PLUGGED_SECRET}")
        log.info("CA: using the plugged-in CA of %s", bundle.origin)
        return bundle
    origin = f"Secret {namespace}/{SELF_SIGNED_SECRET}"
    existing = await _get_secret(api, namespace, SELF_SIGNED_SECRET)
    if existing is not None:
        log.info("CA: using the self-signed root of %s", origin)
        return _self_signed(existing, origin)
    cert, key = self_signed_root(trust_domain)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": SELF_SIGNED_SECRET_TYPE,
              "metadata": {"name": SELF_SIGNED_SECRET, "namespace": namespace},
              "data": {k: base64.b64encode(v).decode() for k, v in (
                  (CA_CERT, cert), (CA_KEY, key), (CERT_CHAIN, b""), ("key.pem", b""),
                  (ROOT_CERT, b""))}}
    try:
        await api.post(_secret_path(namespace), secret)
    except Exception as err:
        if _status_code(err) != 409:
            raise
        # Another replica created it first: use theirs, so every replica signs alike.
        winner = await _get_secret(api, namespace, SELF_SIGNED_SECRET)
        if winner is None:
            raise
        log.info("CA: another replica created %s first; using it", origin)
        return _self_signed(winner, origin)
    log.info("CA: created a self-signed root in %s", origin)
    return _self_signed(secret, origin)


def bundle_from_directory(directory: Path, trust_domain: str) -> CaBundle:
    """A plugged-in CA from `directory`, or a new self-signed root written there."""
    origin = f"--ca-dir {directory}"
    if (directory / CA_KEY).exists():
        files = {name: (directory / name).read_bytes() if (directory / name).exists() else b""
                 for name in (CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN)}
        if not files[ROOT_CERT]:
            files[ROOT_CERT] = files[CA_CERT]  # a self-signed root written here earlier
        return load_bundle(files[CA_CERT], files[CA_KEY], files[ROOT_CERT], files[CERT_CHAIN],
                           origin=origin)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_root(trust_domain)
    (directory / CA_KEY).touch(mode=0o600)
    (directory / CA_KEY).write_bytes(key)
    (directory / CA_CERT).write_bytes(cert)
    (directory / ROOT_CERT).write_bytes(cert)
    log.info("CA: wrote a new self-signed root to %s", directory)
    return load_bundle(cert, key, cert, origin=origin)


def bundle_in_memory(trust_domain: str) -> CaBundle:
    cert, key = self_signed_root(trust_domain)
    log.warning("CA: using a self-signed root generated in memory (no --ca-dir, no "
                "Kubernetes): workloads must be given this root, and it changes on restart")
    return load_bundle(cert, key, cert, origin="memory")
