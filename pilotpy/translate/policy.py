"""Which parts of a DestinationRule's traffic policy apply to one cluster: port-level settings
replace the rule's policy for their port, a subset's policy overrides component by component
(istiod's GetPortLevelTrafficPolicy and MergeSubsetTrafficPolicy)."""

from __future__ import annotations

from dataclasses import replace

from pilotpy.model.destinationrule import ConsistentHash, DestinationRule, TrafficPolicy


def port_level_policy(policy: TrafficPolicy | None, port: int | None
                      ) -> tuple[TrafficPolicy | None, bool]:
    """The policy for `port`, and whether port-level settings replaced it. Port-level
    settings do not inherit: fields they omit fall back to defaults."""
    if policy is None or port is None:
        return policy, False
    for settings in policy.port_level_settings:
        if settings.port == port:
            return TrafficPolicy(settings.load_balancer, settings.connection_pool,
                                 settings.outlier_detection, settings.tls), True
    return policy, False


def cluster_policy(rule: DestinationRule | None, subset: str, port: int) -> TrafficPolicy | None:
    if rule is None:
        return None
    policy, _ = port_level_policy(rule.traffic_policy, port)
    if not subset:
        return policy
    found = rule.subset(subset)
    subset_policy = found.traffic_policy if found is not None else None
    if subset_policy is None:
        return policy
    subset_policy, has_port_level = port_level_policy(subset_policy, port)
    if policy is None or subset_policy is None:
        return subset_policy
    # The subset's components win; with port-level subset settings, even unset ones do.
    return replace(
        policy,
        connection_pool=(subset_policy.connection_pool
                         if subset_policy.connection_pool is not None or has_port_level
                         else policy.connection_pool),
        outlier_detection=(subset_policy.outlier_detection
                           if subset_policy.outlier_detection is not None or has_port_level
                           else policy.outlier_detection),
        load_balancer=(subset_policy.load_balancer
                       if subset_policy.load_balancer is not None or has_port_level
                       else policy.load_balancer),
        tls=(subset_policy.tls if subset_policy.tls is not None or has_port_level
             else policy.tls),
        port_level_settings=(),
    )


def _hash_of_port(policy: TrafficPolicy | None, port: int | None) -> ConsistentHash | None:
    if policy is None or port is None:
        return None
    for settings in policy.port_level_settings:
        if settings.port == port:
            lb = settings.load_balancer
            return lb.consistent_hash if lb is not None else None
    return None


def consistent_hash_for(rule: DestinationRule, subset: str, port: int | None
                        ) -> ConsistentHash | None:
    """istiod's HashForHTTPDestination: subset port-level, subset, port-level, then the rule."""
    policy = rule.traffic_policy
    consistent = (policy.load_balancer.consistent_hash
                  if policy is not None and policy.load_balancer is not None else None)
    port_hash = _hash_of_port(policy, port)
    subset_hash = subset_port_hash = None
    found = rule.subset(subset) if subset else None
    if found is not None and found.traffic_policy is not None:
        lb = found.traffic_policy.load_balancer
        subset_hash = lb.consistent_hash if lb is not None else None
        subset_port_hash = _hash_of_port(found.traffic_policy, port)
    return subset_port_hash or subset_hash or port_hash or consistent
