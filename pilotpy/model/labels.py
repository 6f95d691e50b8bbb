"""Label selectors: one matching rule, with what an empty selector selects made explicit at
each call site, since Kubernetes and Istio differ by kind (a Service without a selector
selects no Pods; a Gateway, a DestinationRule subset or a route's sourceLabels without one
apply to all)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class Empty(Enum):
    """What an empty or absent selector selects."""

    ALL = "all"
    NONE = "none"


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str], *,
            empty: Empty) -> bool:
    """Every key of `selector` is in `labels` with the same value."""
    if not selector:
        return empty is Empty.ALL
    return all(labels.get(k) == v for k, v in selector.items())
