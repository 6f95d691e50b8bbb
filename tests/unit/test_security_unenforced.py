"""The not-enforced report for security policies: AuthorizationPolicy and
RequestAuthentication are enforced and no longer listed as kinds pilotpy only reads; what of
them still does nothing here is reported by object and field."""

from __future__ import annotations

from typing import Any

from pilotpy.analysis.unenforced import unenforced
from pilotpy.mesh import parse_mesh_config
from pilotpy.model.kinds import Kind
from pilotpy.model.stored import UNENFORCED_KINDS
from pilotpy.problems import Reason
from tests.unit.authz_support import authorization_policy, request_authentication
from tests.unit.support import objects_of

SERVICE_REF = {"group": "", "kind": "Service", "name": "web"}
GATEWAY_REF = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}


def reported(*docs: dict[str, Any], mesh_config: dict[str, Any] | None = None
             ) -> list[tuple[str, str, str]]:
    mesh = parse_mesh_config(mesh_config)[0] if mesh_config is not None else None
    return [(p.reason, str(p.ref), p.field) for p in unenforced(objects_of(docs), mesh)]


def test_enforced_security_kinds_are_not_reported_as_only_read() -> None:
    assert Kind.AUTHORIZATION_POLICY not in UNENFORCED_KINDS
    assert Kind.REQUEST_AUTHENTICATION not in UNENFORCED_KINDS
    assert reported(authorization_policy("allow-nothing"),
                    request_authentication({"issuer": "a", "jwks": '{"keys": []}'})) == []


def test_policies_bound_to_waypoints_by_target_refs_are_reported() -> None:
    assert reported(
        authorization_policy("svc", targetRefs=[SERVICE_REF], rules=[{}]),
        authorization_policy("gw", targetRefs=[GATEWAY_REF], rules=[{}]),
        request_authentication({"issuer": "a", "jwks": '{"keys": []}'}, targetRefs=[SERVICE_REF]),
    ) == [(Reason.NOT_ENFORCED, "AuthorizationPolicy foo/svc", "spec.targetRefs"),
          (Reason.NOT_ENFORCED, "RequestAuthentication foo/jwt", "spec.targetRefs")]


def test_a_custom_policy_without_its_provider_in_the_mesh_config_is_reported() -> None:
    custom = authorization_policy("ext", action="CUSTOM", provider={"name": "opa"}, rules=[{}])
    defined = {"extensionProviders": [{"name": "opa", "envoyExtAuthzHttp": {
        "service": "opa.foo.svc.cluster.local", "port": 8181}}]}
    assert reported(custom, mesh_config={}) == [
        (Reason.NOT_ENFORCED, "AuthorizationPolicy foo/ext", "spec.provider.name")]
    assert reported(custom, mesh_config=defined) == []
