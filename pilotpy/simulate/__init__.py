"""Take a call through one proxy's Envoy config and say what Envoy would do with it: the
listener (after a sidecar's original-destination hand-off), the filter chain, the route
configuration, virtual host and route, the action, and the cluster with its endpoints; or the
step where Envoy stops, and why.

Pure functions over Envoy messages (what `pilotpy.translate.generate.generate` and
`endpoints_for` return for one proxy), so tests can state intent ("jason's GET /reviews goes
to `outbound|9080|v2|reviews...`") and tools can explain a proxy's config.

    sim = Simulation(listeners, route_configurations, clusters, load_assignments)
    result = sim.run(Call(port=9080, address="10.96.0.20", host="reviews",
                          headers={"end-user": "jason"}))
    result.cluster  # 'outbound|9080|v2|reviews.default.svc.cluster.local'

Not modelled: path normalisation by the connection manager (the path is taken as sent), RE2
versus Python regex differences, source-address filter chain matches, runtime fractions,
header-based cluster choice, retries, timeouts, faults and load balancing (weighted choices
are reported with their weights).
"""

from pilotpy.simulate.call import UNNAMED_ADDRESS, Call, Mode, Protocol
from pilotpy.simulate.result import (
    Destination,
    DirectResponse,
    Endpoint,
    FilterChainRef,
    Matched,
    Outcome,
    Redirect,
    Result,
)
from pilotpy.simulate.simulation import Simulation

__all__ = [
    "UNNAMED_ADDRESS", "Call", "Destination", "DirectResponse", "Endpoint", "FilterChainRef",
    "Matched", "Mode", "Outcome", "Protocol", "Redirect", "Result", "Simulation",
]
