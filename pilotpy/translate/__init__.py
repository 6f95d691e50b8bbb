"""Pure translation: (push context, proxy) -> Envoy resources."""
