"""Sidecar and gateway injection as istiod's webhook does it: which pods get a proxy, the
`sidecar` and `gateway` templates rendered from the pod, the mesh config and Istio's values,
merged into the pod, and the JSON patch that turns the pod the API server sent into the
injected one. Pure: no I/O, no server (pilotpy/server/webhook.py serves it).
docs/istio-proxy.md#sidecar-injection says what is covered and what differs."""
