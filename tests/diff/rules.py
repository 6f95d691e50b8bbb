"""Checks named by accepted entries (`rule:`) whose differences a path pattern alone would
describe too loosely."""

from __future__ import annotations

import re
from typing import Any

from tests.diff.accepted import Rule
from tests.diff.compare import Difference

_ROUTE = re.compile(r"^(?P<route>.*\.routes\[[^\]]+\])\.(?P<field>route\.cluster|"
                    r"route\.weightedClusters|decorator\.operation)$")


def _at(tree: Any, path: str) -> Any:
    """The value at a compare.py path (`a.b[name=x][0].c`) in a JSON tree, or None."""
    node = tree
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        if part.startswith("[name="):
            name = part[6:-1]
            node = next((i for i in node if isinstance(i, dict) and i.get("name") == name),
                        None) if isinstance(node, list) else None
        elif part.startswith("["):
            index = int(part[1:-1])
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def single_weighted_destination(difference: Difference, istiod: Any, pilotpy: Any) -> bool:
    """istiod keeps a one-entry `weighted_clusters` where pilotpy routes to that `cluster`
    (and so names the route's decorator operation after the VirtualService, where pilotpy
    names it after the host)."""
    match = _ROUTE.match(difference.path)
    if match is None:
        return False
    theirs = _at(istiod, match["route"] + ".route")
    ours = _at(pilotpy, match["route"] + ".route")
    if not isinstance(theirs, dict) or not isinstance(ours, dict):
        return False
    clusters = theirs.get("weightedClusters", {}).get("clusters", [])
    return len(clusters) == 1 and clusters[0].get("name") == ours.get("cluster")


RULES: dict[str, Rule] = {"single_weighted_destination": single_weighted_destination}
