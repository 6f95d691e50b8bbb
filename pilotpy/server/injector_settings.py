"""Where the injector's settings come from, as istiod reads them: the `istio-sidecar-injector`
ConfigMap of the control-plane namespace (key `config`: the policy; key `values`: Istio's
Helm values), watched; off the cluster, the files `config` and `values` of a directory
(`--inject-dir`, istiod's mounted /var/lib/istio/inject), reread when they change; with
neither, the defaults. A document that does not parse is logged and the last good settings
stay in force."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from pilotpy.inject.policy import InjectionPolicy, PolicyError, parse_policy
from pilotpy.inject.values import InjectionValues, ValuesError, parse_values
from pilotpy.sources.kube.kinds import WatchedKind

log = logging.getLogger("pilotpy.inject")
CONFIG_MAP = "istio-sidecar-injector"


def injector_config_map(namespace: str) -> WatchedKind:
    return WatchedKind("ConfigMap", "", ("v1",), "configmaps", namespace=namespace,
                       field_selector=f"metadata.name={CONFIG_MAP}")


class InjectorSettings:
    def __init__(self, directory: Path | None = None) -> None:
        self.policy = InjectionPolicy()
        self.values = InjectionValues()
        self.origin = "defaults"
        self.errors = 0  # documents refused (for tests)
        self._directory = directory
        self._stamp: tuple[float, ...] | None = None
        if directory is not None:
            self.refresh()

    def load(self, config: str, values: str, origin: str) -> bool:
        """Parse both documents; keep the last good settings when either is bad."""
        try:
            policy = parse_policy(config)
            data: Any = yaml.safe_load(values) if values.strip() else {}
            parsed = parse_values(data)
        except (PolicyError, ValuesError, yaml.YAMLError) as err:
            self.errors += 1
            log.error("%s: injector settings refused, keeping the previous ones: %s", origin,
                      err)
            return False
        if policy.ignored_templates:
            log.warning("%s: templates %s are not rendered by pilotpy (sidecar and gateway "
                        "are); pods asking for them are refused", origin,
                        ", ".join(policy.ignored_templates))
        self.policy, self.values, self.origin = policy, parsed, origin
        log.info("injector settings from %s: policy %s, image %s/%s:%s", origin,
                 policy.policy, parsed.hub, parsed.proxy.image, parsed.tag)
        return True

    def refresh(self) -> None:
        """Reread the directory's files when they changed (cheap: two stats)."""
        if self._directory is None:
            return
        files = [self._directory / "config", self._directory / "values"]
        stamp = tuple(f.stat().st_mtime if f.exists() else -1.0 for f in files)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        texts = [f.read_text(encoding="utf-8") if f.exists() else "" for f in files]
        self.load(texts[0], texts[1], str(self._directory))

    # -- an informer sink for the ConfigMap --------------------------------------------------

    def replace(self, items: list[dict[str, Any]]) -> None:
        if not items:
            self.policy, self.values, self.origin = InjectionPolicy(), InjectionValues(), \
                "defaults"
            return
        self.upsert(items[-1])

    def upsert(self, item: dict[str, Any]) -> None:
        data = item.get("data") or {}
        meta = item.get("metadata") or {}
        self.load(str(data.get("config") or ""), str(data.get("values") or ""),
                  f"ConfigMap {meta.get('namespace')}/{meta.get('name')}")

    def delete(self, item: dict[str, Any]) -> None:
        self.replace([])
