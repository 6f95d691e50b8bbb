"""The xDS protocol engine: type URLs, versions, nonces, subscriptions and bytes."""
