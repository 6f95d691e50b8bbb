"""Local harness: a real Envoy and httpbin-like backends on loopback, for `make run`,
`make demo` and the end-to-end tests."""
