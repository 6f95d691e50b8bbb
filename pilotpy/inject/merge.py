"""A rendered template merged into a pod the way istiod merges it: a Kubernetes strategic
merge patch (k8s.io/apimachinery strategicpatch) for the Pod type.

- Maps merge key by key; a null in the patch deletes the key.
- Lists of the Pod type with a merge key (containers by name, env by name, ports by
  containerPort, volumeMounts by mountPath, ...) merge item by item; an item new to the list
  is added. The order is Kubernetes': the patch's items in the patch's order, with the items
  only the pod had placed after them where the pod's own order does not say otherwise.
- Every other list is replaced.

A value merged or added is then read back as Go reads JSON into a Pod: nulls disappear and
resource quantities take their canonical form.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pilotpy.inject import quantity

# patchMergeKey of the lists of k8s.io/api/core/v1.Pod that have one (patchStrategy merge).
MERGE_KEYS: Mapping[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "topologySpreadConstraints": "topologyKey",
}


def without_nulls(value: Any) -> Any:
    """What Go keeps of a JSON value decoded into a typed object: no nulls."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value


def strategic_merge(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` (a partial Pod) merged into `target` (a Pod); neither is modified."""
    return _merge_map(copy.deepcopy(dict(target)), patch)


def _merge_map(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
            continue
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            target[key] = _merge_map(current, value)
        elif isinstance(value, list) and isinstance(current, list) and key in MERGE_KEYS:
            target[key] = _merge_list(current, value, MERGE_KEYS[key])
        elif isinstance(value, list) and not value and key in MERGE_KEYS:
            continue  # merging no items into a missing list adds nothing
        else:
            target[key] = without_nulls(copy.deepcopy(value))
    return target


def _merge_list(target: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = list(target)
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            raise ValueError(f"a list item without its merge key {key!r}: {item!r}")
        index = next((i for i, t in enumerate(merged)
                      if isinstance(t, dict) and t.get(key) == item[key]), None)
        if index is None:
            merged.append(without_nulls(copy.deepcopy(dict(item))))
        else:
            merged[index] = _merge_map(merged[index], item)
    # Kubernetes' order: the patch's items in patch order, the others merged in by the
    # target's order (normalizeElementOrder / mergeSortedSlice).
    in_patch = {item[key] for item in patch}
    patch_items = sorted((m for m in merged if m.get(key) in in_patch),
                         key=lambda m: [p[key] for p in patch].index(m[key]))
    only_target = [m for m in merged if m.get(key) not in in_patch]
    target_order = [t.get(key) for t in target if isinstance(t, dict)]
    out: list[Any] = []
    i = j = 0
    while i < len(only_target) or j < len(patch_items):
        if i >= len(only_target):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(only_target[i])
            i += 1
        else:
            left, right = only_target[i].get(key), patch_items[j].get(key)
            if left in target_order and right in target_order \
                    and target_order.index(left) < target_order.index(right):
                out.append(only_target[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def canonical_resources(container: dict[str, Any]) -> None:
    """Resource quantities of a container in their canonical form, in place."""
    resources = container.get("resources")
    if not isinstance(resources, dict):
        return
    for section in ("limits", "requests"):
        amounts = resources.get(section)
        if isinstance(amounts, dict):
            for name, amount in amounts.items():
                if isinstance(amount, str | int | float) and not isinstance(amount, bool):
                    amounts[name] = quantity.canonical(str(amount))
