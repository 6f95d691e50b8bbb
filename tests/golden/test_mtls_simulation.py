"""PeerAuthentication's promises, as calls through the inbound config of the mTLS golden
cases (pilotpy.simulate): which chain a plaintext or a mesh-mTLS connection reaches, and that
a mode pilotpy cannot serve closes the port rather than opening it."""

from __future__ import annotations

from functools import cache

import pytest

from pilotpy.simulate import Call, Mode, Outcome, Protocol, Result, Simulation
from tests.golden.cases import case_named, simulation

POD = "10.244.0.11"
# What a client sidecar's mesh mTLS offers (pilotpy's clusters: stock Envoy has no ALPN
# filter, so HTTP goes out as `istio` too).
MESH_ALPN = ("istio-peer-exchange", "istio")


@cache
def sim(name: str) -> Simulation:
    return simulation(case_named(name))


def inbound(name: str, port: int, *, protocol: Protocol = Protocol.HTTP, mtls: bool = False,
            alpn: tuple[str, ...] = MESH_ALPN) -> Result:
    return sim(name).run(Call(port=port, address=POD, protocol=protocol, host="httpbin",
                              tls=mtls, alpn=alpn if mtls else (), mode=Mode.INBOUND))


def test_a_strict_port_refuses_plaintext() -> None:
    result = inbound("mtls-inbound-modes", 8000)
    assert result.outcome is Outcome.NO_FILTER_CHAIN, result.describe()


def test_a_strict_port_takes_mesh_mtls() -> None:
    result = inbound("mtls-inbound-modes", 8000, mtls=True)
    assert (result.outcome, result.cluster) == (Outcome.FORWARDED, "inbound|8000||")


def test_a_port_level_disable_takes_plaintext_under_a_strict_namespace() -> None:
    result = inbound("mtls-inbound-modes", 9000, protocol=Protocol.TCP)
    assert (result.outcome, result.cluster) == (Outcome.FORWARDED, "inbound|9000||")
    # The TLS inspector is off there: a TLS client's bytes reach the application as they are,
    # through the plaintext chain (nothing there terminates mesh mTLS).
    tls = inbound("mtls-inbound-modes", 9000, protocol=Protocol.TCP, mtls=True)
    assert tls.filter_chain == result.filter_chain


@pytest.mark.parametrize("mtls", [False, True])
@pytest.mark.parametrize("protocol", [Protocol.HTTP, Protocol.TCP])
def test_a_permissive_sniffed_port_takes_plaintext_and_mtls(protocol: Protocol,
                                                            mtls: bool) -> None:
    result = inbound("mtls-inbound-modes", 7000, protocol=protocol, mtls=mtls)
    assert (result.outcome, result.cluster) == (Outcome.FORWARDED, "inbound|7000||")


def test_the_strict_passthrough_refuses_plaintext_to_undeclared_ports() -> None:
    result = inbound("mtls-inbound-modes", 7777, protocol=Protocol.TCP)
    assert result.outcome is Outcome.NO_FILTER_CHAIN, result.describe()
    # ... but an undeclared port its portLevelMtls disables passes plaintext through.
    passed = inbound("mtls-inbound-modes", 9999, protocol=Protocol.TCP)
    assert passed.cluster == "InboundPassthroughCluster"


@pytest.mark.parametrize("port", [8000, 9000, 7777])
def test_strict_on_a_sidecar_without_agent_closes_the_port_instead_of_plaintext(
        port: int) -> None:
    # Without pilot-agent there is no mesh certificate: the policy cannot be served, and the
    # port must not fall back to plaintext (nor to the passthrough).
    result = inbound("mtls-inbound-stock-strict", port, protocol=Protocol.TCP)
    assert result.cluster == "BlackHoleCluster", result.describe()


def test_a_permissive_port_of_a_sidecar_without_agent_takes_plaintext() -> None:
    result = inbound("mtls-inbound-stock-strict", 7000)
    assert (result.outcome, result.cluster) == (Outcome.FORWARDED, "inbound|7000||")
