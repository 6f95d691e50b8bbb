"""Where the API server is and how to authenticate: kubeconfig or in-cluster, loaded with the
official `kubernetes` client, turned into what an aiohttp session needs."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class KubeConfigError(Exception):
    pass


@dataclass(frozen=True)
class Connection:
    server: str  # https://host:port
    ssl_context: ssl.SSLContext | bool
    # Called per request: a projected service-account token rotates under a running process.
    authorization: Callable[[], str | None]


def load_connection(kubeconfig: Path | None = None, context: str | None = None) -> Connection:
    """From `kubeconfig` (or $KUBECONFIG / ~/.kube/config), or in-cluster when none exists and
    KUBERNETES_SERVICE_HOST is set, as client-go does."""
    from kubernetes import client, config

    configuration = client.Configuration()
    explicit = kubeconfig is not None or bool(os.environ.get("KUBECONFIG"))
    default_file = Path.home() / ".kube" / "config"
    try:
        if not explicit and not default_file.exists() and os.environ.get(
                "KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, context=context,
                client_configuration=configuration, persist_config=False)
    except (config.ConfigException, OSError, TypeError) as err:
        where = kubeconfig or os.environ.get("KUBECONFIG") or default_file
        raise KubeConfigError(f"cannot load Kubernetes credentials from {where}: {err}") from err

    ssl_context: ssl.SSLContext | bool
    if configuration.host.startswith("https"):
        ssl_context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if not configuration.verify_ssl:
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            ssl_context.load_cert_chain(configuration.cert_file, configuration.key_file)
    else:
        ssl_context = False

    def authorization() -> str | None:
        # Newer clients store the token as "BearerToken", older ones as "authorization".
        token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token is not None:
            return str(token)
        if configuration.username:
            return str(configuration.get_basic_auth_token())
        return None

    return Connection(configuration.host.rstrip("/"), ssl_context, authorization)
