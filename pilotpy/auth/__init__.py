"""Who is calling :15012: a Kubernetes service-account JWT (TokenReview in the cluster, a
JWKS and issuer off it, istiod's JWT_RULE), and whether that caller may have the config and
certificate it asks for."""
