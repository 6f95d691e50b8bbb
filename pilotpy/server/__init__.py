"""What runs the `pilotpy serve` process: the control plane wiring (sources -> store ->
discovery -> ADS), HTTP (readiness, debug, metrics), settings and certificates."""
