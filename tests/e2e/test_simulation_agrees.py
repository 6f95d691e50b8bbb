"""pilotpy.simulate agrees with the real Envoy: for every gateway golden case, HTTP calls built
from its route configurations (every virtual host domain, every route's path, with the
headers its matchers ask for, and calls nothing should match) are predicted by the simulator,
then sent to Envoy serving the same config. Where the simulator says Envoy answers itself (404
NR, a direct response, a redirect, 301 to https, 503 for a missing cluster or one without
endpoints) Envoy's status and Location must be those; where it says the call goes to a cluster
whose endpoints are all on loopback, Envoy must try that cluster. Calls whose prediction would
send Envoy to another address are not sent (tests reach loopback only). Cases with
AuthorizationPolicy hold Envoy's RBAC refusals (403) to the simulator's."""

from __future__ import annotations

import http.client
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotpy.local.stack import LocalStack, eventually
from pilotpy.simulate import Call, Outcome, Result, Simulation
from pilotpy.simulate.listeners import type_name
from tests.e2e.test_golden_accepted import (
    _load,
    _relocated,
    _with_cert_files,
    _with_test_certificates,
    agent_sds,
)
from tests.golden.cases import Case, all_cases, simulation

pytestmark = pytest.mark.e2e
GATEWAY_CASES = [c for c in all_cases()
                 if c.is_envoy and not c.is_sidecar and not c.spec.get("knownBug")]
HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ANSWERED_BY_ENVOY = {Outcome.NO_VIRTUAL_HOST, Outcome.NO_ROUTE, Outcome.DIRECT_RESPONSE,
                     Outcome.REDIRECT, Outcome.TLS_REDIRECT, Outcome.NO_CLUSTER,
                     Outcome.NO_HEALTHY_UPSTREAM, Outcome.FORBIDDEN}


def _hosts(domains: list[str]) -> list[str]:
    out = []
    for domain in domains:
        if domain == "*":
            out.append("anything.invalid")
        elif domain.startswith("*"):
            out.append("a" + domain[1:])
        elif not domain.endswith("*"):
            out.append(domain)
    return out


def _paths_and_headers(route: Any) -> list[tuple[str, dict[str, str]]]:
    """Requests aimed at one route: its path, with the headers and query its matchers want."""
    match = route.match
    which = match.WhichOneof("path_specifier")
    if which == "prefix":
        paths = [match.prefix, match.prefix.rstrip("/") + "/x"]
    elif which == "path":
        paths = [match.path]
    elif which == "path_separated_prefix":
        paths = [match.path_separated_prefix, match.path_separated_prefix + "/x"]
    else:
        return []
    headers: dict[str, str] = {}
    for header in match.headers:
        if header.name.startswith(":") or header.invert_match:
            continue
        kind = header.WhichOneof("header_match_specifier")
        if kind == "present_match":
            headers[header.name] = "1"
        elif kind == "string_match" and header.string_match.WhichOneof("match_pattern") in (
                "exact", "prefix"):
            headers[header.name] = header.string_match.exact or header.string_match.prefix
        else:
            return []
    query = [f"{q.name}={q.string_match.exact}" for q in match.query_parameters
             if q.string_match.WhichOneof("match_pattern") == "exact"]
    query += [q.name for q in match.query_parameters if q.present_match]
    suffix = "?" + "&".join(query) if query else ""
    return [(p + suffix, headers) for p in paths]


def calls_for(sim: Simulation) -> list[Call]:
    calls = []
    for listener in sim.listeners:
        port = listener.address.socket_address.port_value
        for chain in listener.filter_chains:
            if chain.HasField("transport_socket") or chain.filter_chain_match.server_names:
                continue
            for network_filter in chain.filters:
                if type_name(network_filter.typed_config) != HCM:
                    continue
                name = _route_name(network_filter.typed_config)
                configuration = sim.route_configurations.get(name)
                if configuration is None:
                    continue
                hosts = ["nothing-matches.invalid"]
                requests: list[tuple[str, dict[str, str]]] = [("/zz-nothing", {})]
                for vhost in configuration.virtual_hosts:
                    hosts += _hosts(list(vhost.domains))
                    for route in vhost.routes:
                        requests += _paths_and_headers(route)
                # The test sends from loopback: RBAC sees that source.
                calls += [Call(port=port, address="127.0.0.1", host=host, path=path,
                               headers=headers, source="127.0.0.1")
                          for host in dict.fromkeys(hosts) for path, headers in requests]
    return calls


def _route_name(typed_config: Any) -> str:
    manager = hcm_pb2.HttpConnectionManager()
    typed_config.Unpack(manager)
    return str(manager.rds.route_config_name)


def _loopback_only(result: Result) -> bool:
    endpoints = result.endpoints
    return bool(endpoints) and all(
        _is_loopback(e.address) for e in endpoints) and result.cluster is not None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _port_map(case: Case, docs: list[dict[str, Any]]) -> dict[int, int]:
    """Listening port in the case's own translation -> the port the test's Envoy listens on."""
    original = next(d for f in sorted((case.path / "input").glob("*.yaml")) for d in _load(f)
                    if isinstance(d, dict) and d.get("kind") == "Service"
                    and d["metadata"]["name"] == "istio-ingressgateway")
    before = {p["port"]: p.get("targetPort", p["port"]) for p in original["spec"]["ports"]}
    service = next(d for d in docs if d.get("kind") == "Service"
                   and d["metadata"]["name"] == "istio-ingressgateway")
    return {before.get(p["port"], p["port"]): p["targetPort"] for p in service["spec"]["ports"]}


def _send(port: int, call: Call) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(call.method, call.path, headers={"Host": call.host, **call.headers})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("location") or ""
    finally:
        connection.close()


def _checked_calls(case: Case) -> list[tuple[Call, Result]]:
    """The calls whose outcome the test may check on loopback, with the simulator's answer."""
    sim = simulation(case)
    predicted = [(call, sim.run(call)) for call in calls_for(sim)]
    return [(c, r) for c, r in predicted
            if r.outcome in ANSWERED_BY_ENVOY or (
                r.outcome is Outcome.FORWARDED and _loopback_only(r))]


# Gateway cases with no plaintext HTTP call to check on loopback (TCP/TLS-only servers, HTTPS,
# ISTIO_MUTUAL, endpoints elsewhere, no gateway at all): the simulator walk of these is held to
# Envoy elsewhere (the TLS and TCP e2e tests, the mesh tier's W5), not here.
NOTHING_TO_CHECK = {"endpoint-slices", "gateway-https-simple", "gateway-istio-mutual",
                    "gateway-tcp-route", "gateway-tcp-tls", "gateway-tls-passthrough",
                    "no-gateway", "wildcard-hosts"}


def test_only_the_named_cases_have_nothing_to_check() -> None:
    """A case joins the list below only by name, so a change that leaves a case with nothing
    to check fails here instead of quietly dropping out of the comparison."""
    assert {c.name for c in GATEWAY_CASES if not _checked_calls(c)} == NOTHING_TO_CHECK


@pytest.mark.parametrize("case", [c for c in GATEWAY_CASES if c.name not in NOTHING_TO_CHECK],
                         ids=lambda c: c.name)
async def test_simulator_agrees_with_envoy(case: Case, tmp_path: Path) -> None:
    checked = _checked_calls(case)
    assert checked, f"{case.name}: no call to check (add it to NOTHING_TO_CHECK with a reason)"
    async with agent_sds(case, tmp_path / "workload") as sds_address:
        await _agrees(case, checked, tmp_path, sds_address)


async def _agrees(case: Case, checked: list[tuple[Call, Result]], tmp_path: Path,
                  sds_address: tuple[str, int] | None) -> None:
    docs = _relocated(case.path, case.labels)
    _with_test_certificates(docs, tmp_path / "certs")
    docs = _with_cert_files(docs, tmp_path / "proxy-certs", {})
    ports = _port_map(case, docs)
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.yaml").write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    stack = LocalStack([config], tmp_path, node_id=case.node_id, labels=case.labels,
                       start_backends=False, mesh_config=case.mesh_config,
                       metadata={k: v for k, v in case.metadata.items() if k != "LABELS"},
                       sds_address=sds_address, xds_identity=case.verified_identity)
    await stack.start()
    try:
        await stack.wait_live()
        envoy = stack.envoy
        assert envoy is not None
        expected_listeners = len(case.expected("listeners"))

        def delivered() -> bool:
            listeners = envoy.config_dump("dynamic_listeners").get("configs", [])
            return len(listeners) == expected_listeners and all(
                "active_state" in lst for lst in listeners)

        await eventually(delivered, f"{case.name}: every listener active")
        for call, result in checked:
            where = f"{case.name}: {call.method} {call.host}{call.path} {dict(call.headers)}\n"
            stat = f"cluster.{result.cluster}.upstream_cx_total"
            before = sum(envoy.stats(stat).values()) if result.cluster else 0
            status, location = _send(ports[call.port], call)
            if result.outcome is Outcome.FORWARDED:
                # No backend listens: Envoy answers 503 after trying the predicted cluster.
                assert status == 503, where + result.describe()
                assert sum(envoy.stats(stat).values()) > before, where + result.describe()
                continue
            assert status == result.status, where + result.describe()
            if result.redirect is not None:
                assert location == result.redirect.location, where + result.describe()
    finally:
        await stack.stop()


def test_calls_are_built_for_the_walkthroughs() -> None:
    bookinfo = next(c for c in GATEWAY_CASES if c.name == "w3-bookinfo-gateway")
    paths = {c.path for c in calls_for(simulation(bookinfo))}
    assert {"/productpage", "/static/x", "/login", "/zz-nothing"} <= paths
