"""SPIFFE identities of workloads: `spiffe://<trust domain>/ns/<namespace>/sa/<account>`."""

from __future__ import annotations

from dataclasses import dataclass

SCHEME = "spiffe://"


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri


def parse_spiffe(uri: str) -> SpiffeId | None:
    """The identity a URI names, or None when it is not a workload SPIFFE id."""
    if not uri.startswith(SCHEME):
        return None
    parts = uri[len(SCHEME):].split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or not all(parts):
        return None
    return SpiffeId(parts[0], parts[2], parts[4])


def service_account_subject(subject: str) -> tuple[str, str] | None:
    """(namespace, service account) of a Kubernetes service-account username or JWT `sub`
    (`system:serviceaccount:<ns>:<sa>`), else None."""
    parts = subject.split(":")
    if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or not all(parts[2:]):
        return None
    return parts[2], parts[3]
