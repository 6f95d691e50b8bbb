"""What pilotpy writes to the Kubernetes API, as istiod's controllers do: the mesh root in
every namespace (`istio-ca-root-cert`), behind leader election on a Lease."""
