"""Prometheus metrics merging (istiod's applyPrometheusMerge): a pod scraped through its
`prometheus.io/*` annotations is scraped through the agent instead (port 15020,
/stats/prometheus), and the agent, told the application's own settings in
ISTIO_PROMETHEUS_ANNOTATIONS, merges them with Envoy's."""

from __future__ import annotations

import json
import re
from typing import Any

from pilotpy.inject import annotations as names
from pilotpy.inject import pods

Json = dict[str, Any]
SCRAPE, PORT, PATH = "prometheus_io_scrape", "prometheus_io_port", "prometheus_io_path"
TARGETS = "prometheus_istio_io_scrape_targets"
SECURE_PORT = "prometheus_istio_io_secure_port"
ENV = "ISTIO_PROMETHEUS_ANNOTATIONS"
# Ports the agent and Envoy own (pilot-agent's istioReservedPorts): never scraped as the
# application's.
RESERVED = {"15000": "Envoy admin", "15001": "outbound traffic capture",
            "15004": "pilot debug", "15006": "inbound traffic capture",
            "15008": "HBONE tunnel", "15020": "pilot-agent status / merged Prometheus",
            "15021": "Envoy health", "15053": "DNS proxy",
            "15090": "Envoy Prometheus (already merged)"}
_LABEL = re.compile(r"[^a-zA-Z0-9_]")


class PrometheusError(ValueError):
    pass


def sanitized(name: str) -> str:
    """Prometheus' label-name form: `prometheus.io/port` and `prometheus-io/port` alike."""
    return _LABEL.sub("_", name)


def _find(annotations: dict[str, str], key: str) -> tuple[str, str] | None:
    return next(((k, v) for k, v in annotations.items() if sanitized(k) == key), None)


def _scrape_enabled(annotations: dict[str, str]) -> bool:
    for key, value in annotations.items():
        if sanitized(key) == SCRAPE and value in names.TRUE + names.FALSE:
            return value in names.TRUE
    return True


def _merge_enabled(annotations: dict[str, str], mesh_default: bool) -> bool:
    return names.flag(annotations, names.PROMETHEUS_MERGE, mesh_default)


def _check_port(port: str, target: str, what: str) -> None:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise PrometheusError(f"invalid prometheus {what}: invalid port {port!r}")
    canonical = str(int(port))
    if canonical == target:
        raise PrometheusError(f"invalid prometheus {what}: port {port} conflicts with agent "
                              "port")
    if canonical in RESERVED:
        raise PrometheusError(f"invalid prometheus {what}: port {port} is reserved for Istio "
                              f"({RESERVED[canonical]}) and cannot be scraped")


def _targets(raw: str) -> list[dict[str, str]] | None:
    targets = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        port, _, path = entry.partition(":")
        if not port.strip():
            return None  # istiod logs it and ignores the annotation
        targets.append({"port": port.strip(), "path": path.strip() or "/metrics"})
    return targets


def clear(annotations: dict[str, str]) -> None:
    for key in [k for k in annotations if sanitized(k) in (SCRAPE, PORT, PATH, TARGETS)]:
        del annotations[key]


def apply(pod: pods.Pod, status_port: int, mesh_default: bool) -> None:
    """Move the pod's scrape settings to the agent, in place; raises PrometheusError for a
    port the agent cannot scrape."""
    annotations = pods.metadata(pod).setdefault("annotations", {})
    if not _scrape_enabled(annotations) or not _merge_enabled(annotations, mesh_default):
        return
    target = str(status_port)
    current = _find(annotations, PORT)
    if current is not None and current[1] == target:
        return  # injected before, or the user points at the agent already
    config: Json = {"scrape": "", "path": "", "port": ""}
    for key, value in annotations.items():
        match sanitized(key):
            case "prometheus_io_port":
                config["port"] = value
            case "prometheus_io_scrape":
                config["scrape"] = value
            case "prometheus_io_path":
                config["path"] = value
            case "prometheus_istio_io_scrape_targets":
                found = _targets(value)
                if found is not None:
                    config["targets"] = found
    if config.get("targets"):
        config["port"], config["path"] = config["targets"][0]["port"], \
            config["targets"][0]["path"]
        for entry in config["targets"]:
            _check_port(entry["port"], target, "scrape targets")
    elif config["port"]:
        _check_port(config["port"], target, "scrape configuration")
    proxy = pods.find_proxy(pod)
    if proxy is not None and any(config.get(k) for k in ("scrape", "path", "port", "targets")):
        proxy.setdefault("env", []).append(
            {"name": ENV, "value": json.dumps(config, separators=(",", ":"))})
    clear(annotations)
    annotations["prometheus.io/port"] = target
    annotations["prometheus.io/path"] = "/stats/prometheus"
    annotations["prometheus.io/scrape"] = "true"


def apply_secure_port(pod: pods.Pod) -> None:
    """prometheus.istio.io/secure-port from the proxy's ENVOY_SECURE_MERGED_METRICS_PORT,
    unless the user set it."""
    annotations = pods.metadata(pod).setdefault("annotations", {})
    if any(sanitized(k) == SECURE_PORT for k in annotations):
        return
    proxy = pods.find_proxy(pod)
    for var in (proxy or {}).get("env") or []:
        if var.get("name") == "ENVOY_SECURE_MERGED_METRICS_PORT" \
                and var.get("value") not in (None, "", "0"):
            annotations["prometheus.istio.io/secure-port"] = var["value"]
            return
