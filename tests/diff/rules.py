"""Checks named by accepted entries (`rule:`) whose differences a path pattern alone would
describe too loosely."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.diff.accepted import Rule
from tests.diff.compare import MISSING, Difference, chain_matches

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
        elif part.startswith("[match="):
            labels = chain_matches(node) if isinstance(node, list) else None
            node = node[labels.index(part[7:-1])] if labels and part[7:-1] in labels else None
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


_CLUSTER = re.compile(r"outbound\|(\d+)\|([^|]*)\|([^\"|]+)")
_OPERATION = re.compile(r"^(?P<host>[^:]+):(?P<port>\d+)(?P<path>/.*)$")


def _targets(value: Any) -> set[tuple[str, str, str]]:
    """(port, subset, host) of every outbound cluster named in a JSON value."""
    if value is MISSING:
        return set()
    return {(m[1], m[2], m[3]) for m in _CLUSTER.finditer(json.dumps(value))}


def port_80_route_to_service_port(difference: Difference, istiod: Any, pilotpy: Any) -> bool:
    """On route `80`, a VirtualService for a service without port 80 gets a virtual host
    (both); istiod routes its port-less destinations to port 80, a cluster that does not
    exist, pilotpy to the service's own port."""
    if difference.type != "rds" or difference.resource != "80":
        return False
    if difference.path.endswith("decorator.operation"):
        their_op = _OPERATION.match(str(difference.istiod))
        our_op = _OPERATION.match(str(difference.pilotpy))
        return bool(their_op and our_op and their_op["port"] == "80" and our_op["port"] != "80"
                    and (their_op["host"], their_op["path"]) == (our_op["host"], our_op["path"]))
    theirs, ours = _targets(difference.istiod), _targets(difference.pilotpy)
    if not theirs and not ours:
        return False
    return (all(port == "80" for port, _, _ in theirs)
            and all(port != "80" for port, _, _ in ours))


STAND_IN_SUFFIX = "-invalid-policy-fails-closed"
_POLICIES = re.compile(r"^(?P<policies>.*\.rules\.policies)(?:\.(?P<name>.+))?$")


def fails_closed_stand_in(difference: Difference, istiod: Any, pilotpy: Any) -> bool:
    """An invalid AuthorizationPolicy: pilotpy enforces its fail-closed stand-in (RBAC
    policies named `<name>-invalid-policy-fails-closed`) where istiod, which has no webhook
    in the tier to refuse it, translates what it can of the invalid policy under `<name>`
    in the same filter (or nothing)."""
    match = _POLICIES.match(difference.path)
    if match is None:
        return False
    name = match["name"]
    if name is None:  # a rules map only pilotpy has: stand-ins alone
        return (difference.side == "pilotpy" and isinstance(difference.pilotpy, dict)
                and all(str(k).endswith(STAND_IN_SUFFIX) for k in difference.pilotpy))
    if name.endswith(STAND_IN_SUFFIX):
        return difference.side == "pilotpy"
    ours = _at(pilotpy, match["policies"])
    return (difference.side == "istiod" and isinstance(ours, dict)
            and name + STAND_IN_SUFFIX in ours)


_SANS = re.compile(r"^(?P<context>.*)\.(?:matchSubjectAltNames|matchTypedSubjectAltNames)$")


def spiffe_sans_as_uri(difference: Difference, istiod: Any, pilotpy: Any) -> bool:
    """The same SPIFFE ids to verify: istiod's untyped `match_subject_alt_names` where
    pilotpy writes each matcher typed as a URI SAN."""
    match = _SANS.match(difference.path)
    if match is None:
        return False
    theirs = _at(istiod, match["context"] + ".matchSubjectAltNames")
    ours = _at(pilotpy, match["context"] + ".matchTypedSubjectAltNames")
    if not isinstance(theirs, list) or not isinstance(ours, list) or not theirs:
        return False
    return (all(isinstance(t, dict) and t.get("sanType") == "URI" for t in ours)
            and [t["matcher"] for t in ours] == theirs
            and all(str(next(iter(m.values()), "")).startswith("spiffe://") for m in theirs))


RULES: dict[str, Rule] = {
    "spiffe_sans_as_uri": spiffe_sans_as_uri,
    "fails_closed_stand_in": fails_closed_stand_in,
    "single_weighted_destination": single_weighted_destination,
    "port_80_route_to_service_port": port_80_route_to_service_port,
}
