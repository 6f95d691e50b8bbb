"""Bad security input, end to end through the file source and translation: an invalid policy
is reported (kind, name, field), skipped, and everything else keeps being served; an invalid
edit of a policy keeps its last valid version in force; an invalid policy without one is
enforced as a stand-in that fails closed (a DENY denies everything it selects, an ALLOW
allows nothing of its own); what cannot be translated never opens access the policy meant to
close."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml

from pilotpy.mesh import MeshConfig
from pilotpy.problems import ProblemLog, Reason, Severity
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import build_push_context
from pilotpy.simulate import Outcome, Simulation
from pilotpy.sources.files import FileSource
from pilotpy.store import Store
from pilotpy.translate.generate import generate
from tests.unit.authz_support import (
    REGISTRY,
    SIDECAR,
    TCP_PORT,
    authorization_policy,
    inbound,
    simulation,
)
from tests.unit.support import context

BAD_PRINCIPAL = authorization_policy("bad", action="DENY", rules=[
    {"from": [{"source": {"principals": ["spiffe://cluster.local/ns/x/sa/y"]}}]}])
OTHER_APP = {"matchLabels": {"app": "other"}}
BAD_PATH = [{"to": [{"operation": {"paths": ["/admin/{**}/{*}"]}}]}]
ALLOW_OK = authorization_policy("allow-ok", rules=[{"to": [{"operation": {"paths": ["/ok"]}}]}])
DENY_ADMIN = authorization_policy("deny-admin", action="DENY", rules=[
    {"to": [{"operation": {"paths": ["/admin"]}}]}])


class Files:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store(clock=time.monotonic)
        self.problems = ProblemLog()
        self.source = FileSource([root], self.store, self.problems)
        self._mtime = time.time_ns()
        self.write("registry.yaml", *REGISTRY)

    def write(self, name: str, *docs: dict[str, Any]) -> None:
        path = self.root / name
        path.write_text(yaml.safe_dump_all(docs))
        # A distinct mtime per write: the source notices edits by (mtime, size, inode).
        self._mtime += 1_000_000_000
        os.utime(path, ns=(self._mtime, self._mtime))

    def simulation(self) -> Simulation:
        self.source.load()
        push, _ = build_push_context(self.store.snapshot().objects, MeshConfig(), 1)
        config = generate(push, view_proxy(parse_proxy(SIDECAR), push))
        return Simulation(config.listeners, config.routes, config.clusters)


def test_an_invalid_policy_is_reported_skipped_and_the_rest_served(tmp_path: Path) -> None:
    files = Files(tmp_path)
    bad = authorization_policy("bad", action="DENY", selector=OTHER_APP, rules=[
        {"from": [{"source": {"principals": ["spiffe://cluster.local/ns/x/sa/y"]}}]}])
    files.write("policies.yaml", bad, DENY_ADMIN)
    sim = files.simulation()
    (problem,) = files.problems.errors()
    assert (problem.reason, problem.ref, problem.field) == (
        Reason.INVALID, ("AuthorizationPolicy", "foo", "bad"),
        "spec.rules[0].from[0].source.principals[0]")
    assert "(object skipped; until it is corrected it denies every request" in problem.message
    assert inbound(sim, path="/admin").outcome is Outcome.FORBIDDEN  # the valid one holds
    assert inbound(sim, path="/ok").outcome is not Outcome.FORBIDDEN  # not selected by `bad`


def test_an_invalid_deny_without_a_valid_version_denies_all_it_selects(tmp_path: Path) -> None:
    """Skipping it would let through what it was written to stop: fail closed."""
    files = Files(tmp_path)
    files.write("deny.yaml", BAD_PRINCIPAL)
    sim = files.simulation()
    assert inbound(sim, path="/ok").outcome is Outcome.FORBIDDEN
    assert inbound(sim, TCP_PORT, protocol="tcp").outcome is Outcome.FORBIDDEN


def test_an_invalid_allow_allows_nothing_of_its_own(tmp_path: Path) -> None:
    """Skipped, it could be the workload's only ALLOW policy, and no ALLOW means allow all;
    as a stand-in it allows nothing while other ALLOW policies still allow what they do."""
    files = Files(tmp_path)
    files.write("allow.yaml", authorization_policy("bad-allow", rules=BAD_PATH))
    assert inbound(files.simulation(), path="/admin/x").outcome is Outcome.FORBIDDEN
    files.write("ok.yaml", ALLOW_OK)
    sim = files.simulation()
    assert inbound(sim, path="/ok").outcome is not Outcome.FORBIDDEN
    assert inbound(sim, path="/admin/x").outcome is Outcome.FORBIDDEN
    (problem,) = files.problems.errors()
    assert "until it is corrected it allows nothing" in problem.message


def test_an_invalid_audit_or_dry_run_policy_is_only_skipped(tmp_path: Path) -> None:
    files = Files(tmp_path)
    files.write("audit.yaml", authorization_policy("audit", action="AUDIT", rules=BAD_PATH))
    files.write("dry.yaml", authorization_policy(
        "dry", action="DENY", annotations={"istio.io/dry-run": "true"}, rules=BAD_PATH))
    assert inbound(files.simulation(), path="/ok").outcome is not Outcome.FORBIDDEN
    assert all(p.message.endswith("(object skipped)") for p in files.problems.errors())


def test_an_unreadable_selector_widens_the_stand_in_to_the_namespace(tmp_path: Path) -> None:
    files = Files(tmp_path)
    files.write("deny.yaml", authorization_policy(
        "deny", action="DENY", selector={"matchLabels": {"app": "*"}}, rules=[{}]))
    assert inbound(files.simulation(), path="/ok").outcome is Outcome.FORBIDDEN


def test_an_unreadable_action_is_enforced_as_deny(tmp_path: Path) -> None:
    files = Files(tmp_path)
    files.write("p.yaml", authorization_policy("p", action="REJECT", selector=OTHER_APP,
                                               rules=[{}]), ALLOW_OK)
    assert inbound(files.simulation(), path="/ok").outcome is not Outcome.FORBIDDEN
    assert files.problems.errors()[0].field == "spec.action"
    files.write("p.yaml", authorization_policy("p", action="REJECT", rules=[{}]), ALLOW_OK)
    assert inbound(files.simulation(), path="/ok").outcome is Outcome.FORBIDDEN


def test_an_unknown_field_of_a_security_policy_is_an_error_naming_it(tmp_path: Path) -> None:
    """An ALLOW read without its misspelt `notIpBlock` would allow more than written."""
    files = Files(tmp_path)
    files.write("allow.yaml", authorization_policy("allow", rules=[
        {"from": [{"source": {"namespaces": ["foo"], "notIpBlock": ["10.0.0.0/8"]}}]}]))
    sim = files.simulation()
    (problem,) = files.problems.errors()
    assert (problem.reason, problem.field) == (
        Reason.INVALID, "spec.rules[0].from[0].source.notIpBlock")
    assert "unknown field" in problem.message
    assert inbound(sim, path="/ok").outcome is Outcome.FORBIDDEN


def test_a_corrected_policy_replaces_its_stand_in_which_is_never_kept(tmp_path: Path) -> None:
    files = Files(tmp_path)
    files.write("deny.yaml", BAD_PRINCIPAL)
    assert inbound(files.simulation(), path="/ok").outcome is Outcome.FORBIDDEN
    files.write("deny.yaml", BAD_PRINCIPAL)  # still invalid: the stand-in is no valid version
    files.simulation()
    assert "keeping its last valid version" not in files.problems.errors()[0].message
    files.write("deny.yaml", authorization_policy("bad", action="DENY", rules=[
        {"to": [{"operation": {"paths": ["/admin"]}}]}]))
    sim = files.simulation()
    assert inbound(sim, path="/ok").outcome is not Outcome.FORBIDDEN
    assert inbound(sim, path="/admin").outcome is Outcome.FORBIDDEN
    assert files.problems.errors() == []
    files.write("deny.yaml", BAD_PRINCIPAL)  # now the corrected version is kept
    assert inbound(files.simulation(), path="/ok").outcome is not Outcome.FORBIDDEN
    assert "keeping its last valid version" in files.problems.errors()[0].message


def test_an_invalid_edit_keeps_the_last_valid_policy_in_force(tmp_path: Path) -> None:
    files = Files(tmp_path)
    files.write("deny.yaml", DENY_ADMIN)
    assert inbound(files.simulation(), path="/admin").outcome is Outcome.FORBIDDEN
    broken = authorization_policy("deny-admin", action="DENY", rules=[
        {"to": [{"operation": {"paths": ["/admin/{**}/{*}"]}}]}])
    files.write("deny.yaml", broken)
    sim = files.simulation()
    assert inbound(sim, path="/admin").outcome is Outcome.FORBIDDEN
    (problem,) = files.problems.errors()
    assert problem.field == "spec.rules[0].to[0].operation.paths[0]"
    assert "keeping its last valid version" in problem.message


def test_a_deny_that_tcp_cannot_express_denies_the_whole_port() -> None:
    sim = simulation([authorization_policy("d", action="DENY", rules=[
        {"to": [{"operation": {"methods": ["DELETE"]}}]}])])
    assert inbound(sim, TCP_PORT, protocol="tcp").outcome is Outcome.FORBIDDEN


def test_an_allow_that_tcp_cannot_express_allows_nothing_there() -> None:
    sim = simulation([authorization_policy("a", rules=[
        {"to": [{"operation": {"methods": ["GET"]}}]}])])
    assert inbound(sim, TCP_PORT, protocol="tcp").outcome is Outcome.FORBIDDEN


def test_an_unsupported_custom_provider_denies_instead_of_allowing() -> None:
    sim = simulation([authorization_policy("ext", action="CUSTOM", provider={"name": "opa"},
                                           rules=[{}])])
    assert inbound(sim).outcome is Outcome.FORBIDDEN
    assert inbound(sim, TCP_PORT, protocol="tcp").outcome is Outcome.FORBIDDEN


def test_policies_selecting_a_proxyless_grpc_server_are_reported_not_enforced() -> None:
    push = context(*REGISTRY, authorization_policy("allow-nothing"))
    view = view_proxy(parse_proxy(SIDECAR, {"GENERATOR": "grpc"}), push)
    problems = generate(push, view).problems
    assert [(p.reason, p.severity, p.ref) for p in problems] == [
        (Reason.NOT_ENFORCED, Severity.ERROR, ("AuthorizationPolicy", "foo", "allow-nothing"))]
