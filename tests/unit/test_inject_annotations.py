"""Annotation values istiod refuses: each refused with the annotation named, valid ones
accepted."""

from __future__ import annotations

import pytest

from pilotpy.inject.annotations import invalid_annotations

REFUSED = [
    ("sidecar.istio.io/interceptionMode", "MAGIC", "use REDIRECT,TPROXY,NONE"),
    ("status.sidecar.istio.io/port", "70000", "not a port number"),
    ("readiness.status.sidecar.istio.io/initialDelaySeconds", "-1", "32-bit"),
    ("readiness.status.sidecar.istio.io/periodSeconds", "soon", "32-bit"),
    ("readiness.status.sidecar.istio.io/failureThreshold", "1.5", "32-bit"),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,bad", "'bad'"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.1", "'10.0.0.1'"),
    ("traffic.sidecar.istio.io/includeInboundPorts", "80,http", "'http'"),
    ("traffic.sidecar.istio.io/excludeInboundPorts", "99999", "'99999'"),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "3306,x", "'x'"),
    ("traffic.sidecar.istio.io/excludeInterfaces", "eth0,a/b", "invalid characters"),
    ("traffic.sidecar.istio.io/kubevirtInterfaces", "this-name-is-far-too-long", "too long"),
    ("istio.io/reroute-virtual-interfaces", "net1,", "empty interface name"),
    ("prometheus.istio.io/merge-metrics", "yes", "boolean"),
    ("proxy.istio.io/config", "concurrency: -2", "concurrency"),
    ("proxy.istio.io/config", "drainDuration: forever", "drainDuration"),
    ("proxy.istio.io/config", "discoveryAddress: istiod", "host:port"),
    ("proxy.istio.io/config", "[not, a, mapping]", "mapping"),
    ("sidecar.istio.io/proxyCPU", "lots", "quantities must match"),
    ("sidecar.istio.io/proxyMemory", "1Gb", "suffix"),
    ("sidecar.istio.io/proxyCPULimit", "1\n", "control characters"),
    ("sidecar.istio.io/proxyMemoryLimit", "", "quantities must match"),
]


@pytest.mark.parametrize(("name", "value", "reason"), REFUSED)
def test_invalid_values_are_refused_naming_the_annotation(name: str, value: str,
                                                          reason: str) -> None:
    (error,) = invalid_annotations({name: value, "unrelated": "anything"})
    assert f"for annotation '{name}'" in error and reason in error


def test_valid_values_pass() -> None:
    assert invalid_annotations({
        "sidecar.istio.io/interceptionMode": "TPROXY", "status.sidecar.istio.io/port": "0",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.1/32,fd00::/8",
        "traffic.sidecar.istio.io/includeInboundPorts": "*",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "", "prometheus.istio.io/merge-metrics":
        "false", "proxy.istio.io/config": "concurrency: 2\nproxyMetadata: {A: b}",
        "sidecar.istio.io/proxyCPU": "250m", "sidecar.istio.io/proxyMemory": "1Gi",
        "traffic.sidecar.istio.io/excludeInterfaces": "eth1,net0"}) == []


def test_every_invalid_annotation_is_reported() -> None:
    errors = invalid_annotations({"sidecar.istio.io/proxyCPU": "x",
                                  "sidecar.istio.io/interceptionMode": "y"})
    assert len(errors) == 2
