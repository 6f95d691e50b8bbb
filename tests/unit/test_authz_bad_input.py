"""Bad security input, end to end through the file source and translation: an invalid policy
is reported (kind, name, field), skipped, and everything else keeps being served; an invalid
edit of a policy keeps its last valid version in force; what cannot be translated never
opens access the policy meant to close."""

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
    files.write("policies.yaml", BAD_PRINCIPAL, DENY_ADMIN)
    sim = files.simulation()
    (problem,) = files.problems.errors()
    assert (problem.reason, problem.ref, problem.field) == (
        Reason.INVALID, ("AuthorizationPolicy", "foo", "bad"),
        "spec.rules[0].from[0].source.principals[0]")
    assert "(object skipped)" in problem.message
    assert inbound(sim, path="/admin").outcome is Outcome.FORBIDDEN  # the valid one holds
    assert inbound(sim, path="/ok").outcome is not Outcome.FORBIDDEN


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
