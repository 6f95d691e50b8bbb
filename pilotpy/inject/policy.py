"""The injector's policy (the `config` key of istiod's `istio-sidecar-injector` ConfigMap):
inject by default or not, the label selectors that force or refuse injection, the default
templates and their aliases, annotations added to every injected pod.

Templates themselves are pilotpy's (`sidecar`, `gateway`); templates a config defines under
`templates` are reported and not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

TEMPLATES = ("sidecar", "gateway")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "In":
                return self.key in labels and labels[self.key] in self.values
            case "NotIn":
                return self.key not in labels or labels[self.key] not in self.values
            case "Exists":
                return self.key in labels
            case _:
                return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes LabelSelector; an empty one is skipped by the injector, as istiod does."""

    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def parse_selector(data: Any, where: str) -> LabelSelector:
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where}: expected a label selector, got {data!r}")
    requirements = [Requirement(str(k), "In", (str(v),))
                    for k, v in sorted((data.get("matchLabels") or {}).items())]
    for i, expression in enumerate(data.get("matchExpressions") or []):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expression, Mapping) or not isinstance(expression.get("key"), str):
            raise PolicyError(f"{at}: expected {{key, operator, values}}")
        operator = expression.get("operator")
        values = tuple(str(v) for v in expression.get("values") or [])
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise PolicyError(f"{at}.operator: {operator!r} is not In, NotIn, Exists or "
                              "DoesNotExist")
        if (operator in ("In", "NotIn")) != bool(values):
            raise PolicyError(f"{at}.values: {operator} needs values" if not values else
                              f"{at}.values: {operator} takes no values")
        requirements.append(Requirement(expression["key"], operator, values))
    return LabelSelector(tuple(requirements))


@dataclass(frozen=True)
class InjectionPolicy:
    policy: str = "enabled"  # "enabled": inject unless told not to; "disabled": only if asked
    default_templates: tuple[str, ...] = ("sidecar",)
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    never_inject: tuple[LabelSelector, ...] = ()
    always_inject: tuple[LabelSelector, ...] = ()
    injected_annotations: Mapping[str, str] = field(default_factory=dict)
    # Templates the config defined that pilotpy does not render (reported, never used).
    ignored_templates: tuple[str, ...] = ()


def parse_policy(text: str) -> InjectionPolicy:
    """The `config` document; raises PolicyError naming the bad field."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        raise PolicyError(f"config: invalid YAML: {err}") from err
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PolicyError("config: expected a mapping")
    policy = data.get("policy") or "enabled"
    if policy not in ("enabled", "disabled"):
        raise PolicyError(f"config.policy: {policy!r} is not enabled or disabled")
    defaults = data.get("defaultTemplates") or ["sidecar"]
    if not isinstance(defaults, list) or not all(isinstance(t, str) for t in defaults):
        raise PolicyError(f"config.defaultTemplates: expected a list of names, got {defaults!r}")
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, Mapping) or not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in aliases.values()):
        raise PolicyError("config.aliases: expected a mapping of names to lists of templates")
    annotations = data.get("injectedAnnotations") or {}
    if not isinstance(annotations, Mapping):
        raise PolicyError("config.injectedAnnotations: expected a mapping")
    templates = data.get("templates") or {}
    if not isinstance(templates, Mapping):
        raise PolicyError("config.templates: expected a mapping of names to templates")
    return InjectionPolicy(
        policy=policy, default_templates=tuple(defaults),
        aliases={str(k): tuple(v) for k, v in aliases.items()},
        never_inject=_selectors(data, "neverInjectSelector"),
        always_inject=_selectors(data, "alwaysInjectSelector"),
        injected_annotations={str(k): str(v) for k, v in annotations.items()},
        ignored_templates=tuple(sorted(str(t) for t in templates if t not in TEMPLATES)))


def _selectors(data: Mapping[str, Any], key: str) -> tuple[LabelSelector, ...]:
    found = data.get(key) or []
    if not isinstance(found, list):
        raise PolicyError(f"config.{key}: expected a list of label selectors")
    return tuple(parse_selector(s, f"config.{key}[{i}]") for i, s in enumerate(found))
