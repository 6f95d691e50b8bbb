"""istio.type.v1beta1.WorkloadSelector (`selector: {matchLabels: {...}}`), shared by the
security kinds, validated like istiod's validateWorkloadSelector."""

from __future__ import annotations

from pilotpy.model.fields import Fields
from pilotpy.problems import Reason


def parse_workload_selector(spec: Fields, key: str = "selector") -> dict[str, str]:
    """The selector's matchLabels; {} when absent. An empty key or a `*` in a key or value
    is an error; a selector without labels a warning (it selects like none at all)."""
    f = spec.child(key)
    if f is None:
        return {}
    labels = f.string_map("matchLabels")
    for name, value in labels.items():
        if not name:
            f.error(f"empty key is not supported in selector: {name}={value!r}", "matchLabels")
        if "*" in name or "*" in value:
            f.error(f"wildcard is not supported in selector: {name}={value}", "matchLabels")
    if not labels:
        f.warn("workload selector specified without labels", reason=Reason.IGNORED)
    f.done()
    return labels
