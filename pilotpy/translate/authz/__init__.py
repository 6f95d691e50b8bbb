"""AuthorizationPolicy as Envoy RBAC (istiod's pilot/pkg/security/authz): `matchers` (value
patterns), `attributes` (one attribute as permissions or principals), `rules` (one rule as
one RBAC policy), `trust_domain` (trust domain aliases), `builder` (a workload's policies as
filters)."""
